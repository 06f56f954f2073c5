"""Stage trace: onset stamps per stage, and a real echo traced through every stage in causal order."""

from __future__ import annotations

import asyncio
import bisect
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.runtime import now_us
from remotemedia_nbrtc.standalone.server import ServerConfig, WebRTCServer
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
from remotemedia_nbrtc.transport.sources import ToneBurstSource
from remotemedia_nbrtc.transport.stagetrace import ENV_VAR, StageTrace, trace_from_env

pytestmark = pytest.mark.timeout(60)

ICE = IceConfig(loopback_only=True)
SERVER_STAGES = ["rtp_arrival", "jitter_release", "decoded", "reader", "lane", "output", "push", "out", "sent"]
CLIENT_STAGES = ["rtp_arrival", "jitter_release", "decoded", "reader"]


def _frame(loud_from: int | None, n: int = 960) -> np.ndarray:
    out = np.zeros((n, 1), np.float32)
    if loud_from is not None:
        out[loud_from:, 0] = 0.5
    return out


def test_only_the_first_loud_frame_after_a_quiet_one_is_an_onset() -> None:
    trace = StageTrace()
    seen = [trace.level("x", _frame(f)) for f in (None, 480, 0, None, None, 0)]
    assert seen == [False, True, False, False, False, True]
    (t, index, offset_ms), _ = trace.as_dict()["x"]
    assert offset_ms == 10.0 and index == -1 and abs(t - now_us()) < 1_000_000


def test_int16_interleaved_stereo_offsets_count_sample_frames() -> None:
    trace = StageTrace()
    pcm = np.zeros(1920, np.int16)
    pcm[2 * 240 :] = 16000  # from sample frame 240 on, both channels
    assert trace.level("s16", pcm.reshape(1, -1), channels=2)
    assert trace.as_dict()["s16"][0][2] == 5.0


def test_packet_stamps_are_taken_when_their_decoded_frame_is_the_onset() -> None:
    trace = StageTrace()
    base = 0xFFFFFF00  # RTP timestamps wrap
    for i in range(4):
        trace.packet((base + i * 960) & 0xFFFFFFFF, 0)
        trace.packet((base + i * 960) & 0xFFFFFFFF, 1)
    # decoded pts start anywhere: indices count from the first frame seen
    assert [trace.frame_index(5000 + i * 960, 960) for i in range(4)] == [0, 1, 2, 3]
    trace.decoded_onset(2)
    stamps = trace.as_dict()
    assert stamps["rtp_arrival"][0][1] == 2 and stamps["jitter_release"][0][1] == 2
    assert stamps["rtp_arrival"][0][0] <= stamps["jitter_release"][0][0]
    trace.decoded_onset(99)  # unknown index: nothing stamped
    assert len(trace.as_dict()["rtp_arrival"]) == 1


def test_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert not trace_from_env() and not PeerConfig().stage_trace
    monkeypatch.setenv(ENV_VAR, "1")
    assert trace_from_env() and PeerConfig().stage_trace


def _chain(start_us: int, stages: list[tuple[dict[str, Any], str]]) -> list[int] | None:
    times = [start_us]
    for trace, stage in stages:
        stamps = sorted(row[0] for row in trace.get(stage, []))
        j = bisect.bisect_left(stamps, times[-1])
        if j == len(stamps) or stamps[j] - start_us > 250_000:
            return None
        times.append(stamps[j])
    return times


async def test_echo_is_stamped_at_every_stage_in_causal_order() -> None:
    pipeline = {"version": "v1", "metadata": {"name": "t"}, "connections": [],
                "nodes": [{"id": "echo", "node_type": "PassThrough", "params": {}}]}
    server = WebRTCServer(ServerConfig(port=0, peer=PeerConfig(ice=ICE, stage_trace=True)), pipeline)
    await server.start()
    try:
        source = ToneBurstSource(burst_ms=20, period_ms=300, amplitude=0.5)
        client = await ClientPeer.connect(server.url, audio=source, ice=ICE, stage_trace=True)
        try:
            await asyncio.sleep(2.0)
            [peer] = await asyncio.to_thread(server.peer_stats)
            client_trace = client.trace.as_dict() if client.trace is not None else {}
        finally:
            await client.close()
    finally:
        await server.stop()
    server_trace = peer["trace"]
    assert set(SERVER_STAGES) <= set(server_trace), server_trace.keys()
    assert set(CLIENT_STAGES) <= set(client_trace), client_trace.keys()
    encoded = dict(source.encoded)
    stages = [(server_trace, s) for s in SERVER_STAGES] + [(client_trace, s) for s in CLIENT_STAGES]
    chains = [_chain(encoded[onset], stages) for onset, _ in source.onsets[1:-1] if onset in encoded]
    complete = [c for c in chains if c is not None]
    assert len(complete) >= 3, chains
    # the whole round trip, from the onset's frame encoded at the client to it decoded back, on loopback
    assert float(np.median([c[-1] - c[0] for c in complete])) < 100_000
    # Opus's lookahead moves the onset later into its frame at each decode: ~6.5 ms per encode/decode
    server_offset = float(np.median([row[2] for row in server_trace["decoded"]]))
    client_offset = float(np.median([row[2] for row in client_trace["decoded"]]))
    assert 3.0 < server_offset < client_offset < 20.0, (server_offset, client_offset)


async def test_no_trace_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    pipeline = {"version": "v1", "metadata": {"name": "t"}, "connections": [],
                "nodes": [{"id": "echo", "node_type": "PassThrough", "params": {}}]}
    server = WebRTCServer(ServerConfig(port=0, peer=PeerConfig(ice=ICE)), pipeline)
    await server.start()
    try:
        client = await ClientPeer.connect(server.url, audio=ToneBurstSource(period_ms=200), ice=ICE)
        try:
            await asyncio.sleep(0.5)
            [peer] = await asyncio.to_thread(server.peer_stats)
            assert client.trace is None and "trace" not in peer
        finally:
            await client.close()
    finally:
        await server.stop()
