"""JSON-RPC 2.0 messages of RemoteMedia's WebRTC signaling: parsing and validation.

Pure functions, no I/O. The protocol's facts (method and notification names, error codes, size limits) and
the message builders are defined in :mod:`remotemedia_nbrtc.protocol.jsonrpc`; parameters follow upstream's
``crates/transports/webrtc/src/signaling/protocol.rs``.

Every malformed input raises :class:`RpcError`, which carries the request id when one could be read,
so the caller can always answer with :meth:`RpcError.to_message`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.protocol.jsonrpc import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_ID_LENGTH,
    METHODS,
    ErrorCode,
    Method,
    error_message,
)

__all__ = [
    "NODE_STATES",
    "Request",
    "RpcError",
    "ice_candidate_params",
    "normalize_candidate",
    "parse_message",
    "parse_response",
    "parse_topic",
    "validate_dtls_fingerprints",
    "validate_sdp",
]

NODE_STATES = ("enabled", "bypass", "disabled")

_ANY = object()  # marker: any JSON value
_REQUIRED, _OPTIONAL = True, False

# method -> {param: (accepted types, required)}, one entry per protocol METHOD (a test checks);
# params not listed are ignored (upstream is lenient).
_PARAM_SPECS: dict[str, dict[str, tuple[Any, bool]]] = {
    Method.PEER_ANNOUNCE: {
        "peer_id": (str, _REQUIRED),
        "capabilities": (list, _OPTIONAL),
        "user_data": (_ANY, _OPTIONAL),
    },
    Method.PEER_OFFER: {"from": (str, _REQUIRED), "to": (str, _REQUIRED), "sdp": (str, _REQUIRED)},
    Method.PEER_ANSWER: {"from": (str, _REQUIRED), "to": (str, _REQUIRED), "sdp": (str, _REQUIRED)},
    Method.PEER_ICE_CANDIDATE: {
        "from": (str, _REQUIRED),
        "to": (str, _REQUIRED),
        "candidate": ((str, dict, type(None)), _REQUIRED),
        "sdp_mid": ((str, type(None)), _OPTIONAL),
        "sdp_m_line_index": ((int, type(None)), _OPTIONAL),
        "sdpMid": ((str, type(None)), _OPTIONAL),
        "sdpMLineIndex": ((int, type(None)), _OPTIONAL),
    },
    Method.PEER_DISCONNECT: {"peer_id": (str, _REQUIRED), "reason": ((str, type(None)), _OPTIONAL)},
    Method.PEER_LIST: {},
    Method.LIST_PEERS: {},
    Method.SERVER_INFO: {},
    Method.SESSION_INFO: {},
    Method.CONTROL_SUBSCRIBE: {"topic": (str, _REQUIRED), "include_audio": (bool, _OPTIONAL)},
    Method.CONTROL_UNSUBSCRIBE: {"topic": (str, _REQUIRED)},
    Method.CONTROL_PUBLISH: {"topic": (str, _REQUIRED), "payload": (_ANY, _REQUIRED)},
    Method.CONTROL_SET_NODE_STATE: {"node_id": (str, _REQUIRED), "state": (str, _REQUIRED)},
    Method.CONTROL_FLUSH_AUDIO: {},
    Method.MEDIA_OPEN: {
        "audio": ((dict, type(None)), _OPTIONAL),
        "video": ((dict, type(None)), _OPTIONAL),
        "receive_audio": ((bool, dict), _OPTIONAL),
        "receive_video": ((bool, dict), _OPTIONAL),
    },
    Method.MEDIA_CLOSE: {},
    Method.MEDIA_SEND: {"message": (str, _REQUIRED)},
    Method.MEDIA_STATS: {},
}

_TOPIC_RE = re.compile(
    r"^(?P<node>[A-Za-z0-9_*-][A-Za-z0-9_:*-]{0,127})\.(?P<dir>in|out)(?:\.(?P<port>[A-Za-z0-9_-]{1,64}))?$"
)
_CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


class RpcError(SignalingError):
    """A JSON-RPC error bound to the id of the request that caused it (``None`` if unknown)."""

    def __init__(self, code: int, message: str, data: Any = None, *, request_id: Any = None) -> None:
        super().__init__(code, message, data)
        self.request_id = request_id

    def to_message(self) -> str:
        """The JSON-RPC error response for this error."""
        return error_message(self.request_id, self.code, self.message, self.data)


@dataclass(frozen=True)
class Request:
    """A validated request (``is_notification`` when it carries no id)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    id: int | float | str | None = None
    is_notification: bool = False


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return value is None


def _type_ok(value: Any, types: Any) -> bool:
    if types is _ANY:
        return True
    if isinstance(value, bool) and (types is int or (isinstance(types, tuple) and int in types and bool not in types)):
        return False
    return isinstance(value, types)


