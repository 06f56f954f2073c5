"""Jupyter server extension: relays browser signaling to the kernel that serves the session.

Authenticated handlers (``handlers.py``), the browser <-> kernel routing (``relay.py``) and the extension's
entry point (``extension.py``). It runs in the Jupyter server process, with no pipeline and no WebRTC.
May import: ``protocol``, jupyter_server and tornado; nothing else of this package.
"""

from __future__ import annotations

from typing import Any

from remotemedia_nbrtc.protocol.kernel_link import LINK_SECRET_ENV, LINK_URL_ENV

from .extension import load_jupyter_server_extension

__all__ = ["LINK_SECRET_ENV", "LINK_URL_ENV", "load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "remotemedia_nbrtc.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    load_jupyter_server_extension(serverapp)
