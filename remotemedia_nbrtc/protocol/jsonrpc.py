"""JSON-RPC 2.0 of RemoteMedia's signaling: the methods, the notifications, the error codes, the server's
peer id, size limits, and the builders of the four kinds of message.

Methods and codes follow upstream's ``crates/transports/webrtc/src/signaling/protocol.rs`` (its -32000..
range plus the standard codes); ``session.info``, ``control.*`` and ``media.*`` are our own additions.
Parsing and parameter validation live in ``transport.signaling``.
"""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from typing import Any

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "METHODS",
    "NOTIFICATIONS",
    "SERVER_PEER_ID",
    "ErrorCode",
    "Method",
    "Notification",
    "error_message",
    "notification",
    "request_message",
    "result_message",
]

#: The ``to``/``from`` of messages the kernel-side peer sends and receives.
SERVER_PEER_ID = "remotemedia-server"

class Method(StrEnum):
    """Every method a signaling endpoint accepts (requests, and notifications from the client)."""

    PEER_ANNOUNCE = "peer.announce"
    PEER_OFFER = "peer.offer"
    PEER_ANSWER = "peer.answer"
    PEER_ICE_CANDIDATE = "peer.ice_candidate"
    PEER_DISCONNECT = "peer.disconnect"
    PEER_LIST = "peer.list"
    #: upstream's older name of peer.list
    LIST_PEERS = "list_peers"
    SERVER_INFO = "server.info"
    SESSION_INFO = "session.info"
    CONTROL_SUBSCRIBE = "control.subscribe"
    CONTROL_UNSUBSCRIBE = "control.unsubscribe"
    CONTROL_PUBLISH = "control.publish"
    CONTROL_SET_NODE_STATE = "control.set_node_state"
    CONTROL_FLUSH_AUDIO = "control.flush_audio"
    MEDIA_OPEN = "media.open"
    MEDIA_CLOSE = "media.close"
    MEDIA_SEND = "media.send"
    MEDIA_STATS = "media.stats"


#: Every method name a signaling endpoint accepts (what ``widget/js/protocol.js`` mirrors a subset of).
METHODS = frozenset(m.value for m in Method)


class Notification(StrEnum):
    """Every notification the server sends a client (no id, no reply); members are their method names."""

    #: another peer announced itself
    PEER_JOINED = "peer.joined"
    #: another peer's signaling connection went away
    PEER_LEFT = "peer.left"
    #: another peer's offer, answer or ICE candidate, relayed; or the kernel's own ICE candidate
    PEER_OFFER = "peer.offer"
    PEER_ANSWER = "peer.answer"
    PEER_ICE_CANDIDATE = "peer.ice_candidate"
    #: the kernel's peer connection changed state (``connection_state``)
    PEER_STATE_CHANGE = "peer.state_change"
    #: another peer sent ``peer.disconnect`` to this one
    PEER_DISCONNECTED = "peer.disconnected"
    #: a pipeline output on a topic the client subscribed to with ``control.subscribe``
    CONTROL_EVENT = "control.event"
    #: a pipeline output over the WebSocket media fallback (after ``media.open``)
    MEDIA_OUTPUT = "media.output"


#: Every notification method name the server sends (what ``widget/js/protocol.js`` mirrors a subset of).
NOTIFICATIONS = frozenset(n.value for n in Notification)

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


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays show up in node outputs; everything else becomes its repr
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def result_message(request_id: Any, result: Any) -> str:
    """A success response, as compact JSON text."""
    return _dumps({"jsonrpc": "2.0", "result": result, "id": request_id})


def error_message(request_id: Any, code: int, message: str, data: Any = None) -> str:
    """An error response, as compact JSON text (``data`` omitted when ``None``; ``request_id`` ``None`` when
    the error answers no request, e.g. the session went away)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _dumps({"jsonrpc": "2.0", "error": error, "id": request_id})


def notification(method: str, params: dict[str, Any]) -> str:
    """A server-to-client notification (no id), as compact JSON text."""
    return _dumps({"jsonrpc": "2.0", "method": method, "params": params})


def request_message(method: str, params: dict[str, Any], request_id: int | str) -> str:
    """A client request, as compact JSON text."""
    return _dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id})
