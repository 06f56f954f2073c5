"""The standalone WebRTCServer over real HTTP/WebSocket on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.standalone.server import WIDGET_JS_DIR, WebRTCServer
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig
from tests.tools import CHROMIUM, require_tools
from tests.transport._peer_helpers import start_server
from tests.transport._signaling_cases import OVERSIZE_LIMIT, malformed_messages

pytestmark = pytest.mark.timeout(60)

ICE = IceConfig(loopback_only=True)
MANIFEST = {
    "version": "v1",
    "metadata": {"name": "echo"},
    "nodes": [{"id": "echo", "node_type": "PassThrough", "params": {}}],
    "connections": [],
}


@pytest.fixture
async def server() -> AsyncIterator[WebRTCServer]:
    srv = await start_server(MANIFEST, max_message_bytes=OVERSIZE_LIMIT)
    yield srv
    await srv.stop()


async def ws_connect(url: str) -> tornado.websocket.WebSocketClientConnection:
    return await tornado.websocket.websocket_connect(url, max_message_size=16 << 20)


async def rpc(ws: tornado.websocket.WebSocketClientConnection, text: str) -> dict[str, Any]:
    await ws.write_message(text)
    while True:
        reply = await ws.read_message()
        assert reply is not None, "server closed the socket"
        obj = json.loads(reply)
        if "method" not in obj:  # skip notifications
            return obj


def req(method: str, params: dict[str, Any], rid: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})


async def test_port_zero_health_and_test_page(server: WebRTCServer) -> None:
    assert server.port and server.port > 0 and server.url == f"ws://127.0.0.1:{server.port}/ws"
    http = tornado.httpclient.AsyncHTTPClient()
    health = await http.fetch(server.http_url + "health")
    assert json.loads(health.body) == {"status": "ok", "peers": 0, "sessions": 0, "connections": 0}
    page = await http.fetch(server.http_url)
    body = page.body.decode()
    assert page.headers["Content-Type"].startswith("text/html")
    assert "RTCPeerConnection" in body and "METHODS.PEER_ANNOUNCE" in body and "DATA_CHANNEL_LABEL" in body
    # the page speaks through the widget's own modules, served read-only under /js/
    assert 'from "/js/rpc_socket.js"' in body and 'from "/js/protocol.js"' in body
    served: dict[str, str] = {}
    wanted = ["rpc_socket.js", "protocol.js"]
    while wanted:  # the page's modules and, transitively, whatever they import ("./x.js" is /js/x.js)
        name = wanted.pop()
        module = await http.fetch(server.http_url + "js/" + name)
        assert module.headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")
        served[name] = module.body.decode()
        assert served[name] == (WIDGET_JS_DIR / name).read_text("utf-8")
        wanted += [dep for dep in re.findall(r'from "\./([\w-]+\.js)"', served[name]) if dep not in served]
    assert '"peer.announce"' in served["protocol.js"] and '"pipeline-data"' in served["protocol.js"]
    # nothing but widget/js/*.js: no other file of the package, no way out of the directory
    outside = ["js/../assemble.py", "js/%2e%2e/assemble.py", "js/..%2fassemble.py", "js/assemble.py"]
    for path in [*outside, "js/missing.js", "js/"]:
        reply = await http.fetch(server.http_url + path, raise_error=False)
        assert reply.code == 404, (path, reply.code)


async def test_websocket_on_ws_and_root_paths(server: WebRTCServer) -> None:
    for path in ("/ws", "/"):
        ws = await ws_connect(f"ws://127.0.0.1:{server.port}{path}")
        reply = await rpc(ws, req("peer.announce", {"peer_id": f"p{len(path)}"}, "req-1"))
        assert reply == {
            "jsonrpc": "2.0",
            "result": {
                "success": True,
                "peer_id": f"p{len(path)}",
                "peers_count": reply["result"]["peers_count"],
                "other_peers": reply["result"]["other_peers"],
            },
            "id": "req-1",
        }
        info = await rpc(ws, req("server.info", {}, 2))
        assert info["result"]["addresses"] == [{"ip": "127.0.0.1", "is_default": True}]
        ws.close()


async def test_fifty_malformed_messages_then_server_still_answers(server: WebRTCServer) -> None:
    ws = await ws_connect(server.url)
    assert (await rpc(ws, req("peer.announce", {"peer_id": "fuzz"}, 0)))["result"]["success"]
    codes = []
    for text in malformed_messages():
        reply = await rpc(ws, text)
        assert reply["jsonrpc"] == "2.0" and "id" in reply and "result" not in reply, reply
        codes.append(reply["error"]["code"])
    assert len(codes) == 50 and set(codes) == {-32700, -32600, -32601, -32602}
    # binary frames are WebSocket media: before media.open they get one -32600 (not one per frame), no crash
    await ws.write_message(b"\x00\x01binary", binary=True)
    await ws.write_message(b"\x01" * 20, binary=True)
    reply = json.loads(await ws.read_message())
    assert reply["error"]["code"] == -32600 and "media.open" in reply["error"]["data"]["reason"]
    listed = await rpc(ws, req("peer.list", {}, "still-alive"))
    assert listed["id"] == "still-alive" and listed["result"]["count"] == 1
    ws.close()
    # and a fresh connection works too
    client = await ClientPeer.connect(server.url, ice=ICE)
    await client.send_text("ok?")
    msg = await client.next_output(timeout=5)
    assert msg is not None and msg["text"] == "ok?"
    await client.close()


async def test_auth_token_required() -> None:
    srv = await start_server(MANIFEST, auth_token="s3cret")
    try:
        for url in (srv.url, srv.url + "?token=wrong"):
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await ws_connect(url)
            assert info.value.code == 401
        client = await ClientPeer.connect(srv.url, token="s3cret", ice=ICE)
        assert client.connection_state == "connected"
        assert "s3cret" not in client.url  # it went as a header, not in the URL
        await client.close()
    finally:
        await srv.stop()


async def test_auth_token_as_bearer_header_and_origin_still_checked() -> None:
    """``Authorization: Bearer`` authorises; a wrong one does not; a browser Origin from elsewhere is refused
    even with the right token, while the server's own page (same origin) with ?token= still gets in."""
    srv = await start_server(MANIFEST, auth_token="s3cret")

    def upgrade(headers: dict[str, str], query: str = "") -> tornado.httpclient.HTTPRequest:
        return tornado.httpclient.HTTPRequest(srv.url + query, headers=headers)

    try:
        ws = await tornado.websocket.websocket_connect(upgrade({"Authorization": "Bearer s3cret"}))
        assert (await rpc(ws, req("peer.announce", {"peer_id": "h"}, 1)))["result"]["success"]
        ws.close()
        for headers in ({"Authorization": "Bearer nope"}, {"Authorization": "Basic s3cret"}):
            with pytest.raises(tornado.httpclient.HTTPClientError) as info:
                await tornado.websocket.websocket_connect(upgrade(headers))
            assert info.value.code == 401
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await tornado.websocket.websocket_connect(
                upgrade({"Authorization": "Bearer s3cret", "Origin": "https://evil.example"})
            )
        assert info.value.code == 403
        same_origin = {"Origin": f"http://127.0.0.1:{srv.port}"}
        ws = await tornado.websocket.websocket_connect(upgrade(same_origin, "?token=s3cret"))
        assert (await rpc(ws, req("peer.announce", {"peer_id": "page"}, 1)))["result"]["success"]
        ws.close()
    finally:
        await srv.stop()


