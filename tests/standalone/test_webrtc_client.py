"""ClientPeer <-> real standalone WebRTCServer over 127.0.0.1: media and data through real pipelines."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.runtime import JsonData, Node, Pipeline, RuntimeData, VideoData
from remotemedia_nbrtc.standalone.server import WebRTCServer
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.loop_thread import LoopThread, pipeline_loop, rtc_loop
from remotemedia_nbrtc.transport.sources import (
    SyntheticVideoSource,
    ToneBurstSource,
    ToneSource,
    decode_frame_number,
)
from tests.transport._peer_helpers import start_server

pytestmark = pytest.mark.timeout(60)

ICE = IceConfig(loopback_only=True)


def manifest(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"version": "v1", "metadata": {"name": "t"}, "nodes": list(nodes), "connections": []}


@pytest.fixture
async def level_server() -> AsyncIterator[WebRTCServer]:
    server = await start_server(manifest({"id": "lvl", "node_type": "AudioLevelNode", "params": {}}))
    yield server
    await server.stop()


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_tone_bursts_reach_pipeline_and_levels_return(level_server: WebRTCServer) -> None:
    source = ToneBurstSource(burst_ms=40, period_ms=300, amplitude=0.5)
    client = await ClientPeer.connect(level_server.url, audio=source, ice=ICE)
    try:
        assert client.answer is not None and client.answer["from"] == "remotemedia-server"
        assert client.answer["to"] == client.peer_id and client.answer["type"] == "answer"
        levels: list[dict[str, Any]] = []
        while len(levels) < 60:  # 1.2 s of 20 ms frames: 4 bursts
            msg = await client.next_output(timeout=3)
            assert msg is not None and msg["type"] == "json" and msg["node"] == "lvl"
            levels.append(msg)
        loud = [m["value"]["peak_dbfs"] > -12 for m in levels]  # 0.5 amplitude: about -6 dBFS peak
        onsets = sum(1 for a, b in itertools.pairwise(loud) if b and not a) + loud[0]
        assert onsets >= 3, [m["value"]["peak_dbfs"] for m in levels]
        assert min(m["value"]["peak_dbfs"] for m in levels) < -40, "silence between bursts must show as low level"
        assert source.onsets and all(sent > 0 for _, sent in source.onsets)
        assert "connected" in client.server_states
        assert client.stats()["connection_state"] == "connected"
    finally:
        await client.close()


async def test_gain_processed_audio_returns_numerically_checked() -> None:
    server = await start_server(manifest({"id": "gain", "node_type": "Gain", "params": {"gain_db": -6.0}}))
    client = await ClientPeer.connect(server.url, audio=ToneSource(440.0, amplitude=0.5), ice=ICE)
    try:
        await wait_for(lambda: len(client.received_audio) > 100, timeout=8)
        samples = client.received_audio_samples()[:, 0]
        assert np.sum(np.abs(samples) > 0.05) > 24000, "not enough non-silent audio came back"
        tail = samples[-24000:]  # the last 0.5 s: steady state of an endless tone
        rms = float(np.sqrt(np.mean(tail**2)))
        expected = 0.5 * 10 ** (-6 / 20) / np.sqrt(2)  # 0.177
        assert abs(rms - expected) / expected < 0.15, (rms, expected)
        spectrum = np.abs(np.fft.rfft(tail * np.hanning(tail.size)))
        peak_hz = np.argmax(spectrum) * 48000 / tail.size
        assert abs(peak_hz - 440.0) < 5, peak_hz
    finally:
        await client.close()
        await server.stop()


class FrameNumberNode(Node, register=False):
    """Reads the frame number SyntheticVideoSource drew into the pixels."""

    node_type = "TestFrameNumber"

    def process(self, data: RuntimeData) -> Any:
        if isinstance(data, VideoData):
            return JsonData({"kind": "frame_no", "n": decode_frame_number(data)})
        return None


async def test_synthetic_video_reaches_video_stats_per_frame() -> None:
    from remotemedia_nbrtc.nodes import VideoStats

    pipeline = Pipeline("video")
    pipeline.add("stats", VideoStats())
    pipeline.add("fn", FrameNumberNode())
    server = await start_server(pipeline, peer={"send_video": False, "send_audio": False})
    source = SyntheticVideoSource(320, 240, fps=15)
    client = await ClientPeer.connect(server.url, video=source, ice=ICE, receive_media=False)
    try:
        stats: list[dict[str, Any]] = []
        numbers: list[int] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and (len(stats) < 20 or len(numbers) < 20):
            msg = await client.next_output(timeout=3)
            assert msg is not None and msg["type"] == "json", msg
            if msg["value"]["kind"] == "video_stats":
                stats.append(msg["value"])
            elif msg["value"]["kind"] == "frame_no":
                numbers.append(msg["value"]["n"])
        assert len(stats) >= 20 and all(s["width"] == 320 and s["height"] == 240 for s in stats)
        frame_numbers = [s["frame_number"] for s in stats]
        assert frame_numbers == sorted(frame_numbers) and len(set(frame_numbers)) == len(frame_numbers)
        # the pixel-coded numbers survive VP8 and increase; every decoded number was really sent
        assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
        assert set(numbers) <= set(source.sent_us), numbers
    finally:
        await client.close()
        await server.stop()


async def test_data_channel_text_and_control_publish_subscribe() -> None:
    server = await start_server(manifest({"id": "echo", "node_type": "PassThrough", "params": {}}))
    client = await ClientPeer.connect(server.url, ice=ICE)
    try:
        result = await client.call("control.subscribe", {"topic": "echo.out"})
        assert result == {"subscribed": True, "topic": "echo.out"}
        await client.send_text("hello pipeline")
        msg = await client.next_output(timeout=5)
        assert msg is not None and msg["type"] == "text" and msg["text"] == "hello pipeline"
        await client.send_json({"a": [1, 2]})
        msg = await client.next_output(timeout=5)
        assert msg is not None and msg["type"] == "json" and msg["value"] == {"a": [1, 2]}
        published = await client.call("control.publish", {"topic": "echo.in", "payload": {"text": "via control"}})
        assert published == {"published": True, "topic": "echo.in"}
        msg = await client.next_output(timeout=5)
        assert msg is not None and msg["text"] == "via control"
        await wait_for(lambda: sum(1 for n in client.notifications if n["method"] == "control.event") >= 3)
        events = [n["params"] for n in client.notifications if n["method"] == "control.event"]
        assert [e["payload"] for e in events[:3]] == ["hello pipeline", {"a": [1, 2]}, "via control"]
        assert events[0]["kind"] == "text" and events[1]["kind"] == "json" and events[0]["topic"] == "echo.out"
        state = await client.call("control.set_node_state", {"node_id": "echo", "state": "disabled"})
        assert state == {"success": True, "node_id": "echo", "state": "disabled"}
        info = await client.call("session.info")
        assert info["session_id"] and info["nodes"] == ["echo"] and info["ice_servers"] == []
    finally:
        await client.close()
        await server.stop()


async def test_close_from_client_releases_server_session(level_server: WebRTCServer) -> None:
    client = await ClientPeer.connect(level_server.url, audio=ToneSource(), ice=ICE)
    await wait_for(lambda: level_server.health()["sessions"] == 1)
    await client.close()
    assert client.closed and client.connection_state == "closed"
    await wait_for(lambda: level_server.health() == {"status": "ok", "peers": 0, "sessions": 0, "connections": 0})
    drained = 0
    while await client.next_output(timeout=1) is not None:  # what arrived before the close, then the end
        drained += 1
        assert drained < 1000


async def test_close_from_server_ends_client() -> None:
    server = await start_server(manifest({"id": "lvl", "node_type": "AudioLevelNode", "params": {}}))
    client = await ClientPeer.connect(server.url, audio=ToneSource(), ice=ICE)
    try:
        assert await client.next_output(timeout=5) is not None
        await server.stop()
        await wait_for(lambda: client.closed, timeout=5)
        while (msg := await client.next_output(timeout=2)) is not None:  # drain what was in flight
            assert msg["type"] == "json"
        assert client.connection_state == "closed"
    finally:
        await client.close()


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> set[str]:
    # executor workers of the loops come and go; count the long-lived threads
    return {t.name for t in threading.enumerate() if not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))}


async def test_twenty_connect_stream_close_cycles_leak_nothing(level_server: WebRTCServer) -> None:
    async def cycle() -> None:
        client = await ClientPeer.connect(level_server.url, audio=ToneBurstSource(period_ms=100), ice=ICE)
        try:
            msg = await client.next_output(timeout=5)
            assert msg is not None and msg["type"] == "json"
        finally:
            await client.close()
        await wait_for(lambda: level_server.health()["connections"] == 0)

    def tasks(thread: LoopThread) -> int:
        return thread.run(_count_tasks(), timeout=5)

    await cycle()  # warm-up: loop threads, codec state, executor
    gc.collect()
    fds, threads = _fd_count(), _threads()
    rtc_tasks, pipeline_tasks = tasks(rtc_loop()), tasks(pipeline_loop())
    for _ in range(20):
        await cycle()
    gc.collect()
    await asyncio.sleep(0.2)
    assert _threads() == threads, _threads() ^ threads
    assert _fd_count() <= fds + 2, (fds, _fd_count())
    assert tasks(rtc_loop()) <= rtc_tasks and tasks(pipeline_loop()) <= pipeline_tasks
    assert level_server.health() == {"status": "ok", "peers": 0, "sessions": 0, "connections": 0}


async def _count_tasks() -> int:
    current = asyncio.current_task()
    return sum(1 for t in asyncio.all_tasks() if t is not current and not t.done())


async def _echo_latencies_ms(client: ClientPeer, source: ToneBurstSource, seconds: float) -> list[float]:
    """Burst handed to the sender -> first returned chunk with peak > 0.1, for bursts after the first."""
    await asyncio.sleep(seconds)
    chunks = [(a.arrival_ts_us, float(np.max(np.abs(a.samples)))) for a in list(client.received_audio)]
    out = []
    for _, sent in source.onsets[1:-1]:
        hit = next((t for t, peak in chunks if t >= sent and peak > 0.1), None)
        if hit is not None and hit - sent < 400_000:
            out.append((hit - sent) / 1000)
    return out


async def test_client_receives_through_low_latency_buffer_by_default() -> None:
    """Echo round trip: ClientPeer's receivers must not keep aiortc's 4-frame prefetch (~75 ms)."""
    from remotemedia_nbrtc.transport.receiver import installed_buffer

    server = await start_server(manifest({"id": "echo", "node_type": "PassThrough", "params": {}}))
    try:
        source = ToneBurstSource(burst_ms=20, period_ms=300, amplitude=0.5)
        client = await ClientPeer.connect(server.url, audio=source, ice=ICE)
        try:
            receivers = [t.receiver for t in client._pc.getTransceivers()]  # type: ignore[union-attr]
            assert receivers and all(installed_buffer(r) is not None for r in receivers)
            latencies = await _echo_latencies_ms(client, source, 2.5)
            jitter = client.stats()["jitter"]
            [peer] = await asyncio.to_thread(server.peer_stats)
            audio_out = peer["audio_out"]
            assert len(latencies) >= 5, latencies
            # aiortc's default buffer alone costs ~75 ms here (bench: echo p50 123 ms before, 24 ms after)
            assert float(np.median(latencies)) < 70, (latencies, audio_out, jitter)
            assert jitter["audio"]["frames_released"] > 50
            assert audio_out["frames_sent"] > 50 and "trimmed_frames" in audio_out
            assert audio_out["samples_in"] == (
                audio_out["samples_sent"] + audio_out["trimmed_samples"] + audio_out["dropped_samples"]
                + audio_out["flushed_samples"] + audio_out["queued_samples"]
            )
        finally:
            await client.close()
        client = await ClientPeer.connect(server.url, audio=ToneSource(440.0), ice=ICE, low_latency_receive=False)
        try:
            receivers = [t.receiver for t in client._pc.getTransceivers()]  # type: ignore[union-attr]
            assert receivers and all(installed_buffer(r) is None for r in receivers)
            assert client.stats()["jitter"] == {}
        finally:
            await client.close()
    finally:
        await server.stop()


async def test_server_peer_stats_lists_live_peers(level_server: WebRTCServer) -> None:
    assert level_server.peer_stats() == []
    client = await ClientPeer.connect(level_server.url, audio=ToneSource(440.0), ice=ICE)
    try:
        assert await client.next_output(timeout=5) is not None
        stats = await asyncio.to_thread(level_server.peer_stats)
        assert len(stats) == 1
        assert stats[0]["connection_state"] == "connected"
        assert stats[0]["frames_in"]["audio"]["frames"] > 0
        assert stats[0]["bridge"]["audio_forwarded"] > 0
    finally:
        await client.close()
    await wait_for(lambda: level_server.peer_stats() == [], timeout=5)
