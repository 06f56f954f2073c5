"""Routing between browser WebSockets and kernel links (no tornado here).

One :class:`Relay` lives in the server extension. Kernels connect over a *kernel link* and
register the session ids they serve; browsers connect to ``remotemedia/ws/<session_id>``.
The relay multiplexes every browser connection of a session over its kernel's link; the envelopes
and the connection-prefixed binary frames are defined in :mod:`remotemedia_nbrtc.protocol.kernel_link`.
Binary frames (WebSocket media, see ``remotemedia_nbrtc.transport.wsmedia``) are relayed as they are,
both ways; binary frames for unknown connections are dropped.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from remotemedia_nbrtc.protocol.jsonrpc import ErrorCode, error_message
from remotemedia_nbrtc.protocol.kernel_link import (
    ENVELOPE_KINDS_FROM_KERNEL,
    envelope,
    pack_link_frame,
    unpack_link_frame,
)

log = logging.getLogger(__name__)

BinarySend = Callable[[bytes], None]


class SessionUnavailable(Exception):
    """No connected kernel serves the requested session."""


@dataclass
class _Kernel:
    link_id: int
    send: Callable[[str], None]
    sessions: set[str] = field(default_factory=set)
    conns: set[str] = field(default_factory=set)
    send_binary: BinarySend | None = None


@dataclass
class _Browser:
    conn_id: str
    session_id: str
    link_id: int
    send: Callable[[str], None]
    close: Callable[[str], None]
    send_binary: BinarySend | None = None


class Relay:
    """Bookkeeping and routing of kernels, sessions and browser connections.

    Every method runs on the server's event loop; ``send``/``close`` callables must not block.
    """

    def __init__(self) -> None:
        self._kernels: dict[int, _Kernel] = {}
        self._sessions: dict[str, int] = {}
        self._browsers: dict[str, _Browser] = {}
        self._ids = itertools.count(1)
        #: binary frames dropped because a socket had too many unflushed writes (set by the handlers)
        self.binary_dropped = 0
        self.binary_relayed = 0

    @property
    def kernel_count(self) -> int:
        return len(self._kernels)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def connection_count(self) -> int:
        return len(self._browsers)

    def has_session(self, session_id: str) -> bool:
        return session_id in self._sessions

    # kernel side ---------------------------------------------------------------------------

    def add_kernel(self, send: Callable[[str], None], send_binary: BinarySend | None = None) -> int:
        """Record a newly connected kernel link; returns its link id."""
        link_id = next(self._ids)
        self._kernels[link_id] = _Kernel(link_id, send, send_binary=send_binary)
        return link_id

    def remove_kernel(self, link_id: int) -> None:
        """Forget a kernel link, its sessions, and close its browser connections."""
        kernel = self._kernels.pop(link_id, None)
        if kernel is None:
            return
        for sid in kernel.sessions:
            self._sessions.pop(sid, None)
        for conn_id in list(kernel.conns):
            browser = self._browsers.pop(conn_id, None)
            if browser is not None:
                browser.send(
                    error_message(None, ErrorCode.SESSION_UNAVAILABLE, "the kernel serving this session disconnected")
                )
                browser.close("kernel disconnected")

    def kernel_message(self, link_id: int, text: str) -> None:
        """Handle one envelope from a kernel link; bad envelopes get an ``error`` reply."""
        kernel = self._kernels.get(link_id)
        if kernel is None:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            kernel.send(envelope("error", data="envelope is not valid JSON"))
            return
        kind = msg.get("kind") if isinstance(msg, dict) else None
        if kind not in ENVELOPE_KINDS_FROM_KERNEL:
            kernel.send(envelope("error", data=f"unknown envelope kind {kind!r}"))
            return
        if kind in ("register", "unregister"):
            sid = msg.get("session")
            if not isinstance(sid, str) or not sid:
                kernel.send(envelope("error", data=f"{kind} needs a non-empty string 'session'"))
                return
            if kind == "register":
                self._register(kernel, sid)
            else:
                self._unregister(kernel, sid)
            return
        conn_id = msg.get("conn")
        browser = self._browsers.get(conn_id) if isinstance(conn_id, str) else None
        if browser is None or browser.link_id != link_id:
            # The browser may have gone away in the meantime: not an error worth a reply.
            log.debug("kernel %s: %s for unknown connection %r", link_id, kind, conn_id)
            return
        if kind == "message":
            data = msg.get("data")
            if not isinstance(data, str):
                kernel.send(envelope("error", conn=conn_id, data="message needs a string 'data'"))
                return
            browser.send(data)
        else:  # close
            self._drop_browser(conn_id)
            reason = msg.get("data")
            browser.close(reason if isinstance(reason, str) else "closed by kernel")

    def kernel_binary(self, link_id: int, data: bytes) -> None:
        """A binary frame from a kernel link: relay it to the browser connection it names."""
        kernel = self._kernels.get(link_id)
        if kernel is None:
            return
        try:
            conn_id, frame = unpack_link_frame(data)
        except ValueError:  # UnicodeDecodeError included
            kernel.send(envelope("error", data="binary link frames must start with a connection id prefix"))
            return
        browser = self._browsers.get(conn_id)
        if browser is None or browser.link_id != link_id or browser.send_binary is None:
            return
        self.binary_relayed += 1
        browser.send_binary(frame)

    def _register(self, kernel: _Kernel, sid: str) -> None:
        owner = self._sessions.get(sid)
        if owner is not None and owner != kernel.link_id:
            kernel.send(envelope("error", session=sid, data="session id already registered by another kernel"))
            return
        self._sessions[sid] = kernel.link_id
        kernel.sessions.add(sid)
        kernel.send(envelope("registered", session=sid))

    def _unregister(self, kernel: _Kernel, sid: str) -> None:
        if self._sessions.get(sid) == kernel.link_id:
            del self._sessions[sid]
        kernel.sessions.discard(sid)
        for conn_id in [c for c in kernel.conns if self._browsers[c].session_id == sid]:
            browser = self._drop_browser(conn_id)
            if browser is not None:
                browser.send(error_message(None, ErrorCode.SESSION_UNAVAILABLE, "the session was closed by the kernel"))
                browser.close("session closed")
        kernel.send(envelope("unregistered", session=sid))

    # browser side --------------------------------------------------------------------------

    def open_browser(
        self,
        session_id: str,
        send: Callable[[str], None],
        close: Callable[[str], None],
        send_binary: BinarySend | None = None,
    ) -> str:
        """Attach a browser connection to its session's kernel; returns the connection id.

        Raises :class:`SessionUnavailable` when no connected kernel serves ``session_id``.
        """
        link_id = self._sessions.get(session_id)
        kernel = self._kernels.get(link_id) if link_id is not None else None
        if kernel is None:
            raise SessionUnavailable(f"no running kernel serves session {session_id!r}")
        conn_id = f"c{next(self._ids)}"
        self._browsers[conn_id] = _Browser(conn_id, session_id, kernel.link_id, send, close, send_binary)
        kernel.conns.add(conn_id)
        kernel.send(envelope("open", conn=conn_id, session=session_id))
        return conn_id

    def browser_message(self, conn_id: str, text: str) -> None:
        """Forward one text message from a browser to its kernel."""
        browser = self._browsers.get(conn_id)
        if browser is None:
            return
        self._kernels[browser.link_id].send(envelope("message", conn=conn_id, data=text))

    def browser_binary(self, conn_id: str, frame: bytes) -> None:
        """Forward one binary (media) frame from a browser to its kernel."""
        browser = self._browsers.get(conn_id)
        if browser is None:
            return
        kernel = self._kernels[browser.link_id]
        if kernel.send_binary is not None:
            self.binary_relayed += 1
            kernel.send_binary(pack_link_frame(conn_id, frame))

    def browser_closed(self, conn_id: str) -> None:
        """The browser went away: tell its kernel so it closes the signaling endpoint."""
        browser = self._drop_browser(conn_id)
        if browser is not None:
            self._kernels[browser.link_id].send(envelope("close", conn=conn_id))

    def _drop_browser(self, conn_id: str) -> _Browser | None:
        browser = self._browsers.pop(conn_id, None)
        if browser is not None:
            kernel = self._kernels.get(browser.link_id)
            if kernel is not None:
                kernel.conns.discard(conn_id)
        return browser