def _type_name(types: Any) -> str:
    names = {str: "string", int: "integer", list: "array", dict: "object", bool: "boolean", type(None): "null"}
    if isinstance(types, tuple):
        return " or ".join(names.get(t, t.__name__) for t in types)
    return names.get(types, getattr(types, "__name__", "value"))


def _loads(text: str) -> Any:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=reject_constant)


def parse_message(message: str | bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Request:
    """Parse and validate one client message; raise :class:`RpcError` for anything malformed."""
    size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise RpcError(ErrorCode.INVALID_REQUEST, "Message too large", {"max_bytes": max_bytes, "size": size})
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RpcError(ErrorCode.PARSE_ERROR, "Parse error", {"reason": f"not UTF-8: {exc.reason}"}) from None
    try:
        obj = _loads(message)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or type(exc).__name__
        raise RpcError(ErrorCode.PARSE_ERROR, "Parse error", {"reason": reason}) from None
    if isinstance(obj, list):
        raise RpcError(ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "batch requests are not supported"})
    if not isinstance(obj, dict):
        raise RpcError(ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "a request must be a JSON object"})
    has_id = "id" in obj
    request_id = obj.get("id")
    if not _valid_id(request_id):
        raise RpcError(
            ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "id must be a string, a number or null"}
        )
    if obj.get("jsonrpc") != "2.0":
        raise RpcError(
            ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": 'jsonrpc must be "2.0"'}, request_id=request_id
        )
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(
            ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "method must be a non-empty string"},
            request_id=request_id,
        )
    if "result" in obj or "error" in obj:
        raise RpcError(
            ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "responses are not accepted"},
            request_id=request_id,
        )
    if method not in METHODS:
        raise RpcError(ErrorCode.METHOD_NOT_FOUND, "Method not found", {"method": method[:128]}, request_id=request_id)
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(
            ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": "params must be an object"}, request_id=request_id
        )
    for name, (types, required) in _PARAM_SPECS[method].items():
        if name not in params:
            if required:
                raise RpcError(
                    ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"missing {name!r}"}, request_id=request_id
                )
            continue
        if not _type_ok(params[name], types):
            reason = f"{name!r} must be {_type_name(types)}"
            raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": reason}, request_id=request_id)
    _check_method_params(method, params, request_id)
    return Request(method=method, params=params, id=request_id, is_notification=not has_id)


def _check_method_params(method: str, params: dict[str, Any], request_id: Any) -> None:
    def bad(reason: str) -> RpcError:
        return RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": reason}, request_id=request_id)

    for key in ("peer_id", "from", "to"):
        value = params.get(key)
        if isinstance(value, str) and not (0 < len(value) <= MAX_ID_LENGTH):
            raise bad(f"{key!r} must be 1-{MAX_ID_LENGTH} characters")
    if method == Method.PEER_ANNOUNCE:
        caps = params.get("capabilities", [])
        if not all(isinstance(c, str) for c in caps):
            raise bad("'capabilities' must be an array of strings")
    elif method in (Method.CONTROL_SUBSCRIBE, Method.CONTROL_UNSUBSCRIBE, Method.CONTROL_PUBLISH):
        want = "in" if method == Method.CONTROL_PUBLISH else "out"
        topic = parse_topic(params["topic"])
        if topic is None or topic[1] != want:
            raise bad(f"'topic' must look like 'node.{want}[.port]'")
    elif method == Method.CONTROL_SET_NODE_STATE and params["state"] not in NODE_STATES:
        raise bad(f"'state' must be one of {', '.join(NODE_STATES)}")


def parse_topic(topic: str) -> tuple[str, str, str | None] | None:
    """Split ``"node.out[.port]"`` into ``(node, "out", port)``; ``None`` if it is not a topic."""
    match = _TOPIC_RE.match(topic)
    if match is None:
        return None
    return match["node"], match["dir"], match["port"]


def validate_sdp(sdp: str, *, code: int = ErrorCode.OFFER_INVALID) -> None:
    """Upstream's check: the SDP starts with ``v=0`` and has an ``m=`` line; else ``code`` with data.reason."""
    kind = "offer" if code == ErrorCode.OFFER_INVALID else "answer"
    if not sdp.lstrip().startswith("v=0"):
        raise RpcError(code, f"Invalid SDP {kind}", {"reason": "SDP must start with v=0"})
    if not re.search(r"(^|\r?\n)m=", sdp):
        raise RpcError(code, f"Invalid SDP {kind}", {"reason": "SDP has no m= line"})


# the digests aiortc can check a peer certificate against, and their length in bytes
_FINGERPRINT_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
_FINGERPRINT_VALUE_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*$")