async def test_session_limit_gives_32001() -> None:
    srv = await start_server(MANIFEST, max_sessions=1)
    try:
        first = await ClientPeer.connect(srv.url, ice=ICE)
        with pytest.raises(SignalingError) as info:
            await ClientPeer.connect(srv.url, ice=ICE)
        assert info.value.code == -32001
        await first.close()
        deadline = time.monotonic() + 5  # the server notices the closed socket asynchronously
        while srv.health()["peers"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        second = await ClientPeer.connect(srv.url, ice=ICE)  # the slot is free again
        await second.close()
    finally:
        await srv.stop()


async def test_ten_idle_announcers_do_not_lock_out_a_real_client() -> None:
    """Ten sockets that announce and never offer take no session slot, and are closed after the offer timeout."""
    srv = await start_server(MANIFEST, max_sessions=2, offer_timeout_s=1.5, max_idle_per_address=16)
    idle = []
    try:
        for i in range(10):
            ws = await ws_connect(srv.url)
            assert (await rpc(ws, req("peer.announce", {"peer_id": f"idle{i}"}, 1)))["result"]["success"]
            idle.append(ws)
        client = await ClientPeer.connect(srv.url, ice=ICE)
        await client.send_text("through")
        msg = await client.next_output(timeout=5)
        assert msg is not None and msg["text"] == "through"
        assert srv.health()["sessions"] == 1 and srv.health()["peers"] == 11
        for ws in idle:  # the server times them out: a -32006 notice, then the socket closes
            messages = []
            while (text := await asyncio.wait_for(ws.read_message(), 5)) is not None:
                messages.append(json.loads(text))  # peer.joined notifications, then the notice
            assert messages[-1]["error"]["code"] == -32006, messages[-1]
        assert srv.health()["peers"] == 1 and client.connection_state == "connected"
        await client.close()
    finally:
        for ws in idle:
            ws.close()
        await srv.stop()


async def test_bad_offer_over_the_wire(server: WebRTCServer) -> None:
    ws = await ws_connect(server.url)
    await rpc(ws, req("peer.announce", {"peer_id": "x"}, 1))
    reply = await rpc(
        ws, req("peer.offer", {"from": "x", "to": "remotemedia-server", "sdp": "v=0\r\nm=audio 9 junk\r\n"}, 2)
    )
    assert reply["error"]["code"] == -32002 and reply["error"]["data"]["reason"]
    reply = await rpc(ws, req("peer.offer", {"from": "x", "to": "someone", "sdp": "v=0\r\nm=audio 9 x\r\n"}, 3))
    assert reply["error"]["code"] == -32000
    assert server.health()["sessions"] == 0
    ws.close()


def test_cli_help_and_serve_args() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "remotemedia_nbrtc", "--help"], check=False, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "serve" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "remotemedia_nbrtc", "serve", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "--port" in out.stdout and "--loopback-only" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "remotemedia_nbrtc", "serve", "/nonexistent.yaml"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "not found" in out.stderr


