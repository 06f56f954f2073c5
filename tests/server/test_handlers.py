"""The extension's handlers on a real in-process Jupyter server (pytest-jupyter)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClientConnection

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.kernel.link import KernelLink, ServedSession, link_settings_from_env
from remotemedia_nbrtc.protocol.kernel_link import LINK_SECRET_ENV, LINK_URL_ENV

pytestmark = pytest.mark.timeout(30)

NO_AUTH = {"Authorization": ""}


def _rpc(method: str, request_id: int = 1, **params: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id})


async def _register(ws: WebSocketClientConnection, read_json: Any, sid: str) -> None:
    await ws.write_message(json.dumps({"kind": "register", "session": sid}))
    assert await read_json(ws) == {"kind": "registered", "session": sid}


# --- authentication -------------------------------------------------------------------------


def test_status_reports_counts(jp_fetch, run, connect_link, read_json):
    body = json.loads(run(jp_fetch("remotemedia", "status")).body)
    assert body["extension"] == "remotemedia_nbrtc.server"
    assert (body["kernels"], body["sessions"], body["connections"]) == (0, 0, 0)
    assert isinstance(body["version"], str) and body["version"]

    link = run(connect_link())
    run(_register(link, read_json, "s1"))
    body = json.loads(run(jp_fetch("remotemedia", "status")).body)
    assert (body["kernels"], body["sessions"]) == (1, 1)
    link.close()


def test_status_needs_token(jp_fetch, run):
    with pytest.raises(HTTPClientError) as info:
        run(jp_fetch("remotemedia", "status", headers=NO_AUTH))
    assert info.value.code == 403


def test_browser_ws_without_token_is_403(ws_fetch, run):
    with pytest.raises(HTTPClientError) as info:
        run(ws_fetch("remotemedia", "ws", "anything", headers=NO_AUTH))
    assert info.value.code == 403


def test_browser_ws_with_wrong_token_is_403(ws_fetch, run):
    with pytest.raises(HTTPClientError) as info:
        run(ws_fetch("remotemedia", "ws", "anything", headers={"Authorization": "token nope"}))
    assert info.value.code == 403


def test_browser_ws_token_in_query_is_accepted(ws_fetch, jp_serverapp, run, read_json):
    token = jp_serverapp.identity_provider.token
    ws = run(ws_fetch("remotemedia", "ws", "nosuch", headers=NO_AUTH, params={"token": token}))
    assert run(read_json(ws))["error"]["code"] == -32000


@pytest.mark.parametrize("secret", [None, "", "wrong-secret"])
def test_kernel_link_without_secret_is_403(ws_fetch, run, secret):
    headers = {} if secret is None else {"X-RemoteMedia-Link-Secret": secret}
    with pytest.raises(HTTPClientError) as info:
        # also without the jupyter token: the link secret is the only credential that counts
        run(ws_fetch("remotemedia", "kernel-link", headers={**NO_AUTH, **headers}))
    assert info.value.code == 403


def test_kernel_link_jupyter_token_alone_is_403(ws_fetch, run):
    with pytest.raises(HTTPClientError) as info:
        run(ws_fetch("remotemedia", "kernel-link"))  # ws_fetch sends the server token
    assert info.value.code == 403


def test_kernel_link_secret_as_query_argument(ws_fetch, run, link_secret, read_json):
    ws = run(ws_fetch("remotemedia", "kernel-link", headers=NO_AUTH, params={"secret": link_secret}))
    run(_register(ws, read_json, "q1"))
    ws.close()


def test_extension_exports_link_env(jp_serverapp, link_secret):
    assert os.environ[LINK_SECRET_ENV] == link_secret
    assert os.environ[LINK_URL_ENV].endswith("remotemedia/kernel-link")
    assert os.environ[LINK_URL_ENV].startswith("ws://127.0.0.1:")


# --- browser errors -------------------------------------------------------------------------


def test_unknown_session_gets_jsonrpc_error_and_close(ws_fetch, run, read_json):
    ws = run(ws_fetch("remotemedia", "ws", "no-such-session"))
    msg = run(read_json(ws))
    assert msg["jsonrpc"] == "2.0" and msg["id"] is None
    assert msg["error"]["code"] == -32000
    assert "no-such-session" in msg["error"]["message"]
    assert run(ws.read_message()) is None
    assert ws.close_code == 4404


def test_malformed_browser_messages_get_errors_and_server_lives_on(
    ws_fetch, jp_fetch, run, connect_link, read_json
):
    link = run(connect_link())
    run(_register(link, read_json, "sess"))
    ws = run(ws_fetch("remotemedia", "ws", "sess"))
    opened = run(read_json(link))
    assert opened["kind"] == "open" and opened["session"] == "sess"

    run(ws.write_message("{not json"))
    assert run(read_json(ws))["error"]["code"] == -32700
    # binary frames are WebSocket media: relayed to the kernel with the connection id prefix
    run(ws.write_message(b"\x00\x01", binary=True))
    conn = opened["conn"].encode()
    assert run(asyncio.wait_for(link.read_message(), 5)) == bytes([len(conn)]) + conn + b"\x00\x01"
    # a valid message still goes through on the same socket, after the bad ones
    run(ws.write_message(_rpc("peer.list")))
    fwd = run(read_json(link))
    assert fwd == {"kind": "message", "conn": opened["conn"], "data": _rpc("peer.list")}

    # an oversized message closes that socket (1009) ...
    run(ws.write_message("x" * (300 * 1024)))
    assert run(ws.read_message()) is None
    assert ws.close_code == 1009
    assert run(read_json(link)) == {"kind": "close", "conn": opened["conn"]}
    # ... and the server and the session live on
    assert json.loads(run(jp_fetch("remotemedia", "status")).body)["sessions"] == 1
    ws2 = run(ws_fetch("remotemedia", "ws", "sess"))
    assert run(read_json(link))["kind"] == "open"
    ws2.close()
    link.close()


def test_malformed_envelopes_get_errors_and_link_lives_on(run, connect_link, read_json):
    link = run(connect_link())
    for bad in ["nope", "[]", json.dumps({"kind": "bogus"}), json.dumps({"kind": "register"})]:
        run(link.write_message(bad))
        reply = run(read_json(link))
        assert reply["kind"] == "error", bad
    run(link.write_message(b"\xff", binary=True))  # no connection id prefix
    assert run(read_json(link))["kind"] == "error"
    run(_register(link, read_json, "still-ok"))
    link.close()


# --- relaying -------------------------------------------------------------------------------


def test_relay_round_trip_and_close(ws_fetch, jp_fetch, run, connect_link, read_json):
    link = run(connect_link())
    run(_register(link, read_json, "abc"))
    browsers = [run(ws_fetch("remotemedia", "ws", "abc")) for _ in range(2)]
    conns = [run(read_json(link))["conn"] for _ in browsers]
    assert len(set(conns)) == 2

    for i, ws in enumerate(browsers):
        run(ws.write_message(_rpc("peer.announce", i, peer_id=f"p{i}")))
        env = run(read_json(link))
        assert env["conn"] == conns[i] and json.loads(env["data"])["params"]["peer_id"] == f"p{i}"
    # replies are routed to the right browser only
    reply = json.dumps({"jsonrpc": "2.0", "result": {"success": True}, "id": 1})
    run(link.write_message(json.dumps({"kind": "message", "conn": conns[1], "data": reply})))
    assert run(browsers[1].read_message()) == reply

    # browser closes -> kernel hears "close"
    browsers[0].close()
    assert run(read_json(link)) == {"kind": "close", "conn": conns[0]}
    # kernel closes a connection -> the browser socket closes
    run(link.write_message(json.dumps({"kind": "close", "conn": conns[1], "data": "bye"})))
    assert run(browsers[1].read_message()) is None
    assert browsers[1].close_reason == "bye"
    link.close()


def test_kernel_disconnect_closes_browsers_with_error(ws_fetch, jp_fetch, run, connect_link, read_json):
    link = run(connect_link())
    run(_register(link, read_json, "k1"))
    ws = run(ws_fetch("remotemedia", "ws", "k1"))
    run(read_json(link))  # open
    link.close()
    msg = run(read_json(ws))
    assert msg["error"]["code"] == -32000 and "disconnected" in msg["error"]["message"]
    assert run(ws.read_message()) is None

    async def wait_no_kernels() -> dict[str, Any]:
        while True:
            body = json.loads((await jp_fetch("remotemedia", "status")).body)
            if body["kernels"] == 0:
                return body
            await asyncio.sleep(0.02)

    assert run(wait_no_kernels())["sessions"] == 0
    # the session is gone with its kernel
    ws = run(ws_fetch("remotemedia", "ws", "k1"))
    assert run(read_json(ws))["error"]["code"] == -32000


def test_unregister_closes_browsers(ws_fetch, run, connect_link, read_json):
    link = run(connect_link())
    run(_register(link, read_json, "u1"))
    ws = run(ws_fetch("remotemedia", "ws", "u1"))
    run(read_json(link))  # open
    run(link.write_message(json.dumps({"kind": "unregister", "session": "u1"})))
    assert run(read_json(link)) == {"kind": "unregistered", "session": "u1"}
    assert run(read_json(ws))["error"]["code"] == -32000
    assert run(ws.read_message()) is None
    link.close()


def test_second_kernel_cannot_take_over_a_session(run, connect_link, read_json):
    a, b = run(connect_link()), run(connect_link())
    run(_register(a, read_json, "mine"))
    run(b.write_message(json.dumps({"kind": "register", "session": "mine"})))
    reply = run(read_json(b))
    assert reply["kind"] == "error" and reply["session"] == "mine"
    a.close()
    b.close()


# --- the real kernel-side KernelLink, with an echo endpoint ---------------------------------


class EchoEndpoint:
    """Answers every request with its own params; records its lifecycle."""

    instances: list[EchoEndpoint] = []

    def __init__(self, send, pipeline, peer_config, *, runner=None):
        self.send, self.pipeline, self.closed = send, pipeline, False
        self.server_peer = None
        self.binary_frames: list[bytes] = []
        EchoEndpoint.instances.append(self)

    def set_binary_sender(self, send_binary) -> None:
        self.send_binary = send_binary

    def handle_binary(self, frame: bytes) -> None:
        self.binary_frames.append(frame)

    async def handle_message(self, text: str) -> None:
        req = json.loads(text)
        await asyncio.sleep(0)  # replies may come later than the request
        result = {"echo": req["params"], "pipeline": self.pipeline}
        self.send(json.dumps({"jsonrpc": "2.0", "result": result, "id": req["id"]}))

    async def close(self) -> None:
        self.closed = True


def test_kernel_link_serves_browsers_and_reconnects(ws_fetch, jp_fetch, run, link_url, link_secret, read_json):
    EchoEndpoint.instances.clear()
    link = KernelLink(link_url, link_secret, endpoint_factory=EchoEndpoint)
    run(link.start())
    run(link.register(ServedSession("echo-sid", pipeline="P1")))

    ws = run(ws_fetch("remotemedia", "ws", "echo-sid"))
    for i in range(3):  # in order, one endpoint per browser connection
        run(ws.write_message(_rpc("peer.list", i, n=i)))
    replies = [run(read_json(ws)) for _ in range(3)]
    assert [r["id"] for r in replies] == [0, 1, 2]
    assert replies[2]["result"] == {"echo": {"n": 2}, "pipeline": "P1"}
    assert len(EchoEndpoint.instances) == 1

    # browser goes away -> its endpoint is closed
    ws.close()

    async def until(pred) -> None:
        while not pred():
            await asyncio.sleep(0.02)

    run(until(lambda: EchoEndpoint.instances[0].closed))

    # the link drops -> it reconnects and registers its session again
    ws = run(ws_fetch("remotemedia", "ws", "echo-sid"))
    run(until(lambda: len(EchoEndpoint.instances) == 2))
    link._ws.close()  # simulate a dropped link
    assert run(read_json(ws))["error"]["code"] == -32000  # the browser on the old link is told
    run(until(lambda: EchoEndpoint.instances[1].closed))
    run(until(lambda: link.reconnects == 1 and link.connected))

    async def session_back() -> None:
        while json.loads((await jp_fetch("remotemedia", "status")).body)["sessions"] != 1:
            await asyncio.sleep(0.02)

    run(session_back())
    ws = run(ws_fetch("remotemedia", "ws", "echo-sid"))
    run(ws.write_message(_rpc("peer.list", 7)))
    assert run(read_json(ws))["id"] == 7

    # unregister closes the browser and the endpoint
    run(link.unregister("echo-sid"))
    assert run(read_json(ws))["error"]["code"] == -32000
    run(until(lambda: all(e.closed for e in EchoEndpoint.instances)))
    run(link.close())


def test_kernel_link_with_wrong_secret_raises(run, link_url):
    link = KernelLink(link_url, "not-the-secret")
    with pytest.raises(TransportError, match="403"):
        run(link.start())


def test_missing_link_env_says_extension_not_loaded(monkeypatch):
    monkeypatch.delenv(LINK_URL_ENV, raising=False)
    with pytest.raises(TransportError, match="extension not loaded"):
        link_settings_from_env()


def test_binary_frames_relay_both_ways_and_count(ws_fetch, jp_fetch, run, connect_link, read_json):
    """Media frames go browser -> kernel and kernel -> browser unchanged, only to their own connection."""
    link = run(connect_link())
    run(_register(link, read_json, "media"))
    a, b = run(ws_fetch("remotemedia", "ws", "media")), run(ws_fetch("remotemedia", "ws", "media"))
    ca, cb = (run(read_json(link))["conn"] for _ in range(2))
    run(b.write_message(b"\x01frame-from-b", binary=True))
    assert run(asyncio.wait_for(link.read_message(), 5)) == bytes([len(cb)]) + cb.encode() + b"\x01frame-from-b"
    run(link.write_message(bytes([len(ca)]) + ca.encode() + b"\x02to-a", binary=True))
    run(link.write_message(bytes([3]) + b"c99" + b"nobody", binary=True))  # unknown connection: dropped
    assert run(asyncio.wait_for(a.read_message(), 5)) == b"\x02to-a"
    status = json.loads(run(jp_fetch("remotemedia", "status")).body)
    assert status["binary_relayed"] == 2 and status["binary_dropped"] == 0
    a.close()
    b.close()
    link.close()
