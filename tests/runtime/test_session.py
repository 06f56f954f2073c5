import asyncio
import threading
import time

import numpy as np
import pytest

from remotemedia_nbrtc import (
    AudioData,
    ErrorData,
    JsonData,
    Node,
    Pipeline,
    PipelineRunner,
    RemoteMediaError,
    SessionClosedError,
    TextData,
    VideoData,
    node,
)
from remotemedia_nbrtc.nodes import AudioChunker, Gain, PassThrough


def tone(i, n=960, rate=48000):
    t = (np.arange(n) + i * n) / rate
    return AudioData((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, timestamp_us=i * 20_000)


@node("TestSplitInTwo")
def split_in_two(data):
    """A generator node: two outputs per input."""
    half = data.num_samples // 2
    yield data.replace(samples=data.samples[:half], metadata={"part": 0, **data.metadata})
    later = data.timestamp_us + half * 1_000_000 // data.sample_rate
    yield data.replace(samples=data.samples[half:], timestamp_us=later, metadata={"part": 1, **data.metadata})


@node("TestTag")
async def tag(data, *, label: str = "x"):
    return data.replace(metadata={**data.metadata, "seq": data.metadata.get("seq"), label: True})


class Slow(Node):
    node_type = "TestSlow"
    threaded = True

    def __init__(self, *, delay_s: float = 0.01):
        self.delay_s = delay_s
        self.thread_names = set()

    def process(self, data):
        self.thread_names.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return data


class Boom(Node):
    node_type = "TestBoom"

    def process(self, data):
        if isinstance(data, TextData) and data.text == "boom":
            raise RuntimeError("kaboom")
        return data


async def test_order_is_kept_through_a_multi_node_streaming_pipeline():
    p = Pipeline("order")
    p.add("split", split_in_two())
    p.add("tag", tag(label="tagged"))
    p.add("chunk", AudioChunker(chunk_size=240))
    p.chain("split", "tag", "chunk")
    session = await PipelineRunner().create_stream_session(p)
    sent = []
    for i in range(50):
        frame = tone(i)
        frame.metadata["seq"] = i
        sent.append(frame.samples)
        await session.send_input(frame)
    await session.end_input()
    outs = [o async for o in session]
    await session.close()
    assert all(isinstance(o, AudioData) and o.num_samples == 240 for o in outs)
    assert len(outs) == 50 * 960 // 240
    assert np.array_equal(np.concatenate([o.samples for o in outs]), np.concatenate(sent))
    stamps = [o.timestamp_us for o in outs]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] == 5000


async def test_no_audio_is_lost_under_backpressure_from_a_slow_node():
    p = Pipeline("slow")
    p.add("slow", Slow(delay_s=0.005))
    p.add("gain", Gain(gain_db=0.0))
    p.chain("slow", "gain")
    session = await PipelineRunner(node_capacity=2, output_capacity=4).create_stream_session(p)
    received = []

    async def drain():
        async for out in session:
            received.append(out)
            await asyncio.sleep(0.002)  # a slow consumer too

    consumer = asyncio.create_task(drain())
    started = time.perf_counter()
    for i in range(100):
        await session.send_input(tone(i))
    blocked_for = time.perf_counter() - started
    await session.end_input()
    await asyncio.wait_for(consumer, 10)
    metrics = session.metrics()
    await session.close()
    assert len(received) == 100
    assert [r.timestamp_us for r in received] == [i * 20_000 for i in range(100)]
    assert metrics["slow"]["drops"] == 0 and metrics["gain"]["drops"] == 0
    assert blocked_for > 0.3  # the producer really was held back (100 x 5 ms, minus a small queue)
    assert metrics["slow"]["frames_in"] == 100 and metrics["gain"]["frames_out"] == 100
    assert metrics["slow"]["p50_ms"] >= 4


async def test_video_keeps_newest_and_counts_drops():
    p = Pipeline("video")
    p.add("slow", Slow(delay_s=0.02))
    session = await PipelineRunner(node_capacity=3).create_stream_session(p)
    for i in range(40):  # a 30 fps burst faster than the node can take it
        frame = VideoData(np.full((8, 8, 3), i, np.uint8), "rgb24", frame_number=i)
        assert session.try_send_input(frame)  # video never waits: keep-newest makes room
    await asyncio.sleep(0.5)
    await session.end_input()
    outs = [o async for o in session]
    metrics = session.metrics()
    await session.close()
    numbers = [o.frame_number for o in outs]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 39  # the newest frame always gets through
    assert metrics["slow"]["drops"] == 40 - len(outs) > 0


async def test_node_error_reaches_the_caller_with_the_node_id_and_the_session_goes_on():
    p = Pipeline("errors")
    p.add("first", PassThrough())
    p.add("boom", Boom())
    p.chain("first", "boom")
    session = await PipelineRunner().create_stream_session(p)
    for text in ("a", "boom", "b"):
        await session.send_input(TextData(text))
    outs = [await session.receive_output(timeout=2) for _ in range(3)]
    await session.close()
    assert [type(o).__name__ for o in outs] == ["TextData", "ErrorData", "TextData"]
    err = outs[1]
    assert isinstance(err, ErrorData) and err.node_id == "boom" and "kaboom" in err.message
    assert err.error_type == "RuntimeError"
    assert session.metrics()["boom"]["errors"] == 1


