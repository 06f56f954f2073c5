"""The extension under a real JupyterHub: a hub on 127.0.0.1 with configurable-http-proxy (tests/js), the
DummyAuthenticator, and per-user ``jupyterhub-singleuser`` servers (SimpleLocalProcessSpawner) at
``/user/NAME/``. Everything goes through the hub's proxy, with hub API tokens: the extension's status
route, a kernel started over the REST API that runs ``serve(...)``, and media over the session's
WebSocket (``/user/NAME/remotemedia/ws/<sid>``) with results back. Another user's token is refused."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient
from remotemedia_nbrtc.testing.jupyter import free_port
from remotemedia_nbrtc.transport.sources import ToneSource
from tests.outputs import collect
from tests.server._e2e import REPO, SERVE_CODE, WS_NODES, assert_contiguous

pytestmark = pytest.mark.timeout(90)

CHP = REPO / "tests" / "js" / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_CONFIG = """
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {{"alice", "bob"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.services = [{{"name": "test-admin", "api_token": {admin_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "test-admin", "services": ["test-admin"],
                            "scopes": ["admin:users", "admin:servers", "tokens"]}}]
c.JupyterHub.cleanup_servers = True
"""


@dataclass
class Hub:
    proc: subprocess.Popen[bytes]
    url: str
    admin_token: str
    log: Path

    def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {token or self.admin_token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def answers(self) -> bool:
        try:
            return self.api("GET", "/hub/api/")[0] == 200
        except urllib.error.URLError:  # not listening yet
            return False

    def user_token(self, name: str) -> str:
        status, body = self.api("POST", f"/hub/api/users/{name}/tokens", body={"note": "test"})
        assert status in (200, 201), body
        return str(body["token"])

    def spawn(self, name: str) -> None:
        status, body = self.api("POST", f"/hub/api/users/{name}/server")
        assert status in (201, 202), body
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, user = self.api("GET", f"/hub/api/users/{name}")
            server = user["servers"].get("", {})
            if server.get("ready"):
                return
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError(f"{name}'s server never became ready:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    assert CHP.exists(), "configurable-http-proxy is missing: run `npm ci` in tests/js (.ci/setup does)"
    assert shutil.which("node"), "node is missing (.ci/setup installs nodejs)"
    root = tmp_path_factory.mktemp("hub")
    (root / "homes").mkdir()
    port, admin_token = free_port(), secrets.token_hex(16)
    (root / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
        port=port, hub_port=free_port(), proxy_api_port=free_port(), chp=str(CHP), password="pw",
        homes=str(root / "homes"), singleuser=str(Path(sys.executable).parent / "jupyterhub-singleuser"),
        admin_token=admin_token))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "JUPYTER_PLATFORM_DIRS": "1", "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16)}
    log = root / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    hub = Hub(proc, f"http://127.0.0.1:{port}", admin_token, log)
    try:
        deadline = time.monotonic() + 30
        while not hub.answers():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield hub
    finally:
        # the hub stops the users' servers and the proxy it started (cleanup_servers); then its whole group
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def execute(ws_url: str, token: str, code: str, timeout: float = 30.0) -> str:
    """Run ``code`` in a kernel over its channels WebSocket; its stdout (raises on an error reply)."""
    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "session": uuid.uuid4().hex,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                raw = await ws.read_message()
                assert raw is not None, "kernel socket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    raise AssertionError("\n".join(msg["content"]["traceback"]))
                elif kind == "execute_reply":
                    return "".join(out)
    finally:
        ws.close()


def test_extension_under_jupyterhub_user_paths_and_auth(hub: Hub) -> None:
    hub.spawn("alice")
    alice, bob = hub.user_token("alice"), hub.user_token("bob")
    base = "/user/alice/"

    status, body = hub.api("GET", base + "remotemedia/status", token=alice)
    assert status == 200, body
    assert body["extension"] == "remotemedia_nbrtc.server" and body["sessions"] == 0
    # bob's token is refused by alice's server (403 from the single-user server's hub auth)
    status, _ = hub.api("GET", base + "remotemedia/status", token=bob)
    assert status == 403

    status, kernel = hub.api("POST", base + "api/kernels", token=alice, body={"name": "python3"})
    assert status == 201, kernel
    ws_base = hub.url.replace("http://", "ws://")
    channels = f"{ws_base}{base}api/kernels/{kernel['id']}/channels"
    manifest = {"version": "v1", "metadata": {"name": "hub"}, "nodes": list(WS_NODES), "connections": []}

    async def scenario() -> tuple[dict[str, str], list[dict[str, Any]], int]:
        printed = await execute(channels, alice, SERVE_CODE.format(var="h", manifest=manifest))
        info: dict[str, str] = json.loads(printed.strip().splitlines()[-1])
        # ws_path is relative to the server's base URL, which the page's config gives the widget: /user/alice/
        url = ws_base + base + info["ws_path"]
        # another user cannot open alice's session socket
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {bob}"}))
        source = ToneSource(440.0, amplitude=0.5, duration_s=1.0)
        client = await WebSocketMediaClient.connect(url, token=alice, audio=source, audio_rate=16000)
        outs = await collect(client, 1.2)
        await client.close()
        await collect(client, 0.1, outs)
        return info, outs, refused.value.code

    info, outs, refused_code = asyncio.run(scenario())
    assert info["ws_path"] == f"remotemedia/ws/{info['session_id']}"
    assert refused_code == 403
    assert assert_contiguous(outs) == 50
    # the kernel dialled its server's link directly (127.0.0.1, the server's own port and /user/alice/ prefix)
    status, body = hub.api("GET", base + "remotemedia/status", token=alice)
    assert (status, body["kernels"], body["sessions"]) == (200, 1, 1), body
    hub.api("DELETE", f"{base}api/kernels/{kernel['id']}", token=alice)
