"""JSON-RPC 2.0 error codes of RemoteMedia's signaling, in one table (upstream's -32000.. range plus the standard ones)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ERROR_CODES", "SERVER_PEER_ID", "ErrorCode"]

#: The ``to``/``from`` of messages the kernel-side peer sends and receives.
SERVER_PEER_ID = "remotemedia-server"


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
