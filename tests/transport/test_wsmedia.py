"""WebSocket media fallback against the standalone WebRTCServer (real sockets on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import tornado.websocket

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.protocol.jsonrpc import ErrorCode, request_message
from remotemedia_nbrtc.protocol.media_frames import HEADER_BYTES, KIND_AUDIO, KIND_VIDEO, pack_frame, unpack_frame
from remotemedia_nbrtc.standalone.server import WebRTCServer
from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient
from remotemedia_nbrtc.transport import signaling as rpc
from remotemedia_nbrtc.transport.sources import SyntheticVideoSource, ToneSource
from remotemedia_nbrtc.transport.wsmedia import negotiate
from tests.outputs import collect, level_rms
from tests.transport._peer_helpers import start_server

pytestmark = pytest.mark.timeout(60)

MANIFEST = {
    "version": "v1",
    "nodes": [
        {"id": "level", "node_type": "AudioLevelNode", "params": {"passthrough": True}},
        {"id": "stats", "node_type": "VideoStatsNode", "params": {}},
    ],
    "connections": [],
}


@pytest.fixture
async def server() -> AsyncIterator[WebRTCServer]:
    srv = await start_server(MANIFEST)
    yield srv
    await srv.stop()



def test_header_round_trip_and_rejects() -> None:
    frame = pack_frame(KIND_VIDEO, 2**32 + 5, 1_700_000_000_000_000, b"jpeg")
    assert len(frame) == HEADER_BYTES + 4 == 17
    assert frame[:5] == bytes([2, 5, 0, 0, 0])  # kind, then little-endian u32 sequence (wrapped)
    assert unpack_frame(frame) == (KIND_VIDEO, 5, 1_700_000_000_000_000, b"jpeg")
    with pytest.raises(ValueError):
        unpack_frame(b"\x01\x00")
    with pytest.raises(ValueError):
        unpack_frame(bytes([9]) + bytes(12))


def test_negotiate_refuses_narrowband_and_unknown_codecs() -> None:
    for bad in ({"codec": "pcm16", "sample_rate": 8000}, {"codec": "mulaw", "sample_rate": 8000},
                {"codec": "opus", "sample_rate": 16000}, {"codec": "pcm16", "sample_rate": 48000, "channels": 3}):
        with pytest.raises(SignalingError) as err:
            negotiate({"audio": bad})
        assert err.value.code == ErrorCode.CODEC_MISMATCH, bad
    with pytest.raises(SignalingError):
        negotiate({"video": {"codec": "h264"}})
    got = negotiate({"audio": {"codec": "pcm16", "sample_rate": 16000}, "video": {"max_fps": 100},
                     "receive_audio": True})
    assert got.audio == {"codec": "pcm16", "sample_rate": 16000, "channels": 1}
    assert got.video == {"codec": "jpeg", "max_fps": 30.0}
    assert got.audio_out == {"codec": "pcm16", "sample_rate": 24000, "channels": 1} and got.video_out is None


@pytest.mark.parametrize("codec, rate", [("pcm16", 16000), ("pcm16", 48000), ("opus", 48000)])
async def test_audio_reaches_pipeline_as_audio_data_and_results_return(
    server: WebRTCServer, codec: str, rate: int
) -> None:
    source = ToneSource(440.0, amplitude=0.5, duration_s=1.0)
    client = await WebSocketMediaClient.connect(server.url, audio=source, audio_codec=codec, audio_rate=rate,
                                                receive_audio={"sample_rate": 16000})
    try:
        outs = await collect(client, 1.3)
    finally:
        await client.close()
    levels = level_rms(outs)
    assert len(levels) >= 40, outs[:3]
    assert -10.5 < float(np.median(levels[5:])) < -8.0  # a 0.5 sine is -9 dBFS
    # the pipeline saw AudioData in its own format (no audio_input declared: as sent, 48 kHz after opus)
    first = next(o["value"] for o in outs if o.get("node") == "level")
    assert first["sample_rate"] == 48000  # undeclared audio_input: 48 kHz mono, as on the WebRTC path
    # the session drained on media.close: every frame sent became one level result, in order
    stats = client.final_stats
    assert stats is not None and stats["seq_gaps"] == 0 and stats["bridge"]["audio_drops"] == 0
    ts = [o["media_ts_us"] for o in outs if o.get("node") == "level"]
    assert ts == sorted(ts)
    # the passthrough audio came back as pcm16 at 16 kHz, about as loud as it went in
    back = client.received_audio_samples()
    assert back.shape[0] > 16000 * 0.6
    assert 0.3 < float(np.sqrt(np.mean(back[8000:] ** 2))) * np.sqrt(2) < 0.6


async def test_video_frames_reach_pipeline_and_come_back(server: WebRTCServer) -> None:
    video = SyntheticVideoSource(160, 120, fps=15, duration_s=1.5)
    client = await WebSocketMediaClient.connect(server.url, video=video, max_fps=10, receive_video=True)
    try:
        outs = await collect(client, 1.7)
        stats = await client.call("media.stats")
    finally:
        await client.close()
    frames = [o["value"] for o in outs if o.get("node") == "stats"]
    assert 10 <= len(frames) <= 16, len(frames)  # bounded to about max_fps
    assert frames[0]["width"] == 160 and frames[0]["height"] == 120
    assert stats["video_frames_in"] == client.counters["video_frames_sent"]
    assert client.counters["video_rate_skipped"] > 5  # the 15 fps source was thinned to 10 fps
    assert client.video_frames_received >= 8
    assert client.received_video[-1].width == 160


async def test_binary_before_media_open_gets_one_error(server: WebRTCServer) -> None:
    ws = await tornado.websocket.websocket_connect(server.url)
    try:
        await ws.write_message(request_message("peer.announce", {"peer_id": "x"}, 1))
        await ws.read_message()
        for _ in range(3):
            await ws.write_message(pack_frame(KIND_AUDIO, 0, 0, b"\x00\x00"), binary=True)
        await ws.write_message(request_message("peer.list", {}, 2))
        first = rpc.parse_response(await ws.read_message())
        second = rpc.parse_response(await ws.read_message())
    finally:
        ws.close()
    assert first["error"]["code"] == -32600 and first["id"] is None
    assert second["id"] == 2  # only one error for three frames
