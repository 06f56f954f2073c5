"""WebRTCServer: a standalone signaling + media server, no Jupyter needed.

A tornado application on the RTC loop serves:

- ``GET /ws`` and ``GET /`` with ``Upgrade: websocket``: JSON-RPC signaling, one
  :class:`~remotemedia_nbrtc.transport.endpoint.SignalingEndpoint` per connection;
- ``GET /``: a minimal browser test page (mic -> pipeline, data channel results shown);
- ``GET /js/NAME.js``: the widget's ES modules (``widget/js/``, read-only), which the test page imports
  (its JSON-RPC socket and the protocol constants), so the page has no client of its own;
- ``GET /health``: ``{"status": "ok", "peers", "sessions", "connections"}``.

``auth_token`` (optional) must then be sent with the WebSocket upgrade as ``Authorization: Bearer
TOKEN`` (what :class:`~remotemedia_nbrtc.standalone.webrtc_client.ClientPeer` does) or, for browsers, which
cannot set headers on a WebSocket, as ``?token=`` on the URL. The token does not replace the Origin
check: a browser page from another origin is refused even with the right token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from remotemedia_nbrtc.protocol.jsonrpc import DEFAULT_MAX_MESSAGE_BYTES
from remotemedia_nbrtc.runtime import PipelineRunner, PipelineSource, load_manifest
from remotemedia_nbrtc.transport.config import PeerConfig
from remotemedia_nbrtc.transport.endpoint import PeerRegistry, SignalingEndpoint
from remotemedia_nbrtc.transport.loop_thread import rtc_loop

__all__ = ["ServerConfig", "WebRTCServer"]

log = logging.getLogger(__name__)

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class ServerConfig:
    """Where to listen and what to allow. ``port=0`` picks a free port (see :attr:`WebRTCServer.port`)."""

    host: str = "127.0.0.1"
    port: int = 8080
    peer: PeerConfig = field(default_factory=PeerConfig)
    max_sessions: int = 10
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    auth_token: str | None = None
    #: a connection with no live session for this long (announced, never offered) is closed
    offer_timeout_s: float | None = 30.0
    #: peers announced but without a session, per client address (``max_sessions`` counts sessions only)
    max_idle_per_address: int = 8


#: the widget's ES modules, served as files (read, not imported: standalone/ imports nothing of widget/)
WIDGET_JS_DIR = Path(__file__).resolve().parent.parent / "widget" / "js"


def page_html() -> str:
    """The bundled browser test page."""
    return (Path(__file__).with_name("static") / "test_page.html").read_text("utf-8")


def _bearer_token(header: str) -> str:
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "token") else ""


class _SignalingHandler(tornado.websocket.WebSocketHandler):
    """One signaling connection; plain GETs of ``/`` get the test page."""

    def initialize(self, server: WebRTCServer) -> None:
        self.server = server
        self.endpoint: SignalingEndpoint | None = None

    def check_origin(self, origin: str) -> bool:
        # only browsers send Origin; a token must not let any web page drive the server from the user's browser
        host = urlparse(origin).hostname or ""
        request_host = (self.request.host or "").rsplit(":", 1)[0].strip("[]")
        return host in _LOCAL_HOSTS or host == request_host

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            if self.request.path in ("/", "/index.html"):
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.finish(page_html())
            else:
                self.set_status(400)
                self.finish("Expected a WebSocket upgrade")
            return
        token = self.server.config.auth_token
        if token:
            header = _bearer_token(self.request.headers.get("Authorization", ""))
            given = header or self.get_query_argument("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                self.set_status(401)
                self.finish("Missing or wrong token")
                return
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)  # small media frames must not wait for Nagle
        self.endpoint = self.server._new_endpoint(self)
        self.endpoint.set_binary_sender(self.send_binary)

    async def on_message(self, message: str | bytes) -> None:
        # tornado awaits this before reading the next frame: one connection's messages stay in order
        if self.endpoint is None:
            return
        if isinstance(message, bytes):  # WebSocket media (see .wsmedia); never blocks
            self.endpoint.handle_binary(message)
            return
        await self.endpoint.handle_message(message)

    def on_close(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            self.server._spawn(self.server._drop_endpoint(endpoint))

    def send_text(self, text: str) -> Any:
        return self.write_message(text)

    def send_binary(self, frame: bytes) -> Any:
        return self.write_message(frame, binary=True)


class _WidgetModuleHandler(tornado.web.StaticFileHandler):
    """The widget's ES modules, as the test page imports them; the route admits only ``NAME.js``."""

    def get_content_type(self) -> str:
        # not mimetypes: its answer for .js depends on the platform (text/plain from some Windows registries),
        # and a browser refuses a module script without a JavaScript type
        return "text/javascript; charset=utf-8"


class _HealthHandler(tornado.web.RequestHandler):
    def initialize(self, server: WebRTCServer) -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.server.health()))


