"""The Jupyter server restarts while a browser streams over the WebSocket media fallback.

What happens: the server shuts its kernels down as it stops, so the client's socket closes (no hang,
pending calls fail with TransportError) and results received before were all delivered. A new
server on the same port has a new link secret and knows no sessions: the old session URL is refused
(JSON-RPC -32000, close 4404) until a kernel of the new server calls ``serve()`` again. (A kernel that
outlived its server would keep retrying its link with backoff and be refused with HTTP 403.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.server.extension import LINK_SECRET_ENV, LINK_URL_ENV
from remotemedia_nbrtc.transport.sources import ToneSource
from remotemedia_nbrtc.transport.wsclient import WebSocketMediaClient
from tests.server.test_kernel_e2e import BASE_URL, REPO, Server, _free_port
from tests.server.test_ws_fallback_e2e import Kernel, assert_contiguous, collect

pytestmark = pytest.mark.timeout(60)


def start_server(root: Path, port: int, token: str) -> Server:
    dirs = {name: root / name for name in ("config", "runtime", "data", "nb")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (LINK_URL_ENV, LINK_SECRET_ENV)}
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTER_PLATFORM_DIRS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    log = root / f"server-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.base_url={BASE_URL}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={dirs['nb']}", "--ServerApp.shutdown_no_activity_timeout=0",
           "--ServerApp.jpserver_extensions={'remotemedia_nbrtc.server': True}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=dirs["nb"])
    srv = Server(port, token, dirs["runtime"], proc, log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            srv.api("api/status")
            return srv
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter server not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)


def stop_server(srv: Server) -> None:
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(20)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait(5)


def test_server_restart_mid_stream(tmp_path: Path) -> None:
    port, token = _free_port(), "restart-" + os.urandom(8).hex()
    first = start_server(tmp_path, port, token)
    second: Server | None = None
    try:
        kernel = Kernel(first)
        url = kernel.serve("s1")
        kernel.kc.stop_channels()

        async def scenario() -> tuple[list[dict[str, Any]], WebSocketMediaClient, float]:
            client = await WebSocketMediaClient.connect(url, token=token, audio=ToneSource(440.0, amplitude=0.5))
            outs: list[dict[str, Any]] = []
            await collect(client, 1.0, outs)
            t0 = time.monotonic()
            await asyncio.to_thread(first.proc.send_signal, signal.SIGTERM)
            await collect(client, 15.0, outs)
            await client.wait_closed(5)
            closed_after = time.monotonic() - t0
            with pytest.raises(TransportError):
                await client.call("media.stats", timeout_s=2)
            await client.close()
            return outs, client, closed_after

        outs, client, closed_after = asyncio.run(scenario())
        assert closed_after < 12, closed_after
        assert assert_contiguous(outs) >= 40
        assert client.closed and client.close_code in (None, 1000, 1001, 1006), client.close_code
        stop_server(first)

        second = start_server(tmp_path, port, token)
        assert second.api("remotemedia/status")["sessions"] == 0

        async def reconnect() -> WebSocketMediaClient:
            return await WebSocketMediaClient.connect(url, token=token, audio=ToneSource(440.0), timeout_s=5)

        with pytest.raises(TransportError) as err:
            asyncio.run(reconnect())
        assert "4404" in str(err.value) or "unknown session" in str(err.value) or "closed" in str(err.value)
        print(json.dumps({"closed_after_s": round(closed_after, 2), "close_code": client.close_code,
                          "close_reason": client.close_reason, "errors": client.errors}))
    finally:
        stop_server(first)
        if second is not None:
            stop_server(second)
