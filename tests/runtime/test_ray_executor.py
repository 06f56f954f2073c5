"""Nodes on Ray for real: a local Ray that the executor starts itself (no RAY_ADDRESS), then a
``ray start --head`` cluster on 127.0.0.1 that this module starts once and kills by PID at teardown.

Ray starts slowly on a small machine (10-30 s), so every test here shares one of the two.
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

import remotemedia_nbrtc as rm
from remotemedia_nbrtc import AudioData, ErrorData, Node, Pipeline, PipelineRunner, TextData, VideoData
from remotemedia_nbrtc.nodes import Gain

ray = pytest.importorskip("ray", reason="CI installs the ray extra; locally: pip install remotemedia_nbrtc[ray]")
from remotemedia_nbrtc.runtime.ray_executor import ensure_ray, live_pools  # noqa: E402
from remotemedia_nbrtc.testing.ray_cluster import alive_actors  # noqa: E402

pytestmark = pytest.mark.timeout(300)


class Counter(Node, register=False):
    """Stateful: numbers its inputs; raises on TextData('boom'); says which process it runs in."""

    node_type = "TestRayCounter"

    def __init__(self) -> None:
        self.n = 0
        self.started_in: int | None = None

    async def start(self) -> None:
        self.started_in = os.getpid()

    def process(self, data):
        if isinstance(data, TextData) and data.text == "boom":
            raise ValueError("kaboom")
        self.n += 1
        return data.replace(metadata={**data.metadata, "n": self.n, "pid": os.getpid()})


class SlowFrames(Node, register=False):
    node_type = "TestRaySlow"
    stateful = False

    def process(self, data):
        import time

        time.sleep(0.05)
        return data


async def no_actor_left(timeout_s: float = 15.0) -> bool:
    """ray.kill is asynchronous: a killed actor is gone once the GCS marks it dead (a leak never gets there)."""
    deadline = time.monotonic() + timeout_s
    while alive_actors() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return alive_actors() == 0


def frame(i: int) -> AudioData:
    return AudioData(np.full(320, i / 1000, np.float32), 16000, timestamp_us=i * 20_000)


@pytest.fixture(scope="module")
def local_ray():
    """No ray.init and no RAY_ADDRESS: the executor starts a local Ray itself."""
    assert not ray.is_initialized()
    saved = os.environ.pop("RAY_ADDRESS", None)
    try:  # what the first session does: no ray.init by the user, so the executor starts a local Ray
        ensure_ray()
    except Exception as exc:  # Ray's raylet-registration wait is a fixed 30 s; a loaded machine can miss it
        if "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
        ensure_ray()
    yield
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


@pytest.mark.parametrize("compiled_graph", [True, False], ids=["compiled-graph", "actor-calls"])
async def test_a_stateful_node_runs_in_its_own_actor_in_order_and_errors_become_error_data(local_ray, compiled_graph):
    p = Pipeline()
    p.add("count", Counter(), executor=rm.ray(num_cpus=0, compiled_graph=compiled_graph))
    p.add("gain", Gain(gain_db=0.0))
    p.chain("count", "gain")
    assert await no_actor_left()  # the previous test's actors
    session = await PipelineRunner().create_stream_session(p)
    assert ray.is_initialized() and alive_actors() == 1
    for i in range(40):
        await session.send_input(frame(i))
    await session.send_input(TextData("boom"))
    for i in range(40, 60):
        await session.send_input(frame(i))
    await session.end_input()
    outs = [o async for o in session]
    audio = [o for o in outs if isinstance(o, AudioData)]
    assert [round(float(a.samples.flat[0]) * 1000) for a in audio] == list(range(60))  # order kept through the hop
    assert [a.metadata["n"] for a in audio] == list(range(1, 61))  # state kept across frames, in one actor
    assert {a.metadata["pid"] for a in audio} != {os.getpid()} and len({a.metadata["pid"] for a in audio}) == 1
    errors = [o for o in outs if isinstance(o, ErrorData)]
    assert [(e.node_id, e.error_type, e.message) for e in errors] == [("count", "ValueError", "kaboom")]
    m = session.metrics()["count"]
    assert (m["executor"], m["frames_in"], m["frames_out"], m["errors"], m["lost"]) == ("ray", 61, 60, 1, 0)
    assert m["compiled_graph"] is compiled_graph
    assert await session.node_attribute("count", "started_in") == audio[0].metadata["pid"]  # start() ran there
    await session.close()
    assert await no_actor_left()


async def test_in_flight_calls_are_bounded_and_video_keeps_the_newest(local_ray):
    p = Pipeline()
    p.add("slow", SlowFrames(), executor=rm.ray(num_cpus=0, max_in_flight=2))
    session = await PipelineRunner(node_capacity=4).create_stream_session(p)
    peak = 0
    for i in range(40):  # 40 frames at once into a 50 ms node: the inbox (4) keeps the newest
        session.try_send_input(VideoData(np.full((4, 4, 3), i, np.uint8), timestamp_us=i))
        peak = max(peak, session.metrics()["slow"]["in_flight"])
        await asyncio.sleep(0)
    await session.end_input()
    outs = [o async for o in session]
    m = session.metrics()["slow"]
    assert peak <= 2 and m["max_in_flight"] == 2
    assert m["drops"] > 0 and len(outs) + m["drops"] == 40, m
    assert outs[-1].timestamp_us == 39  # the newest frame always gets through
    await session.close()


async def test_twenty_sessions_leave_no_actor_behind(local_ray):
    p = Pipeline()
    p.add("count", Counter(), executor=rm.ray(num_cpus=0))
    runner = PipelineRunner()
    for _ in range(20):
        session = await runner.create_stream_session(p)
        await session.send_input(frame(0))
        assert isinstance(await session.receive_output(timeout=60), AudioData)
        await session.close()
        assert await no_actor_left()
    assert live_pools() == 0


async def test_stateless_sessions_share_one_pool(local_ray):
    p = Pipeline()
    p.add("pool", SlowFrames(), executor=rm.ray(num_cpus=0, replicas=2))
    runner = PipelineRunner()
    assert await no_actor_left()
    sessions = [await runner.create_stream_session(p) for _ in range(3)]
    assert alive_actors() == 2 and live_pools() == 1  # 3 sessions, 2 replicas
    for s in sessions:
        await s.send_input(frame(1))
    assert all([isinstance(await s.receive_output(timeout=30), AudioData) for s in sessions])
    for s in sessions[:2]:
        await s.close()
    assert alive_actors() == 2  # still leased by the third
    await sessions[2].close()
    assert live_pools() == 0 and await no_actor_left()
