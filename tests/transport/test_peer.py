"""ServerPeer end to end: a plain aiortc client on 127.0.0.1, no signaling server."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.transport.config import PeerConfig
from remotemedia_nbrtc.transport.loop_thread import LoopThread
from remotemedia_nbrtc.transport.peer import ServerPeer
from tests.transport._peer_helpers import LOOPBACK, Client, ColorTrack, ToneTrack

pytestmark = pytest.mark.timeout(60)


def manifest(*nodes: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    ids = [n[0] for n in nodes]
    return {
        "version": "v1",
        "metadata": {"name": "test"},
        "nodes": [{"id": i, "node_type": t, "params": p} for i, t, p in nodes],
        "connections": [{"from": a, "to": b} for a, b in zip(ids, ids[1:])],
    }


def config(**kw: Any) -> PeerConfig:
    return PeerConfig(ice=LOOPBACK, **kw)


class Events:
    def __init__(self) -> None:
        self.candidates: list[Any] = []
        self.states: list[str] = []

    def on_ice(self, c: Any) -> None:
        self.candidates.append(c)

    def on_state(self, s: str) -> None:
        self.states.append(s)


async def connect(pipeline: Any, client: Client, cfg: PeerConfig | None = None) -> tuple[ServerPeer, Events]:
    ev = Events()
    peer = await ServerPeer.create(pipeline, cfg or config(), on_ice_candidate=ev.on_ice, on_state_change=ev.on_state)
    answer = await peer.handle_offer(await client.offer())
    await client.accept(answer)
    await client.wait_for(lambda: peer.connection_state == "connected", 10)
    return peer, ev


def json_messages(client: Client, type_: str = "json") -> list[dict[str, Any]]:
    out = []
    for m in client.messages:
        if isinstance(m, str):
            obj = json.loads(m)
            if obj.get("type") == type_:
                out.append(obj)
    return out


def test_tone_reaches_pipeline_and_level_returns_on_datachannel(rtc: LoopThread) -> None:
    """(a) 440 Hz tone -> AudioLevelNode -> JSON level on the data channel; ICE done is signalled once."""

    async def scenario() -> tuple[list[dict[str, Any]], Events, dict[str, Any]]:
        client = Client(audio=ToneTrack(amplitude=0.5))
        peer, ev = await connect(manifest(("level", "AudioLevelNode", {})), client)
        try:
            await client.wait_for(lambda: len(json_messages(client)) >= 25, 10)
            return json_messages(client), ev, peer.stats()
        finally:
            await client.close()
            await peer.close()

    levels, ev, stats = rtc.run(scenario(), timeout=30)
    assert ev.candidates == [None]
    assert "connected" in ev.states
    values = [m["value"] for m in levels[10:]]
    assert all(v["kind"] == "level" for v in values)
    rms = np.median([v["rms_dbfs"] for v in values])
    # a 0.5 sine has RMS 0.354 = -9.0 dBFS; Opus keeps it within a dB
    assert -10.5 < rms < -7.5, rms
    assert all(m["node"] == "level" and "ts_us" in m for m in levels)
    assert stats["frames_in"]["audio"]["frames"] >= 25
    assert stats["bridge"]["audio_drops"] == 0


def test_gain_processed_audio_returns_on_track(rtc: LoopThread) -> None:
    """(b) Gain -6 dB: the returned track's level is 6 dB below what we sent."""

    async def scenario() -> tuple[list[float], dict[str, Any]]:
        tone = ToneTrack(amplitude=0.5)
        client = Client(audio=tone)
        peer, _ = await connect(manifest(("gain", "Gain", {"gain_db": -6.0})), client)
        try:
            def loud_frames() -> list[float]:
                out = []
                for _, frame in client.received["audio"]:
                    pcm = frame.to_ndarray().astype(np.float64) / 32768.0
                    rms = math.sqrt(float(np.mean(pcm**2)))
                    if rms > 1e-3:
                        out.append(rms)
                return out

            await client.wait_for(lambda: len(loud_frames()) >= 60, 15)
            return loud_frames(), peer.stats()
        finally:
            await client.close()
            await peer.close()

    rms_values, stats = rtc.run(scenario(), timeout=40)
    sent_rms = 0.5 / math.sqrt(2)
    got = float(np.median(rms_values[20:]))
    db = 20 * math.log10(got / sent_rms)
    assert -7.0 < db < -5.0, db
    assert stats["audio_out"]["frames_sent"] > 0


