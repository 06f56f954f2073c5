"""JSON-RPC 2.0 facts of RemoteMedia's signaling: the methods, the error codes, the server's peer id, size limits.

Methods and codes follow upstream's ``crates/transports/webrtc/src/signaling/protocol.rs`` (its -32000..
range plus the standard codes); ``session.info``, ``control.*`` and ``media.*`` are our own additions.
Parsing and parameter validation live in ``transport.signaling``.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "ERROR_CODES", "MAX_ID_LENGTH", "METHODS", "SERVER_PEER_ID", "ErrorCode"]

#: The ``to``/``from`` of messages the kernel-side peer sends and receives.
SERVER_PEER_ID = "remotemedia-server"

#: Every method a signaling endpoint accepts (requests and notifications from the client).
METHODS = frozenset(
    {
        "peer.announce",
        "peer.offer",
        "peer.answer",
        "peer.ice_candidate",
        "peer.disconnect",
        "peer.list",
        "list_peers",
        "server.info",
        "session.info",
        "control.subscribe",
        "control.unsubscribe",
        "control.publish",
        "control.set_node_state",
        "control.flush_audio",
        "media.open",
        "media.close",
        "media.send",
        "media.stats",
    }
)

#: Largest signaling message (bytes) an endpoint and the server extension's browser socket accept:
#: messages are SDP-sized, anything bigger is a client bug or abuse.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
#: Longest request id, ``peer_id``, ``from`` or ``to`` accepted (characters).
MAX_ID_LENGTH = 256


class ErrorCode(IntEnum):
    """Every code a signaling endpoint or the Jupyter relay answers with."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    PEER_NOT_FOUND = -32000
    #: the relay's name for PEER_NOT_FOUND: the session has no live kernel (kernel restarted, handle closed)
    SESSION_UNAVAILABLE = -32000
    SESSION_LIMIT = -32001
    OFFER_INVALID = -32002
    ANSWER_INVALID = -32003
    ICE_INVALID = -32004
    NEGOTIATION_IN_PROGRESS = -32005
    CONNECTION_TIMEOUT = -32006
    CODEC_MISMATCH = -32007


#: name -> code, aliases included (what ``widget/js/protocol.js`` mirrors a subset of)
ERROR_CODES: dict[str, int] = {name: int(code) for name, code in ErrorCode.__members__.items()}
