"""Bounded queues with an explicit overflow policy.

``block``        the producer waits for room (audio, text, JSON: nothing is lost)
``keep_newest``  the oldest queued item of the same kind is dropped and counted (video)
``drop_newest``  the new item is dropped and counted

``auto`` picks ``keep_newest`` for video and ``block`` for everything else.

:class:`DropOldest` is the plain, loop-free building block for buffers that must never block their
producer: a bounded FIFO that makes room by dropping (and counting) its oldest item.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, Literal, TypeVar

from .data import RuntimeData, VideoData

__all__ = ["BoundedQueue", "DropOldest", "QueuePolicy", "resolve_policy"]

T = TypeVar("T")
QueuePolicy = Literal["auto", "block", "keep_newest", "drop_newest"]
POLICIES = ("auto", "block", "keep_newest", "drop_newest")


class DropOldest(Generic[T]):
    """A FIFO of at most ``capacity`` items: a push into a full buffer drops the oldest item and counts it.

    Not thread-safe and not awaitable: the owner locks or stays on one loop, and wakes its consumer itself.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        #: items dropped to make room, since creation
        self.drops = 0
        self._items: deque[T] = deque()

    def push(self, item: T) -> T | None:
        """Append ``item``; returns the oldest item if it had to be dropped to make room, else None."""
        dropped = None
        if len(self._items) >= self.capacity:
            dropped = self._items.popleft()
            self.drops += 1
        self._items.append(item)
        return dropped

    def popleft(self) -> T:
        """Remove and return the oldest item (``IndexError`` when empty)."""
        return self._items.popleft()

    def peek(self) -> T:
        """The oldest item, left in place (``IndexError`` when empty)."""
        return self._items[0]

    def drain(self) -> list[T]:
        """Remove and return every item, oldest first."""
        items = list(self._items)
        self._items.clear()
        return items

    def clear(self) -> None:
        """Forget every item (not counted as drops)."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


def resolve_policy(policy: QueuePolicy, item: Any) -> str:
    if policy != "auto":
        return policy
    return "keep_newest" if isinstance(item, VideoData) else "block"


class BoundedQueue(Generic[T]):
    """A single-consumer bounded FIFO on one event loop, with per-put overflow policy."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.drops = 0
        self._items: deque[T] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def _wake_putter(self) -> None:
        while self._putters:
            fut = self._putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def close(self) -> None:
        """Wake every waiter; later puts and gets raise ``asyncio.CancelledError``-free ``EOFError``."""
        self._closed = True
        self._wake_getter()
        while self._putters:
            fut = self._putters.popleft()
            if not fut.done():
                fut.set_result(None)

    def put_nowait(self, item: T, policy: QueuePolicy = "auto") -> bool:
        """Enqueue without waiting. Returns False when the item could not be queued (counted if dropped)."""
        if self._closed:
            raise EOFError("queue closed")
        if len(self._items) < self.capacity:
            self._items.append(item)
            self._wake_getter()
            return True
        mode = resolve_policy(policy, item)
        if mode == "keep_newest":
            kind = type(item)
            for i, queued in enumerate(self._items):
                if type(queued) is kind:
                    del self._items[i]
                    self.drops += 1
                    self._items.append(item)
                    self._wake_getter()
                    return True
            if not isinstance(item, RuntimeData):
                self._items.popleft()
                self.drops += 1
                self._items.append(item)
                return True
            return False  # queue holds only other kinds: fall back to blocking
        if mode == "drop_newest":
            self.drops += 1
            return True
        return False

    async def put(self, item: T, policy: QueuePolicy = "auto") -> None:
        """Enqueue, waiting for room when the policy blocks."""
        while not self.put_nowait(item, policy):
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                if not self.full():
                    self._wake_putter()
                raise

    def get_nowait(self) -> T:
        item = self._items.popleft()
        self._wake_putter()
        return item

    async def get(self) -> T:
        """Wait for the next item. Raises ``EOFError`` once closed and empty."""
        while not self._items:
            if self._closed:
                raise EOFError("queue closed")
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self.get_nowait()
