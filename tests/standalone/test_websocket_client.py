"""WebSocketMediaClient and connect_media against the standalone WebRTCServer (real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.standalone.server import WebRTCServer
from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient, connect_media
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.sources import ToneSource
from tests.outputs import collect, level_rms
from tests.transport._peer_helpers import start_server

pytestmark = pytest.mark.timeout(60)

ICE = IceConfig(loopback_only=True)
MANIFEST = {
    "version": "v1",
    "nodes": [{"id": "level", "node_type": "AudioLevelNode", "params": {"passthrough": True}}],
    "connections": [],
}


@pytest.fixture
async def server() -> AsyncIterator[WebRTCServer]:
    srv = await start_server(MANIFEST)
    yield srv
    await srv.stop()



async def test_transport_setting_forces_a_path() -> None:
    ws_only = await start_server(MANIFEST, {"transport": "websocket"})
    rtc_only = await start_server(MANIFEST, {"transport": "webrtc"})
    try:
        path = await connect_media(ws_only.url, audio=ToneSource(440.0, amplitude=0.5), ice=ICE)
        try:
            assert path.path == "websocket" and "transport='websocket'" in path.reason
            assert len(level_rms(await collect(path.client, 0.6))) >= 10  # the same source streams after the refusal
            info = await path.client.call("session.info")
            assert info["transport"]["setting"] == "websocket" and info["transport"]["active"] == "websocket"
        finally:
            await path.client.close()
        with pytest.raises(SignalingError) as err:
            await WebSocketMediaClient.connect(rtc_only.url, audio=ToneSource(440.0))
        assert err.value.code == -32600 and err.value.data["transport"] == "webrtc"
        path = await connect_media(rtc_only.url, audio=ToneSource(440.0, amplitude=0.5), ice=ICE)
        try:
            assert path.path == "webrtc"
            info = await path.client.call("session.info")
            assert info["transport"]["websocket_media"] is None and info["transport"]["active"] == "webrtc"
        finally:
            await path.client.close()
    finally:
        await ws_only.stop()
        await rtc_only.stop()


async def test_auto_falls_back_when_udp_is_blocked(server: WebRTCServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ICE check gets through (as with UDP blocked): after webrtc_timeout_s the automatic choice
    gives up on WebRTC, says why, and streams over the WebSocket instead."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice.StunProtocol, "send_stun", lambda self, message, addr: None)
    started = time.monotonic()
    path = await connect_media(server.url, audio=ToneSource(440.0, amplitude=0.5), ice=ICE, webrtc_timeout_s=1.0)
    try:
        assert 1.0 <= time.monotonic() - started < 4.0
        assert path.path == "websocket" and "within 1.0 s" in path.reason, path.reason
        assert len(level_rms(await collect(path.client, 0.6))) >= 10
    finally:
        await path.client.close()
    await asyncio.sleep(0.3)
    assert server.health()["sessions"] == 0  # the abandoned WebRTC attempt left no session behind


async def test_client_buffer_is_bounded_and_drops_are_counted(server: WebRTCServer) -> None:
    """A socket that does not drain: audio waits in a bounded FIFO, the overflow is counted, nothing blocks."""
    client = await WebSocketMediaClient.connect(server.url, audio=ToneSource(440.0, amplitude=0.5),
                                                audio_buffer_frames=10)
    try:
        hold = asyncio.Event()
        assert client._rpc is not None
        socket = client._rpc.socket
        real_write = socket.write_message

        async def stalled(message: Any, binary: bool = False) -> None:
            await hold.wait()
            await real_write(message, binary=binary)

        socket.write_message = stalled  # type: ignore[method-assign]
        await asyncio.sleep(0.6)
        assert len(client._audio_q) == 10 and client.counters["audio_dropped"] >= 15
        hold.set()
        socket.write_message = real_write  # type: ignore[method-assign]
    finally:
        await client.close(drain=False)
