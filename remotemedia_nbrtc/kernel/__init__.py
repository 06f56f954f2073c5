"""Kernel side of the Jupyter integration: ``serve(pipeline)`` and the link to the server extension.

One WebSocket per kernel to the extension (``link.py``) carries every browser's signaling and WebSocket
media; each browser connection gets a ``transport`` signaling endpoint on the RTC loop.
May import: ``transport``, ``runtime``, ``protocol``, ``errors`` and tornado; nothing of ``server`` (the extension
runs in another process), ``widget`` or ``display``.
"""

from __future__ import annotations

from .serve import KernelSession, serve

__all__ = ["KernelSession", "serve"]