class WebRTCServer:
    """Standalone JSON-RPC/WebRTC server running ``pipeline`` once per connected peer.

    ``pipeline`` is a :class:`~remotemedia_nbrtc.runtime.Pipeline`, a manifest dict, or a JSON/YAML
    path or text; ``runner`` (optional) is the :class:`PipelineRunner` creating the sessions.
    A :class:`PipelineRunner` given in place of the pipeline is an error (it has no pipeline).

    Use ``await server.start()`` / ``await server.stop()`` (from any loop), or ``await server.serve()``.
    """

    def __init__(self, config: ServerConfig | None, pipeline: PipelineSource, *,
                 runner: PipelineRunner | None = None) -> None:
        if isinstance(pipeline, PipelineRunner):
            raise TypeError(
                "WebRTCServer needs a pipeline (Pipeline, manifest dict or path); pass the runner as runner="
            )
        self.config = config or ServerConfig()
        self.pipeline = load_manifest(pipeline)
        self.runner = runner
        self.registry = PeerRegistry(
            max_sessions=self.config.max_sessions, max_idle_per_address=self.config.max_idle_per_address
        )
        self.port: int | None = None
        self._endpoints: dict[SignalingEndpoint, _SignalingHandler] = {}
        self._http: tornado.httpserver.HTTPServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False

    @property
    def url(self) -> str:
        """``ws://host:port/ws`` once started."""
        return f"ws://{self.config.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.config.host}:{self.port}/"

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self._running else "stopping",
            "peers": len(self.registry),
            "sessions": self.registry.session_count,
            "connections": len(self._endpoints),
        }

    def peer_stats(self) -> list[dict[str, Any]]:
        """``stats()`` of every live server peer (WebRTC :class:`ServerPeer` or WebSocket media), one per
        connection that has one. Callable from any thread: on the RTC loop it reads directly, elsewhere
        it runs there (waits up to 5 s)."""
        loop = rtc_loop()
        if loop.in_loop_thread():
            return self._collect_peer_stats()

        async def collect() -> list[dict[str, Any]]:
            return self._collect_peer_stats()

        return loop.run(collect(), 5.0)

    def _collect_peer_stats(self) -> list[dict[str, Any]]:
        return [e.server_peer.stats() for e in list(self._endpoints) if e.server_peer is not None]

    # -- lifecycle (callable from any loop; the work runs on the RTC loop) -------------------------
    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        if self._running:
            assert self.port is not None
            return self.port
        return await asyncio.wrap_future(rtc_loop().submit(self._start()))

    async def stop(self) -> None:
        """Close every connection (and its peer and session), then stop listening. Idempotent."""
        if not self._running:
            return
        await asyncio.wrap_future(rtc_loop().submit(self._stop()))

    async def serve(self) -> None:
        """Start, then run until :meth:`stop` is called or this task is cancelled."""
        await self.start()
        try:
            while self._running:
                await asyncio.sleep(0.2)
        finally:
            await self.stop()

    async def _start(self) -> int:
        app = tornado.web.Application(
            [
                (r"/health", _HealthHandler, {"server": self}),
                (r"/js/([\w-]+\.js)", _WidgetModuleHandler, {"path": str(WIDGET_JS_DIR)}),
                (r"/ws", _SignalingHandler, {"server": self}),
                (r"/", _SignalingHandler, {"server": self}),
            ],
            # tornado closes a connection whose frame exceeds this; smaller oversize messages get a
            # JSON-RPC error from the endpoint instead
            websocket_max_message_size=max(4 * self.config.max_message_bytes, 1 << 20),
            websocket_ping_interval=20,
        )
        sockets = tornado.netutil.bind_sockets(self.config.port, self.config.host)
        self._http = tornado.httpserver.HTTPServer(app)
        self._http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._running = True
        log.info("WebRTC server listening on %s", self.url)
        return self.port

    async def _stop(self) -> None:
        self._running = False
        if self._http is not None:
            self._http.stop()
        for endpoint in list(self._endpoints):
            await self._drop_endpoint(endpoint)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._http is not None:
            await self._http.close_all_connections()
            self._http = None

    # -- connections (RTC loop) ------------------------------------------------------------------
    def _new_endpoint(self, handler: _SignalingHandler) -> SignalingEndpoint:
        endpoint = SignalingEndpoint(
            handler.send_text,
            self.pipeline,
            self.config.peer,
            runner=self.runner,
            registry=self.registry,
            max_message_bytes=self.config.max_message_bytes,
            server_info={
                "addresses": [{"ip": self.config.host, "is_default": True}],
                "hostname": socket.gethostname(),
                "port": self.port,
            },
            on_close=handler.close,
            offer_timeout_s=self.config.offer_timeout_s,
            client_address=handler.request.remote_ip,
        )
        self._endpoints[endpoint] = handler
        return endpoint

    async def _drop_endpoint(self, endpoint: SignalingEndpoint) -> None:
        self._endpoints.pop(endpoint, None)
        await endpoint.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
