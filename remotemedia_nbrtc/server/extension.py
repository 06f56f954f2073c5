"""Loading of the server extension: routes, the relay, and the kernel-link environment."""

from __future__ import annotations

import os
import secrets
from importlib import metadata
from typing import Any

from jupyter_server.utils import url_path_join

from remotemedia_nbrtc.protocol.kernel_link import LINK_CERT_ENV, LINK_SECRET_ENV, LINK_URL_ENV

from .handlers import BrowserSocketHandler, KernelLinkHandler, StatusHandler
from .relay import Relay

ROUTE_PREFIX = "remotemedia"


def _version() -> str:
    try:
        return metadata.version("remotemedia_nbrtc")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def link_url(serverapp: Any) -> str:
    """The ws:// URL of the kernel link, as a kernel on this host must dial it."""
    ip = serverapp.ip
    if ip in ("", "0.0.0.0", "localhost", "*"):
        host = "127.0.0.1"
    elif ":" in ip:
        host = "[::1]" if ip == "::" else f"[{ip}]"
    else:
        host = ip
    scheme = "wss" if serverapp.certfile else "ws"
    path = url_path_join(serverapp.base_url, ROUTE_PREFIX, "kernel-link")
    return f"{scheme}://{host}:{serverapp.port}{path}"


def load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the routes and export the kernel-link URL and secret to kernels this server starts."""
    web_app = serverapp.web_app
    secret = secrets.token_urlsafe(32)
    web_app.settings["remotemedia_relay"] = Relay()
    web_app.settings["remotemedia_link_secret"] = secret
    web_app.settings["remotemedia_version"] = _version()

    base = url_path_join(serverapp.base_url, ROUTE_PREFIX)
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, r"ws/([A-Za-z0-9_\-]{1,128})"), BrowserSocketHandler),
            (url_path_join(base, "kernel-link"), KernelLinkHandler),
            (url_path_join(base, "status"), StatusHandler),
        ],
    )

    def export_link() -> None:
        os.environ[LINK_URL_ENV] = link_url(serverapp)
        os.environ[LINK_SECRET_ENV] = secret
        if serverapp.certfile:
            os.environ[LINK_CERT_ENV] = os.path.abspath(serverapp.certfile)
        else:
            os.environ.pop(LINK_CERT_ENV, None)

    export_link()
    # The port is only final once ServerApp.init_httpserver has picked it (after extensions
    # load, e.g. with port 0 or port retries); re-export once the loop runs, before any kernel.
    io_loop = getattr(serverapp, "io_loop", None)
    if io_loop is not None:
        io_loop.add_callback(export_link)
    serverapp.log.info("remotemedia_nbrtc server extension loaded at %s", base)
