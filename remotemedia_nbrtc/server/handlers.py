"""Tornado handlers of the server extension: browser signaling WS, kernel link WS, status."""

from __future__ import annotations

import hmac
import json
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated, authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from remotemedia_nbrtc.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_BYTES, ErrorCode, error_message
from remotemedia_nbrtc.protocol.kernel_link import LINK_MAX_MESSAGE_BYTES, LINK_SECRET_HEADER

from .relay import Relay, SessionUnavailable

AUTH_RESOURCE = "remotemedia"

# WebSocket close codes (4000-4999 are application-defined).
CLOSE_NORMAL = 1000
CLOSE_UNKNOWN_SESSION = 4404
#: Binary (media) frames written to one socket but not yet flushed; beyond this new ones are dropped
#: (counted in the relay's ``binary_dropped``): a slow browser or kernel must not grow server memory.
MAX_PENDING_BINARY = 64


class _SocketBase(WebSocketMixin, WebSocketHandler, JupyterHandler):
    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """JupyterHandler's default headers make no sense on a WebSocket upgrade."""

    @property
    def relay(self) -> Relay:
        relay: Relay = self.settings["remotemedia_relay"]
        return relay

    def _send(self, text: str) -> None:
        try:
            self.write_message(text)
        except WebSocketClosedError:
            self.log.debug("remotemedia: write to closed socket %s dropped", self.request.path)
            self._on_gone()

    _pending_binary = 0
    max_pending_binary = MAX_PENDING_BINARY

    def _send_binary(self, frame: bytes) -> None:
        if self._pending_binary >= self.max_pending_binary:
            self.relay.binary_dropped += 1
            return
        try:
            written = self.write_message(frame, binary=True)
        except WebSocketClosedError:
            self._on_gone()
            return
        self._pending_binary += 1
        written.add_done_callback(self._binary_written)

    def _binary_written(self, future: Any) -> None:
        self._pending_binary -= 1
        if not future.cancelled():
            future.exception()  # a closed socket's write error is expected; on_close cleans up

    def _close(self, reason: str) -> None:
        self.close(CLOSE_NORMAL, reason[:120])

    def _on_gone(self) -> None:
        """Unregister from the relay; called at most once per socket."""

    def on_close(self) -> None:
        if self.ping_callback is not None:
            self.ping_callback.stop()
        self._on_gone()


class BrowserSocketHandler(_SocketBase):
    """``remotemedia/ws/<session_id>``: JSON-RPC signaling relayed to the kernel that owns the session."""

    #: the signaling limit, as the kernel's endpoint applies it
    max_message_size = DEFAULT_MAX_MESSAGE_BYTES
    conn_id: str | None = None

    # jupyter_server types authorized("execute") as its unsolved TypeVar (Never), hence the ignore
    @ws_authenticated
    @authorized("execute")
    async def get(self, session_id: str) -> None:  # type: ignore[override]
        self.session_id = session_id
        res = super().get(session_id)
        if res is not None:
            await res

    def open(self, session_id: str) -> None:
        super().open()
        self.set_nodelay(True)  # small media frames must not wait for Nagle (about 20 ms each)
        try:
            self.conn_id = self.relay.open_browser(session_id, self._send, self._close, self._send_binary)
        except SessionUnavailable as exc:
            reason = f"{exc}; run serve() in the kernel first"
            self.write_message(error_message(None, ErrorCode.SESSION_UNAVAILABLE, reason))
            self.close(CLOSE_UNKNOWN_SESSION, "unknown session")

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):  # WebSocket media: relayed to the kernel as is
            if self.conn_id is not None:
                self.relay.browser_binary(self.conn_id, message)
            return
        try:
            json.loads(message)
        except ValueError:
            self.write_message(error_message(None, ErrorCode.PARSE_ERROR, "Parse error", {"reason": "not valid JSON"}))
            return
        if self.conn_id is not None:
            self.relay.browser_message(self.conn_id, message)

    def _on_gone(self) -> None:
        conn_id, self.conn_id = self.conn_id, None
        if conn_id is not None:
            self.relay.browser_closed(conn_id)


class KernelLinkHandler(_SocketBase):
    """``remotemedia/kernel-link``: one WS per kernel, authenticated by the per-server link secret."""

    max_message_size = LINK_MAX_MESSAGE_BYTES
    max_pending_binary = 4 * MAX_PENDING_BINARY  # shared by every browser of this kernel
    link_id: int | None = None

    def _secret_ok(self) -> bool:
        expected: str = self.settings["remotemedia_link_secret"]
        given = self.request.headers.get(LINK_SECRET_HEADER) or self.get_query_argument("secret", "")
        return hmac.compare_digest(given.encode(), expected.encode())

    # Kernels do not hold the server token: the link secret (from the environment the kernel
    # inherited) is the credential here, checked before the upgrade.
    @allow_unauthenticated
    async def get(self) -> None:
        if not self._secret_ok():
            self.log.warning("remotemedia: kernel link refused: missing or wrong secret")
            raise web.HTTPError(403)
        res = super().get()
        if res is not None:
            await res

    def open(self) -> None:
        super().open()
        self.set_nodelay(True)
        self.link_id = self.relay.add_kernel(self._send, self._send_binary)
        self.log.info("remotemedia: kernel link %s connected", self.link_id)

    def on_message(self, message: str | bytes) -> None:
        if self.link_id is None:
            return
        if isinstance(message, bytes):
            self.relay.kernel_binary(self.link_id, message)
            return
        self.relay.kernel_message(self.link_id, message)

    def _on_gone(self) -> None:
        link_id, self.link_id = self.link_id, None
        if link_id is not None:
            self.log.info("remotemedia: kernel link %s disconnected", link_id)
            self.relay.remove_kernel(link_id)


class StatusHandler(APIHandler):
    """``GET remotemedia/status``: what the widget's doctor needs to know about the extension."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized("read")
    def get(self) -> None:
        relay: Relay = self.settings["remotemedia_relay"]
        status: dict[str, Any] = {
            "extension": "remotemedia_nbrtc.server",
            "version": self.settings["remotemedia_version"],
            "kernels": relay.kernel_count,
            "sessions": relay.session_count,
            "connections": relay.connection_count,
            "binary_relayed": relay.binary_relayed,
            "binary_dropped": relay.binary_dropped,
        }
        self.finish(json.dumps(status))
