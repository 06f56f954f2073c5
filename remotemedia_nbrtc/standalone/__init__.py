"""The Jupyter-free parts: a standalone signaling + media server and browser-free Python clients.

- :mod:`.server`: :class:`WebRTCServer` / :class:`ServerConfig`, signaling and media with no Jupyter (``python -m
  remotemedia_nbrtc``), plus its browser test page (``static/``), which speaks through the widget's own ES modules
  (``widget/js/rpc_socket.js``, ``protocol.js``), served as files under ``/js/``;
- :mod:`.rpc_client`: :class:`RpcClient`, the one JSON-RPC-over-WebSocket client both clients below speak through;
- :mod:`.webrtc_client`: :class:`ClientPeer`, a WebRTC client that does what the browser page does;
- :mod:`.websocket_client`: :class:`WebSocketMediaClient` (the WebSocket media fallback) and :func:`connect_media`
  (WebRTC first, WebSocket when WebRTC is refused or slow).

The public names load lazily, so ``import remotemedia_nbrtc.standalone`` does not import aiortc.
May import: :mod:`remotemedia_nbrtc.transport`, ``.runtime``, ``.protocol``, ``.errors`` (and ``.lazy_exports``);
nothing of ``server/`` (the Jupyter extension), ``kernel/``, ``widget/`` or ``display/`` (``widget/js/`` is served
as files, never imported).
"""

from __future__ import annotations

from remotemedia_nbrtc.lazy_exports import lazy_exports

_EXPORTS = {
    "ClientPeer": ".webrtc_client",
    "MediaPath": ".websocket_client",
    "RpcClient": ".rpc_client",
    "ServerConfig": ".server",
    "WebRTCServer": ".server",
    "WebSocketMediaClient": ".websocket_client",
    "connect_media": ".websocket_client",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
