"""The link between the Jupyter server extension and the kernels it starts: environment, auth header, envelopes.

A kernel connects to ``LINK_URL_ENV`` with ``LINK_SECRET_ENV`` in ``LINK_SECRET_HEADER`` (pinning
``LINK_CERT_ENV`` under HTTPS) and exchanges JSON envelopes with the relay; see ``server/relay.py``.
"""

from __future__ import annotations

__all__ = [
    "ENVELOPE_KINDS_FROM_KERNEL",
    "LINK_CERT_ENV",
    "LINK_MAX_MESSAGE_BYTES",
    "LINK_SECRET_ENV",
    "LINK_SECRET_HEADER",
    "LINK_URL_ENV",
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
