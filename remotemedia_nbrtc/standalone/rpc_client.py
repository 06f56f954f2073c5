"""RpcClient: JSON-RPC 2.0 over a WebSocket, the client side of RemoteMedia's signaling.

The one request/response/notification client that :class:`~.webrtc_client.ClientPeer` and
:class:`~.websocket_client.WebSocketMediaClient` both speak through: it opens the socket (the token as
``Authorization: Bearer``), numbers requests and matches each response to its request by id, turns an
error response into :class:`SignalingError` with the server's :class:`ErrorCode`, hands notifications,
server-pushed errors and binary frames to callbacks, and fails every pending request once the socket closes.
It runs on the loop that created it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlparse

import tornado.httpclient
import tornado.websocket

from remotemedia_nbrtc.errors import ConnectTimeout, SignalingError, TransportError, wait_for_with_message
from remotemedia_nbrtc.protocol.jsonrpc import ErrorCode, request_message
from remotemedia_nbrtc.transport import signaling as rpc

__all__ = ["RpcClient", "signaling_request"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 << 20

Notification = Callable[[dict[str, Any]], None]


def signaling_request(url: str, token: str | None) -> tornado.httpclient.HTTPRequest:
    """The WebSocket upgrade request for ``url``; ``token`` (or the URL's ``?token=``) travels as
    ``Authorization: Bearer``. The standalone server and Jupyter accept it there, and JupyterHub's single-user
    servers accept a token only there on a WebSocket that is not a browser's."""
    token = token or dict(parse_qsl(urlparse(url).query)).get("token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return tornado.httpclient.HTTPRequest(url, headers=headers)


class RpcClient:
    """A JSON-RPC client on one WebSocket. Create with :meth:`connect`.

    Callbacks (all optional, called on the client's loop): ``on_notification(message)`` for each request
    the server sends (a dict with ``method`` and ``params``); ``on_server_error(error)`` for an error the
    server pushes with no id (why it is closing, say); ``on_binary(frame)`` for binary frames (without it
    they are parsed as text); ``on_close()`` once, after the socket closed and pending requests failed.
    ``socket_name`` names the socket in :class:`TransportError` messages; ``explain_close`` adds the close
    code and reason (or the last server-pushed error) to them. Server-pushed errors are kept in
    :attr:`server_errors`, the close code and reason in :attr:`close_code` / :attr:`close_reason`.
    """

    def __init__(
        self,
        ws: tornado.websocket.WebSocketClientConnection,
        *,
        on_notification: Notification | None = None,
        on_server_error: Notification | None = None,
        on_binary: Callable[[bytes], None] | None = None,
        on_close: Callable[[], None] | None = None,
        socket_name: str = "signaling socket",
        explain_close: bool = False,
    ) -> None:
        self.socket = ws
        self.server_errors: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._on_notification = on_notification
        self._on_server_error = on_server_error
        self._on_binary = on_binary
        self._on_close = on_close
        self._socket_name = socket_name
        self._explain_close = explain_close
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._closed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float,
        what: str = "signaling connection",
        nodelay: bool = False,
        **options: Any,
    ) -> RpcClient:
        """Open the socket to ``url``; ``options`` go to the constructor. ``what`` names the connection in
        the errors: :class:`ConnectTimeout` after ``timeout_s``, :class:`TransportError` when refused or
        unreachable. ``nodelay`` turns Nagle's algorithm off (small media frames go out at once)."""
        try:
            ws = await asyncio.wait_for(
                tornado.websocket.websocket_connect(signaling_request(url, token), max_message_size=MAX_MESSAGE_BYTES),
                timeout_s,
            )
            if nodelay and ws.protocol is not None:
                ws.protocol.set_nodelay(True)
        except TimeoutError:
            raise ConnectTimeout(f"{what} to {url} timed out") from None
        except tornado.httpclient.HTTPClientError as exc:
            raise TransportError(f"{what} to {url} refused: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"cannot reach {url}: {exc}") from exc
        return cls(ws, **options)

    @property
    def closed(self) -> bool:
        """True once the socket has closed (the read loop saw its end)."""
        return self._closed.is_set()

    def request(self, method: str, params: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        """Send a request now without waiting for the write; the future gets its result or error.

        For pipelining (several requests on the wire before the first reply); the caller bounds the wait.
        """
        _request_id, future, _written = self._send(method, params or {})
        return future

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = 10.0) -> Any:
        """Send a request and wait for its result; raises :class:`SignalingError` for an error response,
        :class:`TimeoutError` after ``timeout_s``, :class:`TransportError` when the socket is or gets closed."""
        request_id, future, written = self._send(method, params or {})
        try:
            try:
                await written
            except tornado.websocket.WebSocketClosedError:
                raise TransportError("socket is closed") from None
            return await wait_for_with_message(future, timeout_s, f"{method}: no reply within {timeout_s} s")
        finally:
            self._pending.pop(request_id, None)

    async def send_binary(self, frame: bytes) -> None:
        """Send one binary frame; raises :class:`TransportError` when the socket is closed."""
        try:
            await self.socket.write_message(frame, binary=True)
        except tornado.websocket.WebSocketClosedError:
            raise TransportError("socket is closed") from None

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Until the socket has closed."""
        await wait_for_with_message(self._closed.wait(), timeout)

    def abort(self) -> None:
        """Drop the TCP connection with no close frame (what a crashed tab does)."""
        protocol = self.socket.protocol
        if protocol is not None and protocol.stream is not None:
            protocol.stream.close()
        else:
            self.socket.close()

    async def close(self) -> None:
        """Close the socket and wait (2 s at most) for the read loop to finish. Idempotent."""
        self.socket.close()
        if self._reader is asyncio.current_task():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
        except Exception:  # noqa: BLE001 - timed out or failed: stop reading either way
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    # -- internals ----------------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any]) -> tuple[str, asyncio.Future[Any], asyncio.Future[None]]:
        if self.closed:
            raise TransportError(f"{self._socket_name} is closed{self._close_detail(self.close_reason)}")
        request_id = f"req-{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            written = self.socket.write_message(request_message(method, params, request_id))
        except tornado.websocket.WebSocketClosedError:
            self._pending.pop(request_id, None)
            raise TransportError("socket is closed") from None
        return request_id, future, written

    def _close_detail(self, reason: str | None) -> str:
        return f" ({self.close_code}: {reason})" if self._explain_close else ""

    async def _read(self) -> None:
        ws = self.socket
        try:
            while True:
                message = await ws.read_message()
                if message is None:
                    break
                try:
                    if isinstance(message, bytes) and self._on_binary is not None:
                        self._on_binary(message)
                    else:
                        self._on_text(message if isinstance(message, str) else message.decode())
                except Exception:
                    log.exception("bad message from the server: %.200r", message)
        finally:
            self.close_code, self.close_reason = ws.close_code, ws.close_reason
            self._closed.set()
            last_error = str(self.server_errors[-1].get("message")) if self.server_errors else "no reason given"
            message = f"{self._socket_name} closed{self._close_detail(self.close_reason or last_error)}"
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(TransportError(message))
            self._pending.clear()
            if self._on_close is not None:
                self._on_close()

    def _on_text(self, text: str) -> None:
        try:
            obj = rpc.parse_response(text)
        except (ValueError, SignalingError):
            log.warning("bad message from the server: %.200r", text)
            return
        if "method" in obj:
            if self._on_notification is not None:
                self._on_notification(obj)
            return
        if obj.get("id") is None and "error" in obj:  # pushed by the server: why it is closing etc.
            self.server_errors.append(obj["error"])
            if self._on_server_error is not None:
                self._on_server_error(obj["error"])
            return
        request_id = obj.get("id")
        future = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if future is None or future.done():
            return
        if "error" in obj:
            err = obj["error"] or {}
            future.set_exception(
                SignalingError(err.get("code", ErrorCode.INTERNAL_ERROR), err.get("message", ""), err.get("data"))
            )
        else:
            future.set_result(obj.get("result"))
