"""The kernel's WebSocket to the server extension, and one signaling endpoint per browser.

Lives on the RTC loop (``transport.loop_thread.rtc_loop()``). The extension exports the link URL
and secret to the environment of kernels it starts; nothing is typed by the user. Envelopes are
defined in :mod:`remotemedia_nbrtc.protocol.kernel_link`. The link reconnects when it drops and then
registers its sessions again; browser connections that were open over the old link are closed.

Binary frames (WebSocket media, :mod:`remotemedia_nbrtc.transport.wsmedia`) travel on the link
prefixed with their connection id (``u8 n, n ASCII bytes, frame``); they bypass the per-connection
signaling queue and go straight to the endpoint's ``handle_binary`` (which never blocks).

If the Jupyter server restarts, the link retries with backoff (0.1 s ... 5 s) for as long as the
kernel lives; a *new* server has a new link secret, so it refuses the old kernel (HTTP 403) and
only kernels that the new server starts can serve sessions. Normally the server shuts its kernels
down when it stops, so this only matters for kernels that outlive their server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.protocol.kernel_link import (
    LINK_CERT_ENV,
    LINK_MAX_MESSAGE_BYTES,
    LINK_SECRET_ENV,
    LINK_SECRET_HEADER,
    LINK_URL_ENV,
    envelope,
    pack_link_frame,
    unpack_link_frame,
)

if TYPE_CHECKING:  # types only: the transport is loaded when the first browser connects
    from remotemedia_nbrtc.runtime import PipelineRunner, PipelineSource
    from remotemedia_nbrtc.transport.config import PeerConfig
    from remotemedia_nbrtc.transport.endpoint import SendBinaryFn
    from remotemedia_nbrtc.transport.media_peer import MediaPeer

log = logging.getLogger(__name__)


#: Signaling messages waiting for one endpoint; a browser that floods it is disconnected.
CONN_QUEUE_SIZE = 256
_RECONNECT_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

SendFn = Callable[[str], "Awaitable[None] | None"]


class Endpoint(Protocol):
    """What the link and ``StreamHandle.metrics()`` need from a signaling endpoint
    (``transport.endpoint.SignalingEndpoint``)."""

    @property
    def server_peer(self) -> MediaPeer | None:
        """The kernel-side media peer of this browser, once it has offered (or opened WebSocket media)."""
        ...

    def set_binary_sender(self, send_binary: SendBinaryFn) -> None:
        """How to send a binary frame (WebSocket media) to this browser."""
        ...

    def handle_binary(self, frame: bytes) -> None:
        """One binary frame from this browser; never blocks."""
        ...

    async def handle_message(self, text: str) -> None: ...

    async def close(self) -> None: ...


class EndpointFactory(Protocol):
    """Makes the endpoint of one browser connection (the class ``SignalingEndpoint`` is one)."""

    def __call__(self, send: SendFn, pipeline: PipelineSource, peer_config: PeerConfig | None, *,
                 runner: PipelineRunner | None = None) -> Endpoint: ...


def _default_endpoint_factory(send: SendFn, pipeline: PipelineSource, peer_config: PeerConfig | None, *,
                              runner: PipelineRunner | None = None) -> Endpoint:
    from remotemedia_nbrtc.transport.endpoint import SignalingEndpoint

    endpoint: Endpoint = SignalingEndpoint(send, pipeline, peer_config, runner=runner)
    return endpoint


@dataclass
class ServedSession:
    """A session this kernel serves: what each browser connection's endpoint is built from."""

    session_id: str
    pipeline: PipelineSource
    peer_config: PeerConfig | None = None
    runner: PipelineRunner | None = None
    conns: set[str] = field(default_factory=set)


@dataclass
class _Conn:
    conn_id: str
    session_id: str
    endpoint: Endpoint
    queue: asyncio.Queue[str | None]
    task: asyncio.Task[None] | None = None