def test_video_frames_reach_video_stats(rtc: LoopThread) -> None:
    """(c) synthetic video -> VideoStatsNode -> one JSON result per frame."""

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        client = Client(video=ColorTrack())
        peer, _ = await connect(manifest(("vstats", "VideoStatsNode", {})), client)
        try:
            await client.wait_for(lambda: len(json_messages(client)) >= 10, 15)
            return json_messages(client), peer.stats()
        finally:
            await client.close()
            await peer.close()

    results, stats = rtc.run(scenario(), timeout=40)
    values = [m["value"] for m in results]
    assert all(v["kind"] == "video_stats" for v in values)
    assert {(v["width"], v["height"]) for v in values} == {(160, 120)}
    numbers = [v["frame_number"] for v in values]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert stats["frames_in"]["video"]["frames"] >= 10


def test_datachannel_text_and_json_round_trip(rtc: LoopThread) -> None:
    """(d) text/json in -> PassThrough -> out, including messages sent before the channel opened."""

    async def scenario() -> list[dict[str, Any]]:
        client = Client()
        ev = Events()
        peer = await ServerPeer.create(
            manifest(("echo", "PassThrough", {})), config(), on_ice_candidate=ev.on_ice, on_state_change=ev.on_state
        )
        try:
            # server-side output queued before any channel exists
            peer.send_metrics({"hello": 1})
            answer = await peer.handle_offer(await client.offer())
            await client.accept(answer)
            assert client.channel is not None
            await client.wait_for(lambda: client.channel.readyState == "open", 10)
            client.channel.send("plain words")
            client.channel.send(json.dumps({"type": "text", "text": "hi", "channel": "ui"}))
            client.channel.send(json.dumps({"type": "json", "value": {"a": [1, 2]}}))
            client.channel.send(json.dumps({"free": "object"}))
            await client.wait_for(lambda: len(client.messages) >= 5, 10)
            return [json.loads(m) for m in client.messages]
        finally:
            await client.close()
            await peer.close()

    msgs = rtc.run(scenario(), timeout=30)
    assert msgs[0]["type"] == "metrics" and msgs[0]["value"] == {"hello": 1}
    rest = msgs[1:]
    assert rest[0]["type"] == "text" and rest[0]["text"] == "plain words" and rest[0]["channel"] == "tts"
    assert rest[1]["type"] == "text" and rest[1]["text"] == "hi" and rest[1]["channel"] == "ui"
    assert rest[2] == {**rest[2], "type": "json", "value": {"a": [1, 2]}}
    assert rest[3]["type"] == "json" and rest[3]["value"] == {"free": "object"}


def test_malformed_offer_raises_signaling_error(rtc: LoopThread) -> None:
    async def scenario() -> list[SignalingError]:
        ev = Events()
        peer = await ServerPeer.create(
            manifest(("echo", "PassThrough", {})), config(), on_ice_candidate=ev.on_ice, on_state_change=ev.on_state
        )
        errors = []
        try:
            for bad in ("", "hello", "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\n", "v=0\r\nm=audio 9 RTP/AVP 0\r\n"):
                try:
                    await peer.handle_offer(bad)
                except SignalingError as exc:
                    errors.append(exc)
        finally:
            await peer.close()
        return errors

    errors = rtc.run(scenario(), timeout=20)
    assert len(errors) == 4
    assert all(e.code == -32002 and "reason" in e.data for e in errors)


