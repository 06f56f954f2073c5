"""RpcClient against a real tornado WebSocket server on 127.0.0.1 that answers as the test tells it to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from remotemedia_nbrtc.errors import ConnectTimeout, SignalingError, TransportError
from remotemedia_nbrtc.protocol.jsonrpc import ErrorCode
from remotemedia_nbrtc.standalone.rpc_client import RpcClient

pytestmark = pytest.mark.timeout(30)


class _ScriptedHandler(tornado.websocket.WebSocketHandler):
    """Answers by method: ``echo`` (after ``params["delay"]`` s), ``fail``, ``silent``, ``notify``, ``bye``."""

    seen_headers: list[dict[str, str]]

    def initialize(self, seen_headers: list[dict[str, str]]) -> None:
        self.seen_headers = seen_headers
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.seen_headers.append(dict(self.request.headers))

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.write_message(message, binary=True)  # binary frames come back as they are
            return
        request = json.loads(message)
        method, params, request_id = request["method"], request["params"], request["id"]
        if method == "echo":  # answered from a task: tornado reads the next message only once this one returned
            task = asyncio.ensure_future(self._echo_later(params, request_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif method == "fail":
            error = {"code": int(ErrorCode.INVALID_PARAMS), "message": "bad params", "data": {"field": "x"}}
            self._send({"error": error, "id": request_id})
        elif method == "notify":
            self._send({"method": "peer.state_change", "params": {"connection_state": "connected"}})
            self._send({"result": "notified", "id": request_id})
        elif method == "bye":
            self._send({"error": {"code": int(ErrorCode.PEER_NOT_FOUND), "message": "kernel went away"}, "id": None})
            self.close(4000)
        # "silent": no answer

    async def _echo_later(self, params: dict[str, Any], request_id: str) -> None:
        await asyncio.sleep(params.get("delay", 0))
        self._send({"result": params, "id": request_id})

    def _send(self, obj: dict[str, Any]) -> None:
        self.write_message(json.dumps({"jsonrpc": "2.0", **obj}))


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """The URL of a scripted JSON-RPC server on a free port, and the upgrade headers it saw."""
    seen: list[dict[str, str]] = []
    app = tornado.web.Application([(r"/ws", _ScriptedHandler, {"seen_headers": seen})])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http = tornado.httpserver.HTTPServer(app)
    http.add_sockets(sockets)
    yield f"ws://127.0.0.1:{sockets[0].getsockname()[1]}/ws", seen
    http.stop()
    await http.close_all_connections()


async def test_responses_are_matched_to_requests_by_id(server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = server
    client = await RpcClient.connect(url, token="s3cret", timeout_s=5)
    try:
        slow = client.request("echo", {"n": 1, "delay": 0.3})  # answered second
        fast = client.call("echo", {"n": 2}, timeout_s=5)
        assert (await fast)["n"] == 2 and not slow.done()
        assert (await asyncio.wait_for(slow, 5))["n"] == 1
    finally:
        await client.close()
    assert seen[0]["Authorization"] == "Bearer s3cret"


async def test_an_error_response_is_a_signaling_error_with_the_servers_code(
    server: tuple[str, list[dict[str, str]]],
) -> None:
    client = await RpcClient.connect(server[0], timeout_s=5)
    try:
        with pytest.raises(SignalingError) as err:
            await client.call("fail", timeout_s=5)
        assert err.value.code == ErrorCode.INVALID_PARAMS and err.value.message == "bad params"
        assert err.value.data == {"field": "x"}
        assert (await client.call("echo", {"still": "up"}, timeout_s=5)) == {"still": "up"}
    finally:
        await client.close()


async def test_no_reply_times_out_with_the_method_named(server: tuple[str, list[dict[str, str]]]) -> None:
    client = await RpcClient.connect(server[0], timeout_s=5)
    try:
        with pytest.raises(TimeoutError, match=r"silent: no reply within 0.2 s"):
            await client.call("silent", timeout_s=0.2)
    finally:
        await client.close()


async def test_notifications_and_binary_frames_go_to_their_callbacks(
    server: tuple[str, list[dict[str, str]]],
) -> None:
    notifications: list[dict[str, Any]] = []
    frames: list[bytes] = []
    client = await RpcClient.connect(server[0], timeout_s=5, on_notification=notifications.append,
                                     on_binary=frames.append)
    try:
        assert await client.call("notify", timeout_s=5) == "notified"
        assert notifications == [
            {"jsonrpc": "2.0", "method": "peer.state_change", "params": {"connection_state": "connected"}}
        ]
        await client.send_binary(b"\x01\x02")
        for _ in range(100):
            if frames:
                break
            await asyncio.sleep(0.02)
        assert frames == [b"\x01\x02"]
    finally:
        await client.close()


async def test_a_server_close_fails_pending_requests_and_says_why(server: tuple[str, list[dict[str, str]]]) -> None:
    closed: list[bool] = []
    client = await RpcClient.connect(server[0], timeout_s=5, socket_name="socket", explain_close=True,
                                     on_close=lambda: closed.append(True))
    pending = client.request("silent")
    with pytest.raises(TransportError, match=r"socket closed \(4000: kernel went away\)"):
        await client.call("bye", timeout_s=5)
    with pytest.raises(TransportError, match=r"socket closed \(4000: kernel went away\)"):
        await pending
    assert client.closed and closed == [True] and client.close_code == 4000
    assert client.server_errors == [{"code": ErrorCode.PEER_NOT_FOUND, "message": "kernel went away"}]
    with pytest.raises(TransportError, match=r"socket is closed \(4000: None\)"):
        client.request("echo")
    await client.close()


async def test_connect_errors_name_the_connection() -> None:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    for sock in sockets:
        sock.close()  # nothing listens there now
    with pytest.raises(TransportError, match=rf"cannot reach ws://127.0.0.1:{port}/ws"):
        await RpcClient.connect(f"ws://127.0.0.1:{port}/ws", timeout_s=5)
    silent = tornado.netutil.bind_sockets(0, "127.0.0.1")  # accepts TCP, never answers the upgrade
    silent[0].listen(1)
    url = f"ws://127.0.0.1:{silent[0].getsockname()[1]}/ws"
    try:
        with pytest.raises(ConnectTimeout, match=rf"WebSocket connection to {url} timed out"):
            await RpcClient.connect(url, timeout_s=0.3, what="WebSocket connection")
    finally:
        silent[0].close()