def test_cli_serve_runs_and_stops(tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    manifest = tmp_path / "echo.yaml"
    manifest.write_text(
        "version: v1\nmetadata: {name: echo}\nnodes:\n"
        "  - {id: echo, node_type: PassThrough, params: {}}\nconnections: []\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "remotemedia_nbrtc", "serve", str(manifest), "--port", "0", "--loopback-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "ws://127.0.0.1:" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        http_url = line.split("test page: ")[1].strip(" )\n")
        with urllib.request.urlopen(http_url + "health", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ok"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


async def test_browser_test_page_streams_mic_to_pipeline() -> None:
    """The bundled page (fake mic in headless Chromium) connects through the JSON-RPC signaling."""
    require_tools(CHROMIUM, hint="apt-get install chromium (see .ci/setup)")
    import playwright.async_api as playwright  # a test dependency: missing is an error, not a skip

    level = {
        "version": "v1",
        "metadata": {"name": "lvl"},
        "nodes": [{"id": "lvl", "node_type": "AudioLevelNode", "params": {}}],
        "connections": [],
    }
    srv = await start_server(level)
    try:
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    "--allow-loopback-in-peer-connection",
                ],
            )
            try:
                page = await browser.new_page()
                await page.goto(srv.http_url + "?loopback=1", timeout=10_000)
                await page.click("#start")
                await page.wait_for_function(
                    "() => document.getElementById('results').textContent.includes('rms_dbfs')", timeout=15_000
                )
                assert await page.text_content("#state") == "connected"
                assert srv.health()["sessions"] == 1
                await page.click("#stop")
            finally:
                await browser.close()
        deadline = time.monotonic() + 5
        while srv.health()["connections"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert srv.health() == {"status": "ok", "peers": 0, "sessions": 0, "connections": 0}
    finally:
        await srv.stop()


async def test_offers_with_missing_or_malformed_fingerprint_are_rejected(
    server: WebRTCServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No/garbled a=fingerprint: -32002 with a reason before aiortc sees it, one log line, no tracebacks."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.createDataChannel("pipeline-data")
    await pc.setLocalDescription(await pc.createOffer())
    good = pc.localDescription.sdp
    await pc.close()
    assert "a=fingerprint:" in good
    no_fp = "".join(line for line in good.splitlines(keepends=True) if not line.startswith("a=fingerprint"))
    bad_offers = {
        "missing": no_fp,
        "not hex": re.sub(r"a=fingerprint:(\S+) \S+", r"a=fingerprint:\1 ZZ:YY", good),
        "empty": re.sub(r"a=fingerprint:.*", "a=fingerprint:", good),
        "algorithm": re.sub(r"a=fingerprint:\S+", "a=fingerprint:md5", good),
        "too short": re.sub(r"a=fingerprint:(\S+) \S+", r"a=fingerprint:\1 AB:CD", good),
    }
    ws = await ws_connect(server.url)
    await rpc(ws, req("peer.announce", {"peer_id": "fp"}, 0))
    caplog.clear()
    with caplog.at_level("DEBUG"):
        for name, sdp in bad_offers.items():
            reply = await rpc(ws, req("peer.offer", {"from": "fp", "to": "remotemedia-server", "sdp": sdp}, name))
            assert "error" in reply, (name, reply)
            assert reply["error"]["code"] == -32002, (name, reply)
            assert "fingerprint" in reply["error"]["data"]["reason"], (name, reply)
        await asyncio.sleep(0.5)  # anything aiortc would log asynchronously
    assert server.health()["sessions"] == 0
    rejected = [r for r in caplog.records if "rejected offer" in r.getMessage()]
    assert len(rejected) == len(bad_offers)
    assert not [r for r in caplog.records if r.exc_info or "AssertionError" in r.getMessage()]
    ws.close()
