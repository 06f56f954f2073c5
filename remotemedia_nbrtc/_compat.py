"""Python 3.10 compatibility helpers.

On Python 3.10 ``asyncio.wait_for`` raises ``asyncio.TimeoutError``, which is *not* the builtin
``TimeoutError`` (they are the same class from 3.11 on). Public methods documented to raise
``TimeoutError`` use :func:`wait_for` so callers can catch the builtin on every supported version;
on 3.10 the error is also an ``asyncio.TimeoutError``, so code catching that keeps working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")

if asyncio.TimeoutError is TimeoutError:  # Python >= 3.11
    _Timeout: type[TimeoutError] = TimeoutError
else:  # Python 3.10

    class _Timeout(TimeoutError, asyncio.TimeoutError):  # type: ignore[no-redef,misc]
        """Both the builtin and asyncio's ``TimeoutError`` (distinct classes on Python 3.10)."""


async def wait_for(aw: Awaitable[T], timeout: float | None, message: str | None = None) -> T:
    """``asyncio.wait_for`` that raises the builtin ``TimeoutError`` on Python 3.10 too."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:  # the builtin TimeoutError on 3.11+, a distinct class on 3.10
        raise _Timeout(message or f"timed out after {timeout} s") from None
