"""WebSocket media fallback end to end: a real ``jupyter server`` subprocess with the extension, real
kernels running ``serve(...)``, and WebSocketMediaClient streaming through ``remotemedia/ws/<sid>``.

Covers: results through the fallback; 4 simultaneous sessions (2 kernels x 2 connections) isolated;
a browser dropping mid-stream then reconnecting; a kernel restarting mid-stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient
from remotemedia_nbrtc.testing.jupyter import JupyterServer, KernelHandle
from remotemedia_nbrtc.transport.sources import ToneSource
from tests.outputs import collect
from tests.server._e2e import assert_contiguous, levels, serve_url, stream_through_fault

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def kernels(server: JupyterServer) -> Iterator[list[KernelHandle]]:
    started = [server.start_kernel(), server.start_kernel()]
    try:
        yield started
    finally:
        for k in started:
            k.shutdown()


def peak_hz(outs: list[dict[str, Any]]) -> float:
    spectra = [o["value"] for o in outs if o.get("node") == "spectrum"][5:]
    db = np.median(np.array([s["db"] for s in spectra]), axis=0)
    return float(spectra[0]["bands_hz"][int(np.argmax(db))])


def test_audio_through_the_fallback_returns_results(server: JupyterServer, kernels: list[KernelHandle]) -> None:
    url = serve_url(kernels[0], "w1")
    source = ToneSource(440.0, amplitude=0.5, duration_s=1.0)

    async def scenario() -> tuple[list[dict[str, Any]], WebSocketMediaClient]:
        client = await WebSocketMediaClient.connect(url, token=server.token, audio=source, audio_rate=16000)
        outs = await collect(client, 1.2)
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
    kernels[0].execute("w1.close()")


def test_four_sessions_two_kernels_each_get_only_their_own_results(
    server: JupyterServer, kernels: list[KernelHandle]
) -> None:
    urls = [serve_url(kernels[0], "c4a"), serve_url(kernels[1], "c4b")]
    plan = [(urls[0], 300.0, 0.1), (urls[0], 1200.0, 0.2), (urls[1], 2500.0, 0.4), (urls[1], 5000.0, 0.8)]

    async def one(url: str, freq: float, amp: float) -> tuple[list[dict[str, Any]], WebSocketMediaClient]:
        client = await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(freq, amplitude=amp))
        return await collect(client, 2.0), client

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
    kernels[0].execute("c4a.close()")
    kernels[1].execute("c4b.close()")


def test_browser_drop_mid_stream_then_reconnect(server: JupyterServer, kernels: list[KernelHandle]) -> None:
    url = serve_url(kernels[1], "d1")

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        first = await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(440.0, amplitude=0.5))
        before = await collect(first, 1.0)
        first.abort()  # the tab crashes: no media.close, no close frame
        await collect(first, 0.5, before)  # whatever was already in flight
        await first.close(drain=False)
        second = await WebSocketMediaClient.connect(url, token=server.token, audio=ToneSource(440.0, amplitude=0.5))
        after = await collect(second, 0.8)
        report = json.loads(kernels[1].execute("print(json.dumps(len(d1.endpoints())))"))
        assert report == 1  # the dropped connection's endpoint (and its session) is gone
        assert server.api("remotemedia/status")["connections"] == 1
        await second.close()
        return before, after

    before, after = asyncio.run(scenario())
    assert assert_contiguous(before) >= 40
    assert len(levels(after)) >= 30 and levels(after)[0]["media_ts_us"] == 0  # a fresh session
    kernels[1].execute("d1.close()")


def test_kernel_restart_mid_stream_gives_a_clear_close(server: JupyterServer) -> None:
    with server.start_kernel() as kernel:
        url = serve_url(kernel, "r1")

        async def scenario() -> tuple[list[dict[str, Any]], WebSocketMediaClient, float]:
            client = await WebSocketMediaClient.connect(url, token=server.token,
                                                        audio=ToneSource(440.0, amplitude=0.5))
            outs, closed_after = await stream_through_fault(
                client, server.api, f"api/kernels/{kernel.id}/restart", "POST", {}, close_within=10.0)
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
