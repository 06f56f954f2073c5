"""The Jupyter server restarts while a browser streams over the WebSocket media fallback.

What happens: the server shuts its kernels down as it stops, so the client's socket closes (no hang,
pending calls fail with TransportError) and results received before were all delivered. A new
server on the same port has a new link secret and knows no sessions: the old session URL is refused
(JSON-RPC -32000, close 4404) until a kernel of the new server calls ``serve()`` again. (A kernel that
outlived its server would keep retrying its link with backoff and be refused with HTTP 403.)"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient
from remotemedia_nbrtc.testing.jupyter import JupyterServer
from remotemedia_nbrtc.transport.sources import ToneSource
from tests.server._e2e import assert_contiguous, serve_url, start_server, stream_through_fault

pytestmark = pytest.mark.timeout(60)


def test_server_restart_mid_stream(tmp_path: Path) -> None:
    def start(port: int | None = None, token: str | None = None) -> JupyterServer:
        return start_server(tmp_path, port=port, token=token, log=tmp_path / f"server-{time.monotonic_ns()}.log",
                            extra_args=["--ServerApp.shutdown_no_activity_timeout=0"])

    first = start()
    token = first.token
    second: JupyterServer | None = None
    try:
        kernel = first.start_kernel()
        url = serve_url(kernel, "s1")
        kernel.client.stop_channels()

        async def scenario() -> tuple[list[dict[str, Any]], WebSocketMediaClient, float]:
            client = await WebSocketMediaClient.connect(url, token=token, audio=ToneSource(440.0, amplitude=0.5))
            outs, closed_after = await stream_through_fault(client, first.proc.send_signal, signal.SIGTERM,
                                                            close_within=15.0)
            return outs, client, closed_after

        outs, client, closed_after = asyncio.run(scenario())
        assert closed_after < 12, closed_after
        assert assert_contiguous(outs) >= 40
        assert client.closed and client.close_code in (None, 1000, 1001, 1006), client.close_code
        first.stop()

        second = start(first.port, token)
        assert second.api("remotemedia/status")["sessions"] == 0

        async def reconnect() -> WebSocketMediaClient:
            return await WebSocketMediaClient.connect(url, token=token, audio=ToneSource(440.0), timeout_s=5)

        with pytest.raises(TransportError) as err:
            asyncio.run(reconnect())
        assert "4404" in str(err.value) or "unknown session" in str(err.value) or "closed" in str(err.value)
        print(json.dumps({"closed_after_s": round(closed_after, 2), "close_code": client.close_code,
                          "close_reason": client.close_reason, "errors": client.errors}))
    finally:
        first.stop()
        if second is not None:
            second.stop()
