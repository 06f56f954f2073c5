"""``serve()``: make a pipeline reachable from browsers through the Jupyter server extension."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from remotemedia_nbrtc.errors import TransportError

from .link import Endpoint, KernelLink, ServedSession, get_link

if TYPE_CHECKING:
    from remotemedia_nbrtc.runtime import PipelineRunner, PipelineSource
    from remotemedia_nbrtc.transport.config import PeerConfig

WS_PATH_PREFIX = "remotemedia/ws/"


@dataclass(eq=False)
class KernelSession:
    """A session this kernel serves; each browser that connects to ``ws_path`` gets its own peer."""

    session_id: str
    ws_path: str
    _link: KernelLink = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed

    def endpoints(self, timeout: float = 5.0) -> list[Endpoint]:
        """The signaling endpoints of the browsers connected right now (oldest first)."""
        from remotemedia_nbrtc.transport.loop_thread import rtc_loop

        async def collect() -> list[Endpoint]:
            return self._link.connections(self.session_id)

        return rtc_loop().run(collect(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Disconnect this session's browsers and unregister it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        from remotemedia_nbrtc.transport.loop_thread import rtc_loop

        rtc_loop().run(self._link.unregister(self.session_id), timeout)

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(pipeline: PipelineSource, *, peer_config: PeerConfig | None = None, runner: PipelineRunner | None = None,
          timeout: float = 10.0) -> KernelSession:
    """Register a new unguessable session for ``pipeline`` (manifest, path or Pipeline) with the extension.

    Blocks until the extension has acknowledged it, so a browser may connect as soon as this returns.
    Raises :class:`TransportError` when the kernel was not started by a server with the extension.
    """
    link = get_link(timeout)
    session_id = secrets.token_urlsafe(24)
    served = ServedSession(session_id, pipeline, peer_config, runner)
    from remotemedia_nbrtc.transport.loop_thread import rtc_loop

    try:
        rtc_loop().run(link.register(served, timeout), timeout + 1.0)
    except TimeoutError as exc:
        raise TransportError(f"the server extension did not register session {session_id!r} in time") from exc
    return KernelSession(session_id, WS_PATH_PREFIX + session_id, link)