async def test_close_is_idempotent_and_leaks_no_tasks_or_threads():
    threads_before = set(threading.enumerate())
    tasks_before = set(asyncio.all_tasks())
    runner = PipelineRunner()
    for _ in range(5):
        p = Pipeline("close")
        p.add("slow", Slow(delay_s=0.001))
        p.add("gain", Gain())
        p.chain("slow", "gain")
        session = await runner.create_stream_session(p)
        await session.send_input(tone(0))
        assert await session.receive_output(timeout=2) is not None
        await session.close()
        await session.close()
        assert not session.is_active
        with pytest.raises(SessionClosedError):
            await session.send_input(tone(1))
        assert await session.receive_output(timeout=1) is None
    assert set(asyncio.all_tasks()) == tasks_before
    deadline = time.time() + 2
    while set(threading.enumerate()) - threads_before and time.time() < deadline:
        await asyncio.sleep(0.01)
    assert set(threading.enumerate()) - threads_before == set()


async def test_threaded_nodes_run_off_the_event_loop():
    p = Pipeline("threads")
    p.add("slow", Slow(delay_s=0))
    session = await PipelineRunner().create_stream_session(p)
    await session.send_input(TextData("x"))
    await session.receive_output(timeout=2)
    names = session.node("slow").thread_names
    await session.close()
    assert names and threading.main_thread().name not in names


async def test_unary_returns_first_output_and_fails_clearly_without_output():
    runner = PipelineRunner()
    manifest = {"nodes": [{"id": "g", "node_type": "Gain", "params": {"gain_db": -6.0206}}]}
    out = await runner.execute_unary(manifest, AudioData(np.full(100, 0.5, np.float32), 16000))
    assert isinstance(out, AudioData) and np.allclose(out.samples, 0.25, atol=1e-4)

    @node("TestSwallow")
    def swallow(data):
        return None

    with pytest.raises(RemoteMediaError, match="No output from pipeline"):
        await runner.execute_unary({"nodes": [{"id": "s", "node_type": "TestSwallow"}]}, TextData("x"))


async def test_fan_out_and_fan_in_with_node_states_and_taps():
    p = Pipeline("graph")
    p.add("in", PassThrough())
    p.add("left", tag(label="left"))
    p.add("right", tag(label="right"))
    p.add("join", PassThrough())
    p.connect("in", "left").connect("in", "right").connect("left", "join").connect("right", "join")
    session = await PipelineRunner().create_stream_session(p)
    tapped = []
    remove = session.add_tap("left", tapped.append)
    await session.send_input(TextData("x"))
    outs = [await session.receive_output(timeout=2) for _ in range(2)]
    assert sorted(k for o in outs for k in o.metadata if k in ("left", "right")) == ["left", "right"]
    assert len(tapped) == 1
    remove()
    session.set_node_state("right", "disabled")
    await session.send_input(TextData("y"))
    await session.end_input()
    rest = [o async for o in session]
    await session.close()
    assert len(rest) == 1 and rest[0].metadata.get("left") and len(tapped) == 1


async def test_end_of_stream_flushes_partial_chunks():
    p = Pipeline("flush")
    p.add("chunk", AudioChunker(chunk_size=1000))
    session = await PipelineRunner().create_stream_session(p)
    await session.send_input(tone(0))  # 960 samples: no full chunk yet
    with pytest.raises(TimeoutError):
        await session.receive_output(timeout=0.05)
    await session.end_input()
    out = await session.receive_output(timeout=2)
    assert out.num_samples == 960
    assert await session.receive_output(timeout=2) is None
    await session.close()


async def test_sessions_of_one_pipeline_are_isolated():
    p = Pipeline("iso")
    p.add("chunk", AudioChunker(chunk_size=1000))
    runner = PipelineRunner()
    a = await runner.create_stream_session(p)
    b = await runner.create_stream_session(p)
    assert a.session_id != b.session_id and len(a.session_id) >= 20
    assert a.node("chunk") is not b.node("chunk")
    await a.send_input(tone(0))
    await b.end_input()
    assert await b.receive_output(timeout=1) is None
    await a.end_input()
    assert (await a.receive_output(timeout=1)).num_samples == 960
    await a.close(), await b.close()


async def test_json_outputs_and_metrics_shape():
    session = await PipelineRunner().create_stream_session(
        {"nodes": [{"id": "lvl", "node_type": "AudioLevelNode"}]}
    )
    await session.send_input(tone(0))
    out = await session.receive_output(timeout=2)
    assert isinstance(out, JsonData) and -9.2 < out.value["rms_dbfs"] < -8.8  # 0.5 amplitude sine: -9.03 dBFS
    m = session.metrics()["lvl"]
    assert set(m) >= {"frames_in", "frames_out", "drops", "queue_depth", "p50_ms", "p95_ms"}
    await session.close()


async def test_a_slow_first_call_is_named_in_a_warning(caplog):
    """A node that stalls on its first input leaves live audio late or trimmed: the log says which node and
    where the work belongs (start())."""

    @node("SlowFirstCallTest")
    def slow_first(data):
        if not slow_first.called:
            slow_first.called = True
            time.sleep(0.6)
        return data

    slow_first.called = False
    p = Pipeline("slow")
    p.add("slow", slow_first())
    with caplog.at_level("WARNING", logger="remotemedia_nbrtc.runtime.session"):
        async with await PipelineRunner().create_stream_session(p) as session:
            for i in range(2):
                await session.send_input(tone(i))
                assert isinstance(await session.receive_output(timeout=5), AudioData)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "'slow'" in warnings[0] and "start()" in warnings[0], warnings
