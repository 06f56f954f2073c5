"""WebRTC transport: the kernel-side peer, signaling and the WebSocket media fallback.

The standalone server and the browser-free clients live in :mod:`remotemedia_nbrtc.standalone`.

The public names below load lazily, so ``import remotemedia_nbrtc.transport`` does not import aiortc.
May import: ``runtime``, ``protocol``, ``errors``, aiortc, PyAV, numpy and protobuf; nothing of
``standalone``, ``server``, ``kernel``, ``widget`` or ``display``.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
