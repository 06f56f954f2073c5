"""The wire protocols, each defined once; everything that speaks one imports its facts from here.

- :mod:`.jsonrpc`: JSON-RPC 2.0 signaling: the method table, the error codes, the server's peer id,
  the message and id size limits (parsing and validation live in ``transport.signaling``).
- :mod:`.datachannel`: the data channels' labels and channel protocols, the JSON message format on the
  pipeline-data channel and its size limit (the encoding of pipeline data lives in ``transport.wire``).
- :mod:`.media_frames`: binary media frames (13-byte header, then the payload), used by the WebSocket
  media fallback and by pcm16 audio on the ``rm-audio`` data channel.
- :mod:`.kernel_link`: the link between the Jupyter server extension and its kernels: environment,
  auth header, JSON envelopes and connection-prefixed binary frames.

``widget/js/protocol.js`` mirrors the constants the front end uses (a test checks the two agree).
Modules import from the submodules; this package re-exports the most used names for convenience.
May import: the standard library only (no aiortc, no Jupyter, nothing of this package).
"""

from .datachannel import DC_AUDIO_LABEL
from .jsonrpc import DEFAULT_MAX_MESSAGE_BYTES, ERROR_CODES, MAX_ID_LENGTH, METHODS, SERVER_PEER_ID, ErrorCode
from .kernel_link import (
    ENVELOPE_KINDS_FROM_KERNEL,
    LINK_CERT_ENV,
    LINK_MAX_MESSAGE_BYTES,
    LINK_SECRET_ENV,
    LINK_SECRET_HEADER,
    LINK_URL_ENV,
)
from .media_frames import (
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
    "DEFAULT_MAX_MESSAGE_BYTES",
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
    "MAX_ID_LENGTH",
    "METHODS",
    "SERVER_PEER_ID",
    "ErrorCode",
    "pack_frame",
    "unpack_frame",
    "wall_us",
]