def test_candidates_before_offer_are_queued(rtc: LoopThread) -> None:
    async def scenario() -> str:
        client = Client(audio=ToneTrack())
        ev = Events()
        peer = await ServerPeer.create(
            manifest(("echo", "PassThrough", {})), config(), on_ice_candidate=ev.on_ice, on_state_change=ev.on_state
        )
        try:
            offer = await client.offer()
            cands = [line[2:] for line in offer.splitlines() if line.startswith("a=candidate:")]
            for c in cands:
                await peer.add_ice_candidate({"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0})
            await peer.add_ice_candidate(None)
            await client.accept(await peer.handle_offer(offer))
            await client.wait_for(lambda: peer.connection_state == "connected", 10)
            with pytest.raises(SignalingError) as info:
                await peer.add_ice_candidate({"candidate": "candidate:garbage", "sdpMid": "0"})
            assert info.value.code == -32004
            return peer.connection_state
        finally:
            await client.close()
            await peer.close()

    assert rtc.run(scenario(), timeout=30) == "connected"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_repeated_cycles_leak_no_threads_or_fds(rtc: LoopThread) -> None:
    """(e) 10 connect/stream/close cycles: aiortc decoder threads joined, sockets closed."""

    async def cycle() -> None:
        client = Client(audio=ToneTrack(), video=ColorTrack())
        peer, _ = await connect(manifest(("level", "AudioLevelNode", {})), client)
        await client.wait_for(lambda: len(json_messages(client)) >= 3, 10)
        await client.close()
        await peer.close()
        await peer.close()  # idempotent

    def threads() -> set[str]:
        # asyncio's default-executor workers (getaddrinfo for local sockets) are a bounded pool, not a leak
        return {f"{t.name}#{t.ident}" for t in threading.enumerate() if not t.name.startswith("asyncio_")}

    rtc.run(cycle(), timeout=30)  # warm-up: lazily created loops, executors
    time.sleep(0.3)
    before, fds = threads(), _fds()
    for _ in range(10):
        rtc.run(cycle(), timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (threads() - before or _fds() > fds):
        time.sleep(0.1)
    assert threads() - before == set()
    assert _fds() <= fds
    executor_threads = [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
    assert len(executor_threads) <= 2 * (min(32, (os.cpu_count() or 1) + 4))


def test_audio_send_to_pipeline_latency(rtc: LoopThread) -> None:
    """Client send -> pipeline node latency: the low-latency receiver vs aiortc's default buffer."""
    from remotemedia_nbrtc.runtime import AudioData, node, now_us

    def measure(low_latency: bool) -> float:
        arrivals: dict[int, int] = {}

        @node("LatencyProbe")
        def probe(data: AudioData) -> None:
            if data.timestamp_us is not None:
                arrivals.setdefault(round(data.timestamp_us / 20_000), now_us())

        async def scenario() -> float:
            tone = ToneTrack()
            client = Client(audio=tone)
            pipeline = {"nodes": [{"id": "probe", "node_type": "LatencyProbe"}], "connections": []}
            peer, _ = await connect(pipeline, client, config(low_latency_receive=low_latency))
            try:
                await client.wait_for(lambda: len(arrivals) >= 60, 10)
            finally:
                await client.close()
                await peer.close()
            # received timestamps count from the first frame the client sent (its frame 0)
            lat = [(arrivals[i] / 1e6 - tone.sent_at[i]) * 1000 for i in sorted(arrivals)[10:] if i in tone.sent_at]
            return float(np.median(lat))

        return rtc.run(scenario(), timeout=30)

    ours, default = measure(True), measure(False)
    print(f"audio send->pipeline p50: low-latency {ours:.1f} ms, aiortc default {default:.1f} ms")
    assert ours < 20, ours
    assert default > 60, default


def test_answer_sends_on_first_audio_line_client_can_receive(rtc: LoopThread) -> None:
    """Web-app style offer: a sendonly mic line plus a separate recvonly line; our audio goes on the second."""

    async def scenario() -> tuple[list[str], int]:
        client = Client(datachannel=True)
        client.pc.addTransceiver(ToneTrack(), direction="sendonly")
        client.pc.addTransceiver("audio", direction="recvonly")
        peer, _ = await connect(manifest(("echo", "PassThrough", {})), client)
        try:
            await client.wait_for(lambda: len(client.received["audio"]) >= 10, 10)
            directions = [line[2:] for line in peer.pc.localDescription.sdp.splitlines()
                          if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")]
            return directions, len(client.received["audio"])
        finally:
            await client.close()
            await peer.close()

    directions, frames = rtc.run(scenario(), timeout=30)
    assert directions == ["recvonly", "sendonly"]
    assert frames >= 10
