"""The link between the Jupyter server extension and the kernels it starts: environment, auth, envelopes, frames.

A kernel connects to ``LINK_URL_ENV`` with ``LINK_SECRET_ENV`` in ``LINK_SECRET_HEADER`` (pinning
``LINK_CERT_ENV`` under HTTPS). The link multiplexes every browser connection of the kernel's sessions
(routing: ``server/relay.py``; the kernel's end: ``kernel/link.py``).

Text messages are JSON envelopes ``{"kind": ..., "conn": ..., "session": ..., "data": ...}``
(see :func:`envelope`):

    browser -> kernel   open {conn, session} | message {conn, data} | close {conn}
    kernel  -> browser  message {conn, data} | close {conn, data?: reason}
    kernel  -> relay    register {session} | unregister {session}
    relay   -> kernel   registered {session} | unregistered {session} | error {session?, conn?, data}

Binary messages carry a browser connection's media frames (``media_frames``), each prefixed with its
connection id: ``u8 n, n bytes of the ASCII connection id, then the frame`` (see :func:`pack_link_frame`).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ENVELOPE_KINDS_FROM_KERNEL",
    "LINK_CERT_ENV",
    "LINK_MAX_MESSAGE_BYTES",
    "LINK_SECRET_ENV",
    "LINK_SECRET_HEADER",
    "LINK_URL_ENV",
    "envelope",
    "pack_link_frame",
    "unpack_link_frame",
]

#: Kernels started by the server inherit these and use them to reach the kernel link.
LINK_URL_ENV = "REMOTEMEDIA_NBRTC_LINK_URL"
LINK_SECRET_ENV = "REMOTEMEDIA_NBRTC_LINK_SECRET"
#: With HTTPS (``ServerApp.certfile``): the certificate the kernel link must present (pinned by the kernel).
LINK_CERT_ENV = "REMOTEMEDIA_NBRTC_LINK_CERT"
#: Header (or ``?secret=`` query argument) that carries the kernel-link secret.
LINK_SECRET_HEADER = "X-RemoteMedia-Link-Secret"
#: The link multiplexes many browsers' messages, each wrapped in an envelope.
LINK_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: What a kernel may send the relay.
ENVELOPE_KINDS_FROM_KERNEL = frozenset({"register", "unregister", "message", "close"})


def envelope(kind: str, **fields: Any) -> str:
    """A kernel-link envelope as text; ``None`` fields are left out."""
    return json.dumps({"kind": kind, **{k: v for k, v in fields.items() if v is not None}})


def pack_link_frame(conn_id: str, frame: bytes) -> bytes:
    """A binary message for the kernel link: the connection id prefix, then ``frame``."""
    raw = conn_id.encode("ascii")
    if not 0 < len(raw) < 256:
        raise ValueError("connection ids are 1-255 ASCII characters")
    return bytes([len(raw)]) + raw + frame


def unpack_link_frame(data: bytes) -> tuple[str, bytes]:
    """``(conn_id, frame)`` of a binary kernel-link message; ``ValueError`` when the prefix is malformed."""
    if not data or data[0] == 0 or len(data) < 1 + data[0]:
        raise ValueError("binary link frame needs a connection id prefix")
    n = data[0]
    return bytes(data[1 : 1 + n]).decode("ascii"), bytes(memoryview(data)[1 + n :])
