"""Network loss and jitter on the WebRTC path: audio still flows with bounded latency.

A test-only shim wraps the client's DTLS transport send: 2 % of outgoing RTP/RTCP packets are dropped
and 10 % are held back 20 ms (so they also arrive out of order). The server's low-latency jitter
buffer must conceal the holes and reorder, and burst -> result latency must stay bounded."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.runtime import now_us
from remotemedia_nbrtc.standalone.server import ServerConfig, WebRTCServer
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
from remotemedia_nbrtc.transport.loop_thread import rtc_loop
from remotemedia_nbrtc.transport.sources import ToneBurstSource

pytestmark = pytest.mark.timeout(60)

ICE = IceConfig(loopback_only=True)
LEVEL = {"version": "v1", "nodes": [{"id": "level", "node_type": "AudioLevelNode", "params": {}}], "connections": []}
LOSS, DELAYED, DELAY_S = 0.02, 0.10, 0.020


class LossyLink:
    """Wraps one RTCDtlsTransport's ``_send_rtp`` (per instance; test-only)."""

    def __init__(self, transport: Any, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.sent = self.dropped = self.delayed = 0
        self._real = transport._send_rtp
        self._tasks: set[asyncio.Task[None]] = set()
        transport._send_rtp = self._send

    async def _send(self, data: bytes) -> None:
        self.sent += 1
        roll = self.rng.random()
        if roll < LOSS:
            self.dropped += 1
            return
        if roll < LOSS + DELAYED:
            self.delayed += 1
            task = asyncio.ensure_future(self._later(data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        await self._real(data)

    async def _later(self, data: bytes) -> None:
        await asyncio.sleep(DELAY_S)
        try:
            await self._real(data)
        except Exception:  # noqa: BLE001, S110 - the connection closed meanwhile
            pass


async def test_audio_flows_with_bounded_latency_under_loss_and_jitter() -> None:
    server = WebRTCServer(ServerConfig(port=0, peer=PeerConfig(ice=ICE)), LEVEL)
    await server.start()
    source = ToneBurstSource(burst_ms=20, period_ms=200, amplitude=0.5)
    client = await ClientPeer.connect(server.url, audio=source, ice=ICE)
    try:
        async def install() -> LossyLink:
            assert client._pc is not None
            return LossyLink(client._pc.getTransceivers()[0].sender.transport)

        link = await asyncio.wrap_future(rtc_loop().submit(install()))
        start_us = now_us()
        hits: list[tuple[int, bool]] = []
        until = time.monotonic() + 5.0
        while time.monotonic() < until:
            try:
                msg = await client.next_output(timeout=0.2)
            except TimeoutError:
                continue
            if msg is None:
                break
            if msg.get("type") == "json":
                hits.append((msg["recv_us"], msg["value"]["rms_dbfs"] > -30.0))

        async def peer_stats() -> list[dict[str, Any]]:
            return [e.server_peer.stats() for e in server._endpoints if e.server_peer is not None]

        stats = (await asyncio.wrap_future(rtc_loop().submit(peer_stats())))[0]
    finally:
        await client.close()
        await server.stop()

    assert link.dropped >= 3 and link.delayed >= 15, vars(link)
    jitter = stats["jitter"]["audio"]
    assert jitter["lost"] + jitter["late"] >= 1, jitter  # the buffer saw the holes / reordering
    latencies = []
    onsets = [sent for _, sent in source.onsets if start_us + 0.5e6 <= sent <= start_us + 4.0e6]
    for i, sent in enumerate(onsets):
        limit = onsets[i + 1] if i + 1 < len(onsets) else sent + 200_000
        loud = [t for t, is_loud in hits if is_loud and sent <= t < limit]
        if loud:
            latencies.append((loud[0] - sent) / 1000)
    assert len(latencies) >= 0.85 * len(onsets), (len(latencies), len(onsets))
    p50, p95 = np.percentile(latencies, [50, 95])
    assert p50 < 100 and p95 < 200, (p50, p95)
    # audio kept flowing: frames reached the pipeline at about the real-time rate (50/s)
    assert stats["frames_in"]["audio"]["frames"] >= 0.9 * 50 * 5.0, stats["frames_in"]
    print(f"loss shim {vars(link)}; burst->result p50 {p50:.1f} ms p95 {p95:.1f} ms; jitter {jitter}")
