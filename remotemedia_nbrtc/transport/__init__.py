"""WebRTC transport: the kernel-side peer, signaling and the WebSocket media fallback.

The standalone server and the browser-free clients live in :mod:`remotemedia_nbrtc.standalone`.

The public names below load lazily, so ``import remotemedia_nbrtc.transport`` does not import aiortc.
May import: ``runtime``, ``protocol``, ``errors`` (and ``lazy_exports``), aiortc, PyAV, numpy and
protobuf; nothing of ``standalone``, ``server``, ``kernel``, ``widget`` or ``display``.
"""

from __future__ import annotations

from remotemedia_nbrtc.lazy_exports import lazy_exports

_EXPORTS = {
    "IceConfig": ".config",
    "PeerConfig": ".config",
    "ServerPeer": ".peer",
    "SignalingEndpoint": ".endpoint",
    "SyntheticVideoSource": ".sources",
    "ToneBurstSource": ".sources",
    "ToneSource": ".sources",
    "VideoFileSource": ".sources",
    "WavFileSource": ".sources",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
