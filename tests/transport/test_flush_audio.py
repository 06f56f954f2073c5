"""``control.flush_audio`` on a WebRTC peer drops the queued outbound audio (barge-in), as upstream's does."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest
import tornado.websocket

from remotemedia_nbrtc import AudioData, Node, Pipeline
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.tracks import PipelineAudioTrack
from tests.transport._peer_helpers import LOOPBACK, ToneTrack, start_server

pytestmark = pytest.mark.timeout(60)

REPLY_S = 3.0


class LongReply(Node):
    """Answers the first audio input with REPLY_S seconds of tone (what a TTS reply looks like), then nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.replied = False

    def process(self, data: Any) -> Any:
        if not isinstance(data, AudioData) or self.replied:
            return None
        self.replied = True
        t = np.arange(int(48000 * REPLY_S), dtype=np.float32) / 48000
        return AudioData((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32).reshape(-1, 1), 48000)


def test_track_flush_counts_20ms_frames_exactly() -> None:
    track = PipelineAudioTrack(48000)
    track.push(AudioData(np.zeros((48000, 1), np.float32), 48000))  # 1 s
    assert track.flush() == 50
    track.push(AudioData(np.zeros((1440, 1), np.float32), 48000))  # 30 ms: a partial frame counts
    assert track.flush() == 2
    assert track.flush() == 0


async def test_flush_audio_drops_queued_audio_on_a_webrtc_peer() -> None:
    p = Pipeline("reply")
    p.add("reply", LongReply())
    server = await start_server(p)
    client = None
    try:
        client = await ClientPeer.connect(server.url, audio=ToneTrack(), ice=LOOPBACK)
        deadline = time.monotonic() + 10
        while not client.received_audio and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert client.received_audio, "the reply never started playing"
        first = await client.call("control.flush_audio", {})
        assert first["flushed"] is True
        assert 50 <= first["frames_dropped"] <= REPLY_S * 50, first  # most of the 3 s reply was still queued
        assert await client.call("control.flush_audio", {}) == {"flushed": True, "frames_dropped": 0}
    finally:
        if client is not None:
            await client.close()
        await server.stop()


async def test_flush_audio_before_the_offer_is_an_invalid_request() -> None:
    p = Pipeline("reply")
    p.add("reply", LongReply())
    server = await start_server(p)
    try:
        ws = await tornado.websocket.websocket_connect(server.url)
        await ws.write_message(json.dumps({"jsonrpc": "2.0", "method": "peer.announce", "params": {"peer_id": "a"},
                                           "id": 1}))
        assert "result" in json.loads(await ws.read_message())
        await ws.write_message(json.dumps({"jsonrpc": "2.0", "method": "control.flush_audio", "params": {}, "id": 2}))
        reply = json.loads(await ws.read_message())
        assert reply["id"] == 2 and reply["error"]["code"] == -32600, reply
        ws.close()
    finally:
        await server.stop()
