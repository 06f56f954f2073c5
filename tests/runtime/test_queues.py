"""``DropOldest``: the bounded drop-oldest buffer behind the lanes, send queues and output dispatch."""

from __future__ import annotations

import pytest

from remotemedia_nbrtc.runtime.queues import DropOldest


def test_push_into_a_full_buffer_drops_and_returns_the_oldest() -> None:
    buf: DropOldest[int] = DropOldest(2)
    assert buf.push(1) is None and buf.push(2) is None
    assert buf.push(3) == 1 and buf.push(4) == 2
    assert list(buf) == [3, 4] and len(buf) == 2 and buf.drops == 2


def test_popleft_peek_drain_and_clear_do_not_count_as_drops() -> None:
    buf: DropOldest[str] = DropOldest(3)
    for item in "abc":
        buf.push(item)
    assert buf.peek() == "a" and buf.popleft() == "a"
    assert buf.drain() == ["b", "c"] and not buf
    buf.push("d")
    buf.clear()
    assert len(buf) == 0 and buf.drops == 0
    with pytest.raises(IndexError):
        buf.popleft()


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DropOldest(0)
