"""RecentOutputs: ``h.outputs[-3:]`` (the README's pattern) works, and reads are safe while the display appends."""

from __future__ import annotations

import threading

import pytest

from remotemedia_nbrtc import RecentOutputs
from remotemedia_nbrtc.runtime import JsonData
from remotemedia_nbrtc.transport.loop_thread import pipeline_loop
from tests.widget.test_stream import FakeServe, level_vad_pipeline, open_browser_session, stream_with, tone, wait_for


def test_slicing_indexing_and_bound() -> None:
    r: RecentOutputs[int] = RecentOutputs(4)
    for i in range(10):
        r.append(i)
    assert r[-3:] == [7, 8, 9] and isinstance(r[-3:], list)
    assert r[0] == 6 and r[-1] == 9 and len(r) == 4 and list(r) == [6, 7, 8, 9]
    assert 8 in r and r.index(8) == 2 and r.maxlen == 4
    with pytest.raises(IndexError):
        r[4]
    with pytest.raises(ValueError):
        RecentOutputs(0)


def test_iterating_while_another_thread_appends_never_raises() -> None:
    r: RecentOutputs[int] = RecentOutputs(1000)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            r.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            assert sum(1 for _ in r) <= 1000  # a deque raises "mutated during iteration" here
            r[-3:]
    finally:
        stop.set()
        t.join()


def test_stream_handle_outputs_slice_like_the_readme() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), plot=False, key="recent-outputs")
    try:
        session = open_browser_session(h, serve.pipelines[0])

        async def feed() -> None:
            for _ in range(5):
                await session.send_input(tone(0.3))

        pipeline_loop().run(feed(), 5)
        wait_for(lambda: len(h.outputs) >= 10)
        last = h.outputs[-3:]
        assert len(last) == 3 and all(isinstance(o, JsonData) for o in last)
    finally:
        h.close()
        pipeline_loop().run(session.close(), 5)
