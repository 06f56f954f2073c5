"""SessionBridge lanes: video frames handed over together must not be dropped while the pipeline is idle."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.runtime import RuntimeData, VideoData
from remotemedia_nbrtc.transport.bridge import SessionBridge
from remotemedia_nbrtc.transport.loop_thread import LoopThread, pipeline_loop

pytestmark = pytest.mark.timeout(30)

PASS = {"version": "v1", "metadata": {"name": "t"}, "connections": [],
        "nodes": [{"id": "p", "node_type": "PassThrough", "params": {}}]}


def _frame(n: int) -> VideoData:
    return VideoData(np.zeros((4, 4, 3), np.uint8), "rgb24", frame_number=n)


async def _burst(bridge: SessionBridge, numbers: range) -> None:
    """Put frames into the video lane within one pipeline-loop iteration, as the RTC loop's
    call_soon_threadsafe does when the decoder hands over several frames at once."""

    async def put_all() -> None:
        for n in numbers:
            bridge._lanes["video"].put(_frame(n))

    await asyncio.wrap_future(pipeline_loop().submit(put_all()))


async def _run(rtc: LoopThread, scenario: Any, **create: Any) -> Any:
    async def on_rtc() -> Any:
        outputs: list[RuntimeData] = []
        bridge = await SessionBridge.create(PASS, on_output=lambda _n, d: outputs.append(d), **create)
        try:
            return await scenario(bridge, outputs)
        finally:
            await bridge.close()

    return await asyncio.wrap_future(rtc.submit(on_rtc()))


async def _wait(outputs: list[RuntimeData], count: int) -> None:
    for _ in range(200):
        if len(outputs) >= count:
            return
        await asyncio.sleep(0.01)


async def test_video_burst_of_three_is_forwarded_without_drops(rtc: LoopThread) -> None:
    async def scenario(bridge: SessionBridge, outputs: list[RuntimeData]) -> Any:
        await _burst(bridge, range(3))
        await _wait(outputs, 3)
        await asyncio.sleep(0.05)
        return [o.frame_number for o in outputs], bridge.stats()

    numbers, stats = await _run(rtc, scenario)
    assert numbers == [0, 1, 2]  # one slot kept only frame 2
    assert stats["video_drops"] == 0 and stats["video_forwarded"] == 3


async def test_video_lane_keeps_newest_and_counts_drops_when_full(rtc: LoopThread) -> None:
    async def scenario(bridge: SessionBridge, outputs: list[RuntimeData]) -> Any:
        await _burst(bridge, range(10))
        await _wait(outputs, 3)
        await asyncio.sleep(0.05)
        return [o.frame_number for o in outputs], bridge.stats()

    numbers, stats = await _run(rtc, scenario)
    assert numbers == [7, 8, 9]
    assert stats["video_drops"] == 7 and stats["video_forwarded"] == 3


async def test_video_capacity_is_configurable(rtc: LoopThread) -> None:
    async def scenario(bridge: SessionBridge, outputs: list[RuntimeData]) -> Any:
        await _burst(bridge, range(4))
        await _wait(outputs, 1)
        await asyncio.sleep(0.05)
        return [o.frame_number for o in outputs], bridge.stats()

    numbers, stats = await _run(rtc, scenario, video_capacity=1)
    assert numbers == [3] and stats["video_drops"] == 3