def link_settings_from_env() -> tuple[str, str]:
    """The link URL and secret exported by the server extension, or a clear :class:`TransportError`."""
    url = os.environ.get(LINK_URL_ENV)
    secret = os.environ.get(LINK_SECRET_ENV)
    if not url or not secret:
        raise TransportError(
            "remotemedia_nbrtc server extension not loaded: this kernel's environment has no kernel link, so "
            "the Jupyter server that started it does not run the extension (or the kernel was started elsewhere). "
            "Check `jupyter server extension list` shows remotemedia_nbrtc.server enabled, then restart "
            f"the server and the kernel. ({LINK_URL_ENV} / {LINK_SECRET_ENV} are unset)"
        )
    return url, secret


def link_ssl_context(url: str, certfile: str | None = None) -> ssl.SSLContext | None:
    """TLS settings for a ``wss://`` kernel link (an HTTPS Jupyter server); None for ``ws://``.

    The link dials 127.0.0.1 while the certificate names the server's public host (or is self-signed),
    so the host name is not checked; instead the server must present the very certificate exported in
    :data:`LINK_CERT_ENV` (pinned as the only trust anchor). Without one, the system's CAs are used.
    """
    if not url.startswith("wss://"):
        return None
    certfile = certfile if certfile is not None else os.environ.get(LINK_CERT_ENV)
    if not certfile:
        return ssl.create_default_context()
    context = ssl.create_default_context(cafile=certfile)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf as its own trust anchor
    return context


