"""Cost of one node hop in the runtime, for 20 ms audio frames and 640x480 video frames.

A chain of 9 PassThrough nodes is timed against a chain of 1, so the figure is the cost of each extra hop
(queue put/get, task switch, metrics). Each frame is sent only after the previous one came out, so this is
latency, not pipelined throughput. The baseline is the same chain built from plain asyncio.Queue tasks.

    .venv/bin/python bench/runner_hops.py [--frames 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from report import write_section

from remotemedia_nbrtc import AudioData, Pipeline, PipelineRunner, VideoData
from remotemedia_nbrtc.nodes import PassThrough


async def through_runner(hops: int, items: list) -> float:
    p = Pipeline("hops")
    ids = [f"n{i}" for i in range(hops)]
    for nid in ids:
        p.add(nid, PassThrough())
    p.chain(*ids)
    session = await PipelineRunner().create_stream_session(p)

    start = time.perf_counter()
    for item in items:
        await session.send_input(item)
        await session.receive_output()
    elapsed = time.perf_counter() - start
    await session.close()
    return elapsed


async def through_queues(hops: int, items: list) -> float:
    queues = [asyncio.Queue(16) for _ in range(hops + 1)]

    async def stage(i):
        while (item := await queues[i].get()) is not None:
            await queues[i + 1].put(item)
        await queues[i + 1].put(None)

    tasks = [asyncio.create_task(stage(i)) for i in range(hops)]

    start = time.perf_counter()
    for item in items:
        await queues[0].put(item)
        await queues[-1].get()
    elapsed = time.perf_counter() - start
    await queues[0].put(None)
    await asyncio.gather(*tasks)
    return elapsed


async def per_hop(fn, items, hops=(1, 9), repeats=5) -> float:
    best = {}
    for n in hops:
        best[n] = min([await fn(n, items) for _ in range(repeats)])
    return (best[hops[1]] - best[hops[0]]) / (hops[1] - hops[0]) / len(items)


async def main(frames: int) -> None:
    audio = [AudioData(np.zeros((960, 1), np.float32), 48000, timestamp_us=i * 20000) for i in range(frames)]
    video_frame = np.zeros((480, 640, 3), np.uint8)
    video = [VideoData(video_frame, "rgb24", frame_number=i) for i in range(frames // 3)]
    rows = []
    for label, items in (("audio 20 ms (960 samples)", audio), ("video 640x480 rgb24", video)):
        ours = await per_hop(through_runner, items)
        base = await per_hop(through_queues, items)
        rows.append(f"| {label} | {ours * 1e6:.1f} | {base * 1e6:.1f} |")
        print(label, f"runner {ours * 1e6:.1f} us/hop, asyncio.Queue chain {base * 1e6:.1f} us/hop")
    body = ("Per-hop latency (chain of 9 PassThrough nodes minus chain of 1, one frame in flight, best of 5). "
            "Target: under 50 us per audio hop.\n\n"
            "| frames | runner us/hop | baseline: plain asyncio.Queue chain us/hop |\n|---|---|---|\n"
            + "\n".join(rows))
    write_section("Runner hop cost", body,
                  "python bench/runner_hops.py" + (f" --frames {frames}" if frames != 3000 else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    asyncio.run(main(parser.parse_args().frames))
