"""``RecentOutputs``: the newest pipeline outputs of a stream, as a bounded, thread-safe sequence."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar, overload

__all__ = ["RecentOutputs"]

T = TypeVar("T")


class RecentOutputs(Sequence[T], Generic[T]):
    """The last ``maxlen`` items, oldest first; supports ``len``, iteration, indexing and slicing.

    ``outputs[-3:]`` is a list (a snapshot): the display thread keeps appending while a notebook reads,
    so every read copies under a lock instead of exposing the live buffer (a ``deque`` cannot be
    sliced, and iterating one that another thread appends to raises ``RuntimeError``).
    """

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, not {maxlen}")
        self._items: deque[T] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    @property
    def maxlen(self) -> int:
        """How many outputs are kept (older ones are forgotten)."""
        return self._items.maxlen or 0

    def append(self, item: T) -> None:
        """Add the newest item, forgetting the oldest when full (any thread)."""
        with self._lock:
            self._items.append(item)

    def clear(self) -> None:
        """Forget every item."""
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[T]:
        """All kept items, oldest first, as a new list."""
        with self._lock:
            return list(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self.snapshot()[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())

    def __repr__(self) -> str:
        items = self.snapshot()
        return f"RecentOutputs({len(items)}/{self.maxlen}, newest={items[-1]!r})" if items else \
            f"RecentOutputs(0/{self.maxlen})"
