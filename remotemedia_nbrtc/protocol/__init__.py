"""The wire protocols, each defined once: JSON-RPC error codes, binary media frames, the kernel link.

Everything that speaks to a browser, a standalone client or the Jupyter server imports its constants
from here; ``widget/js/protocol.js`` mirrors them for the front end (a test checks the two agree).
May import: the standard library only (no aiortc, no Jupyter, nothing of this package).
"""

from .jsonrpc import ERROR_CODES, SERVER_PEER_ID, ErrorCode
from .kernel_link import (
    ENVELOPE_KINDS_FROM_KERNEL,
    LINK_CERT_ENV,
    LINK_MAX_MESSAGE_BYTES,
    LINK_SECRET_ENV,
    LINK_SECRET_HEADER,
    LINK_URL_ENV,
)
from .media_frames import (
    DC_AUDIO_LABEL,
    FRAME_KINDS,
    HEADER,
    HEADER_BYTES,
    KIND_AUDIO,
    KIND_DATA,
    KIND_VIDEO,
    pack_frame,
    unpack_frame,
    wall_us,
)

__all__ = [
    "DC_AUDIO_LABEL",
    "ENVELOPE_KINDS_FROM_KERNEL",
    "ERROR_CODES",
    "FRAME_KINDS",
    "HEADER",
    "HEADER_BYTES",
    "KIND_AUDIO",
    "KIND_DATA",
    "KIND_VIDEO",
    "LINK_CERT_ENV",
    "LINK_MAX_MESSAGE_BYTES",
    "LINK_SECRET_ENV",
    "LINK_SECRET_HEADER",
    "LINK_URL_ENV",
    "SERVER_PEER_ID",
    "ErrorCode",
    "pack_frame",
    "unpack_frame",
    "wall_us",
]
