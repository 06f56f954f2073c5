"""WebSocket media fallback end to end: a real ``jupyter server`` subprocess with the extension, real
kernels running ``serve(...)``, and WebSocketMediaClient streaming through ``remotemedia/ws/<sid>``.

Covers: results through the fallback; 4 simultaneous sessions (2 kernels x 2 connections) isolated;
a browser dropping mid-stream then reconnecting; a kernel restarting mid-stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.transport.sources import ToneSource
from remotemedia_nbrtc.transport.wsclient import WebSocketMediaClient
from tests.server.test_kernel_e2e import Server, execute, server  # noqa: F401  (module-scoped server fixture)

pytestmark = pytest.mark.timeout(60)

SERVE_CODE = """
import json
from remotemedia_nbrtc.kernel import serve
from remotemedia_nbrtc.transport.ice import IceConfig
from remotemedia_nbrtc.transport.peer import PeerConfig
manifest = {{"version": "v1", "nodes": [
    {{"id": "level", "node_type": "AudioLevelNode", "params": {{}}}},
    {{"id": "spectrum", "node_type": "SpectrumNode", "params": {{"bands": 12, "min_hz": 100, "max_hz": 8000}}}}],
    "connections": []}}
{var} = serve(manifest, peer_config=PeerConfig(ice=IceConfig(loopback_only=True)))
print(json.dumps({{"session_id": {var}.session_id, "ws_path": {var}.ws_path}}))
"""
FRAME_US = 20_000  # ToneSource frames: 20 ms, so level results' media_ts_us step by this


class Kernel:
    def __init__(self, srv: Server) -> None:
        self.server = srv
        self.id = srv.api("api/kernels", "POST", {"name": "python3"})["id"]
        self.kc = BlockingKernelClient(connection_file=str(srv.runtime_dir / f"kernel-{self.id}.json"))
        self.kc.load_connection_file()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=30)

    def serve(self, var: str) -> str:
        info = json.loads(execute(self.kc, SERVE_CODE.format(var=var)).strip().splitlines()[-1])
        return self.server.url(info["ws_path"], scheme="ws")

    def stop(self) -> None:
        self.kc.stop_channels()
        try:
            self.server.api(f"api/kernels/{self.id}", "DELETE")
        except OSError:
            pass


@pytest.fixture(scope="module")
def kernels(server: Server) -> Iterator[list[Kernel]]:  # noqa: F811
    started = [Kernel(server), Kernel(server)]
    try:
        yield started
    finally:
        for k in started:
            k.stop()


async def collect(client: WebSocketMediaClient, seconds: float, outs: list[dict[str, Any]]) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            out = await client.next_output(timeout=max(0.05, until - time.monotonic()))
        except (asyncio.TimeoutError, TimeoutError):
            continue
        if out is None:
            return
        outs.append(out)


def levels(outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in outs if o.get("node") == "level"]


def peak_hz(outs: list[dict[str, Any]]) -> float:
    spectra = [o["value"] for o in outs if o.get("node") == "spectrum"][5:]
    db = np.median(np.array([s["db"] for s in spectra]), axis=0)
    return float(spectra[0]["bands_hz"][int(np.argmax(db))])


def assert_contiguous(outs: list[dict[str, Any]]) -> int:
    """Every frame up to the last result got its result, in order: nothing lost before a fault."""
    ts = [o["media_ts_us"] for o in levels(outs)]
    assert ts, "no results at all"
    steps = np.diff(ts)
    # resampling may shift a frame boundary by a millisecond, never by a whole frame
    assert ts[0] == 0 and bool(np.all(np.abs(steps - FRAME_US) <= 2000)), ts[:5]
    return len(ts)


def test_audio_through_the_fallback_returns_results(server: Server, kernels: list[Kernel]) -> None:  # noqa: F811
    url = kernels[0].serve("w1")
    source = ToneSource(440.0, amplitude=0.5, duration_s=1.0)

    async def scenario() -> tuple[list[dict[str, Any]], WebSocketMediaClient]:
        client = await WebSocketMediaClient.connect(url, token=server.token, audio=source, audio_rate=16000)
        outs: list[dict[str, Any]] = []
        await collect(client, 1.2, outs)
        await client.close()  # media.close: the kernel drains, then answers
        await collect(client, 0.1, outs)
        return outs, client

    outs, client = asyncio.run(scenario())
    n = assert_contiguous(outs)
    assert n == source.frames_sent == 50
    assert -10.5 < float(np.median([o["value"]["rms_dbfs"] for o in levels(outs)])) < -8.0
    # the pipeline declares no audio_input: it gets 48 kHz mono whichever path and rate the browser used
    assert levels(outs)[0]["value"]["sample_rate"] == 48000
    stats = client.final_stats
    assert stats is not None and stats["seq_gaps"] == 0 and stats["bridge"]["audio_drops"] == 0
    assert server.api("remotemedia/status")["binary_dropped"] == 0
    execute(kernels[0].kc, "w1.close()")


def test_four_sessions_two_kernels_each_get_only_their_own_results(
    server: Server, kernels: list[Kernel]  # noqa: F811
) -> None:
    urls = [kernels[0].serve("c4a"), kernels[1].serve("c4b")]
    plan = [(urls[0], 300.0, 0.1), (urls[0], 1200.0, 0.2), (urls[1], 2500.0, 0.4), (urls[1], 5000.0, 0.8)]

    async def one(url: str, freq: float, amp: float) -> tuple[list[dict[str, Any]], WebSocketMediaClient]:
        client = await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(freq, amplitude=amp))
        outs: list[dict[str, Any]] = []
        await collect(client, 2.0, outs)
        return outs, client

    async def scenario() -> list[tuple[list[dict[str, Any]], WebSocketMediaClient]]:
        results = await asyncio.gather(*(one(*p) for p in plan))
        during = server.api("remotemedia/status")
        assert during["connections"] == 4 and during["kernels"] == 2, during
        await asyncio.gather(*(c.close() for _, c in results))
        return list(results)

    results = asyncio.run(scenario())
    sessions = set()
    for (outs, client), (_url, freq, amp) in zip(results, plan):
        rms = [o["value"]["rms_dbfs"] for o in levels(outs)][3:]
        assert len(rms) >= 60, (freq, len(rms))
        want = 20 * np.log10(amp / np.sqrt(2))
        assert all(abs(r - want) < 1.5 for r in rms), (freq, want, min(rms), max(rms))  # no one else's audio
        lo, hi = peak_hz(outs) / 1.6, peak_hz(outs) * 1.6  # 12 log bands over 100-8000 Hz: ratio ~1.44
        assert lo < freq < hi, (freq, peak_hz(outs))
        sessions.add(client.session_id)
    assert len(sessions) == 4
    execute(kernels[0].kc, "c4a.close()")
    execute(kernels[1].kc, "c4b.close()")


def test_browser_drop_mid_stream_then_reconnect(server: Server, kernels: list[Kernel]) -> None:  # noqa: F811
    url = kernels[1].serve("d1")

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        first = await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(440.0, amplitude=0.5))
        before: list[dict[str, Any]] = []
        await collect(first, 1.0, before)
        first.abort()  # the tab crashes: no media.close, no close frame
        await collect(first, 0.5, before)  # whatever was already in flight
        await first.close(drain=False)
        second = await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(440.0, amplitude=0.5))
        after: list[dict[str, Any]] = []
        await collect(second, 0.8, after)
        report = json.loads(execute(kernels[1].kc, "print(json.dumps(len(d1.endpoints())))"))
        assert report == 1  # the dropped connection's endpoint (and its session) is gone
        assert server.api("remotemedia/status")["connections"] == 1
        await second.close()
        return before, after

    before, after = asyncio.run(scenario())
    assert assert_contiguous(before) >= 40
    assert len(levels(after)) >= 30 and levels(after)[0]["media_ts_us"] == 0  # a fresh session
    execute(kernels[1].kc, "d1.close()")


def test_kernel_restart_mid_stream_gives_a_clear_close(server: Server) -> None:  # noqa: F811
    kernel = Kernel(server)
    try:
        url = kernel.serve("r1")

        async def scenario() -> tuple[list[dict[str, Any]], WebSocketMediaClient, float]:
            client = await WebSocketMediaClient.connect(url, token=server.token,
                                                        audio=ToneSource(440.0, amplitude=0.5))
            outs: list[dict[str, Any]] = []
            await collect(client, 1.0, outs)
            t0 = time.monotonic()
            await asyncio.to_thread(server.api, f"api/kernels/{kernel.id}/restart", "POST", {})
            await collect(client, 10.0, outs)  # returns as soon as the socket closes
            await client.wait_closed(5)
            closed_after = time.monotonic() - t0
            with pytest.raises(TransportError):
                await client.call("media.stats", timeout_s=2)
            await client.close()
            return outs, client, closed_after

        outs, client, closed_after = asyncio.run(scenario())
        assert closed_after < 8, closed_after
        assert assert_contiguous(outs) >= 40
        assert any(e["code"] == -32000 and "disconnected" in e["message"] for e in client.errors), client.errors
        assert client.close_reason == "kernel disconnected"

        async def reconnect() -> None:
            await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(440.0), timeout_s=5)

        with pytest.raises(TransportError, match="unknown session|4404|closed"):  # the old session is gone
            asyncio.run(reconnect())
    finally:
        kernel.stop()