class KernelLink:
    """One WebSocket from this kernel to the extension; must be used on one event loop (the RTC loop)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        endpoint_factory: EndpointFactory | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._secret = secret
        self._factory = endpoint_factory or _default_endpoint_factory
        self._connect_timeout = connect_timeout
        self._ws: WebSocketClientConnection | None = None
        self._connected: asyncio.Event | None = None
        self._sessions: dict[str, ServedSession] = {}
        self._conns: dict[str, _Conn] = {}
        self._acks: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0

    # lifecycle ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Connect once (raising :class:`TransportError` on failure), then keep the link up."""
        if self._run_task is not None:
            return
        self._connected = asyncio.Event()
        self._ws = await self._connect()
        self._connected.set()
        self._run_task = asyncio.get_running_loop().create_task(self._run(), name="remotemedia-kernel-link")

    async def _connect(self) -> WebSocketClientConnection:
        request = HTTPRequest(
            self.url,
            headers={LINK_SECRET_HEADER: self._secret},
            ssl_options=link_ssl_context(self.url),
            connect_timeout=self._connect_timeout,
            request_timeout=self._connect_timeout,
        )
        try:
            ws = await websocket_connect(request, max_message_size=LINK_MAX_MESSAGE_BYTES)
            assert ws.protocol is not None  # set once the handshake is done
            ws.protocol.set_nodelay(True)  # relayed media frames must not wait for Nagle
            return ws
        except HTTPClientError as exc:
            if exc.code == 403:
                raise TransportError(
                    f"the server extension refused this kernel's link secret at {self.url} (HTTP 403): the "
                    "kernel was probably started by another Jupyter server; restart the kernel"
                ) from exc
            raise TransportError(f"cannot reach the server extension's kernel link at {self.url}: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"cannot reach the server extension's kernel link at {self.url}: {exc}") from exc

    async def _run(self) -> None:
        assert self._connected is not None
        attempt = 0
        while not self._closed:
            ws = self._ws
            if ws is None:
                try:
                    ws = await self._connect()
                except TransportError as exc:
                    delay = _RECONNECT_DELAYS_S[min(attempt, len(_RECONNECT_DELAYS_S) - 1)]
                    attempt += 1
                    log.debug("kernel link reconnect failed (%s); retrying in %.2f s", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                self.reconnects += 1
                self._ws = ws
                for sid in list(self._sessions):
                    self._send(envelope("register", session=sid))
                self._connected.set()
                log.info("kernel link reconnected to %s", self.url)
            text = await ws.read_message()
            if text is None:
                self._on_link_lost(ws)
                continue
            if isinstance(text, bytes):
                self._dispatch_binary(text)
                continue
            try:
                self._dispatch(text)
            except Exception:  # one bad envelope must not take the link down
                log.exception("kernel link: failed to handle %.200s", text)

    def _on_link_lost(self, ws: WebSocketClientConnection) -> None:
        assert self._connected is not None
        if self._ws is ws:
            self._ws = None
        self._connected.clear()
        if not self._closed:
            log.warning("kernel link to %s lost (code %s); reconnecting", self.url, ws.close_code)
        # The extension closed every browser connection that went over this link.
        for conn in list(self._conns.values()):
            self._finish_conn(conn)
        for key, fut in list(self._acks.items()):
            if not fut.done():
                fut.set_exception(TransportError("kernel link lost before the server answered"))
            self._acks.pop(key, None)

    async def close(self) -> None:
        """Close every endpoint and the link. Idempotent."""
        if self._closed:
            return
        self._closed = True
        conns = list(self._conns.values())
        for conn in conns:
            self._finish_conn(conn)
        tasks = [c.task for c in conns if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._ws is not None:
            self._ws.close()
        if self._run_task is not None:
            self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        self._ws = None
        self._sessions.clear()

    # sessions -----------------------------------------------------------------------------

    async def register(self, served: ServedSession, timeout: float = 10.0) -> None:
        """Register ``served`` with the extension and wait for its acknowledgement."""
        if self._closed:
            raise TransportError("the kernel link is closed")
        self._sessions[served.session_id] = served
        try:
            await self._request("register", served.session_id, timeout)
        except BaseException:
            self._sessions.pop(served.session_id, None)
            raise

    async def unregister(self, session_id: str, timeout: float = 5.0) -> None:
        """Stop serving ``session_id``: close its browser connections and tell the extension."""
        served = self._sessions.pop(session_id, None)
        if served is None:
            return
        conns = [self._conns[c] for c in served.conns if c in self._conns]
        for conn in conns:
            self._finish_conn(conn)
        tasks = [c.task for c in conns if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        if self.connected:
            try:
                await self._request("unregister", session_id, timeout)
            except (TimeoutError, TransportError) as exc:
                log.debug("unregister %s: %s", session_id, exc)

    async def _request(self, kind: str, session_id: str, timeout: float) -> None:
        assert self._connected is not None
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:  # on Python 3.10 not the builtin TimeoutError
            raise TransportError(f"kernel link to {self.url} is down; cannot {kind} the session") from None
        key = (kind + "ed", session_id)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[key] = fut
        try:
            self._send(envelope(kind, session=session_id))
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TransportError(f"the server extension did not acknowledge {kind} of {session_id!r}") from None
        finally:
            self._acks.pop(key, None)

    def connections(self, session_id: str) -> list[Endpoint]:
        """The endpoints currently serving browsers of ``session_id`` (call on the link's loop)."""
        served = self._sessions.get(session_id)
        if served is None:
            return []
        return [self._conns[c].endpoint for c in sorted(served.conns) if c in self._conns]

    # envelopes ----------------------------------------------------------------------------

    def _send(self, text: str) -> None:
        ws = self._ws
        if ws is None:
            log.debug("kernel link down; dropped %.80s", text)
            return
        try:
            ws.write_message(text)
        except WebSocketClosedError:
            log.debug("kernel link closed; dropped %.80s", text)

    def _send_binary(self, data: bytes) -> Awaitable[None] | None:
        ws = self._ws
        if ws is None:
            return None
        try:
            written: Awaitable[None] = ws.write_message(data, binary=True)
        except WebSocketClosedError:
            return None
        return written

    def _dispatch_binary(self, data: bytes) -> None:
        try:
            conn_id, frame = unpack_link_frame(data)
        except ValueError:  # UnicodeDecodeError included
            log.debug("kernel link: binary frame without a valid connection prefix")
            return
        conn = self._conns.get(conn_id)
        if conn is None:
            return
        try:
            conn.endpoint.handle_binary(frame)
        except Exception:
            log.exception("endpoint %s failed on a binary frame", conn_id)

    def _dispatch(self, text: str) -> None:
        msg = json.loads(text)
        kind = msg.get("kind")
        sid = msg.get("session")
        conn_id = msg.get("conn")
        if kind in ("registered", "unregistered"):
            fut = self._acks.get((kind, sid))
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "error":
            fut = self._acks.get(("registered", sid)) if sid else None
            if fut is not None and not fut.done():
                fut.set_exception(TransportError(f"server extension: {msg.get('data')}"))
            else:
                log.warning("kernel link: server extension reported: %s", msg.get("data"))
        elif kind == "open":
            self._open(conn_id, sid)
        elif kind == "message":
            conn = self._conns.get(conn_id)
            if conn is not None:
                try:
                    conn.queue.put_nowait(msg.get("data"))
                except asyncio.QueueFull:
                    self._send(envelope("close", conn=conn_id, data="too many pending signaling messages"))
                    self._finish_conn(conn)
        elif kind == "close":
            conn = self._conns.get(conn_id)
            if conn is not None:
                self._finish_conn(conn)
        else:
            log.warning("kernel link: unknown envelope kind %r", kind)

    def _open(self, conn_id: str, session_id: str) -> None:
        served = self._sessions.get(session_id)
        if served is None:
            self._send(envelope("close", conn=conn_id, data="this kernel no longer serves the session"))
            return

        def send(text: str) -> None:
            # only while this browser connection is still open: late replies must not leak
            if conn_id in self._conns:
                self._send(envelope("message", conn=conn_id, data=text))

        try:
            endpoint = self._factory(send, served.pipeline, served.peer_config, runner=served.runner)
        except Exception as exc:
            log.exception("kernel link: cannot create a signaling endpoint")
            self._send(envelope("close", conn=conn_id, data=f"kernel could not open the session: {exc}"))
            return

        def send_binary(frame: bytes) -> Awaitable[None] | None:
            if conn_id in self._conns:
                return self._send_binary(pack_link_frame(conn_id, frame))
            return None

        endpoint.set_binary_sender(send_binary)
        conn = _Conn(conn_id, session_id, endpoint, asyncio.Queue(CONN_QUEUE_SIZE))
        self._conns[conn_id] = conn
        served.conns.add(conn_id)
        conn.task = asyncio.get_running_loop().create_task(self._serve_conn(conn), name=f"remotemedia-conn-{conn_id}")

    def _finish_conn(self, conn: _Conn) -> None:
        try:
            conn.queue.put_nowait(None)
        except asyncio.QueueFull:
            if conn.task is not None:
                conn.task.cancel()

    async def _serve_conn(self, conn: _Conn) -> None:
        # one task per browser: its messages are handled in order, other browsers are not held up
        try:
            while True:
                text = await conn.queue.get()
                if text is None:
                    break
                try:
                    await conn.endpoint.handle_message(text)
                except Exception:
                    log.exception("signaling endpoint %s failed on a message", conn.conn_id)
        finally:
            self._conns.pop(conn.conn_id, None)
            served = self._sessions.get(conn.session_id)
            if served is not None:
                served.conns.discard(conn.conn_id)
            try:
                await conn.endpoint.close()
            except Exception:
                log.exception("closing signaling endpoint %s failed", conn.conn_id)


_link: KernelLink | None = None
_link_lock = threading.Lock()


def get_link(timeout: float = 10.0) -> KernelLink:
    """The process-wide link, connected on the RTC loop on first use (call from any other thread)."""
    global _link
    from remotemedia_nbrtc.transport.loop_thread import rtc_loop

    url, secret = link_settings_from_env()
    with _link_lock:
        if _link is not None and not _link.closed and _link.url == url:
            return _link
        old, _link = _link, None
        loop = rtc_loop()
        if old is not None:
            loop.run(old.close(), timeout)
        link = KernelLink(url, secret)
        loop.run(link.start(), timeout)
        _link = link
        return link


def close_link(timeout: float = 10.0) -> None:
    """Close the process-wide link, if any (its sessions stop being served)."""
    global _link
    from remotemedia_nbrtc.transport.loop_thread import rtc_loop

    with _link_lock:
        link, _link = _link, None
    if link is not None:
        rtc_loop().run(link.close(), timeout)