def validate_dtls_fingerprints(sdp: str, *, code: int = ErrorCode.OFFER_INVALID) -> None:
    """Every media section must carry a well-formed ``a=fingerprint`` (its own or the session's).

    aiortc only notices a missing or unusable fingerprint when DTLS starts, after the offer was
    answered, and then fails with a bare ``AssertionError``; checking here gives the client a reason.
    """
    kind = "offer" if code == ErrorCode.OFFER_INVALID else "answer"

    def bad(reason: str) -> RpcError:
        return RpcError(code, f"Invalid SDP {kind}", {"reason": reason})

    session_has = False
    sections: list[bool] = []  # per m= section: has a fingerprint
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            sections.append(False)
            continue
        if not line.startswith("a=fingerprint"):
            continue
        value = line[len("a=fingerprint") :]
        if not value.startswith(":"):
            raise bad("a=fingerprint must look like 'a=fingerprint:sha-256 AB:CD:...'")
        parts = value[1:].split()
        if len(parts) != 2:
            raise bad("a=fingerprint needs exactly an algorithm and a value")
        algorithm, digest = parts[0].lower(), parts[1]
        if algorithm not in _FINGERPRINT_BYTES:
            raise bad(f"unsupported fingerprint algorithm {parts[0][:32]!r} (use {', '.join(_FINGERPRINT_BYTES)})")
        if not _FINGERPRINT_VALUE_RE.match(digest) or len(digest.split(":")) != _FINGERPRINT_BYTES[algorithm]:
            want = _FINGERPRINT_BYTES[algorithm]
            raise bad(f"malformed {algorithm} fingerprint: want {want} hex bytes separated by ':'")
        if sections:
            sections[-1] = True
        else:
            session_has = True
    if not session_has and not all(sections):
        raise bad("SDP has no a=fingerprint (DTLS needs one for every media section)")


def normalize_candidate(params: dict[str, Any]) -> dict[str, Any] | None:
    """The candidate of ``peer.ice_candidate`` params as ``{"candidate", "sdpMid", "sdpMLineIndex"}``.

    Accepts upstream's ``candidate`` string with ``sdp_mid``/``sdp_m_line_index``, the camelCase names,
    or a browser ``RTCIceCandidate.toJSON()`` object. An empty candidate means end of candidates and
    gives ``None``. A malformed candidate raises :class:`RpcError` with code -32004.
    """
    raw = params.get("candidate")
    mid = params.get("sdp_mid", params.get("sdpMid"))
    index = params.get("sdp_m_line_index", params.get("sdpMLineIndex"))
    if isinstance(raw, dict):
        mid = raw.get("sdpMid", raw.get("sdp_mid", mid))
        index = raw.get("sdpMLineIndex", raw.get("sdp_m_line_index", index))
        raw = raw.get("candidate")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise RpcError(ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": "candidate must be a string"})
    if mid is not None and not isinstance(mid, str):
        raise RpcError(ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": "sdpMid must be a string"})
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise RpcError(
            ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": "sdpMLineIndex must be a non-negative integer"}
        )
    if mid is None and index is None:
        raise RpcError(
            ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": "sdpMid or sdpMLineIndex is required"}
        )
    reason = _candidate_problem(raw)
    if reason:
        raise RpcError(ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": reason})
    return {"candidate": raw.strip(), "sdpMid": mid, "sdpMLineIndex": index}


def _candidate_problem(line: str) -> str | None:
    text = line.strip()
    text = text.removeprefix("a=")
    if not text.startswith("candidate:"):
        return "candidate must start with 'candidate:'"
    bits = text[len("candidate:") :].split()
    if len(bits) < 8:
        return "candidate has too few fields"
    _foundation, component, transport, priority, _host, port, typ, kind = bits[:8]
    if not (component.isdigit() and priority.isdigit() and port.isdigit()):
        return "candidate component, priority and port must be integers"
    if int(port) > 65535:
        return "candidate port out of range"
    if transport.lower() not in ("udp", "tcp"):
        return "candidate transport must be udp or tcp"
    if typ != "typ" or kind not in _CANDIDATE_TYPES:
        return "candidate type must be host, srflx, prflx or relay"
    return None


def ice_candidate_params(candidate: dict[str, Any] | None, *, from_id: str, to_id: str) -> dict[str, Any]:
    """``peer.ice_candidate`` params for a candidate dict; ``None`` gives the end-of-candidates form."""
    if candidate is None:
        return {"from": from_id, "to": to_id, "candidate": "", "sdp_mid": None, "sdp_m_line_index": None}
    return {
        "from": from_id,
        "to": to_id,
        "candidate": candidate.get("candidate", ""),
        "sdp_mid": candidate.get("sdpMid"),
        "sdp_m_line_index": candidate.get("sdpMLineIndex"),
    }


def parse_response(message: str) -> dict[str, Any]:
    """Parse a server message on the client side: a response or a notification (a dict either way)."""
    obj = _loads(message)
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0":
        raise RpcError(
            ErrorCode.INVALID_REQUEST, "Invalid message from server", {"reason": "not a JSON-RPC 2.0 object"}
        )
    return obj
