"""Encoding and decoding of pipeline data on the data channel (needs the runtime's data types and numpy).

The message format and :data:`~remotemedia_nbrtc.protocol.datachannel.MAX_MESSAGE_BYTES` are defined in
:mod:`remotemedia_nbrtc.protocol.datachannel`. A larger output raises :class:`MessageTooLarge` from
:func:`encode_output`, and the sender replaces it with a small ``error`` message and counts it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..protocol.datachannel import MAX_MESSAGE_BYTES
from ..protocol.media_frames import wall_us
from ..runtime import BinaryData, ErrorData, JsonData, RuntimeData, TextData

__all__ = [
    "MessageTooLarge",
    "UndecodableMessage",
    "decode_message",
    "encode_error",
    "encode_metrics",
    "encode_output",
]


class MessageTooLarge(ValueError):
    """An outgoing message exceeds :data:`MAX_MESSAGE_BYTES`."""

    def __init__(self, size: int, limit: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__(f"message of {size} bytes exceeds the data-channel limit of {limit} bytes")
        self.size = size
        self.limit = limit


class UndecodableMessage(ValueError):
    """An incoming message that cannot become pipeline input (e.g. JSON nested too deeply to parse)."""


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_default, allow_nan=False)


def _checked(message: str | bytes, limit: int) -> str | bytes:
    size = len(message.encode("utf-8")) if isinstance(message, str) else len(message)
    if size > limit:
        raise MessageTooLarge(size, limit)
    return message


def _envelope(kind: str, node: str | None, media_ts: int | None, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": kind, **fields}
    if node is not None:
        obj["node"] = node
    if media_ts is not None:
        obj["media_ts_us"] = media_ts
    obj["ts_us"] = wall_us()
    return obj


def encode_output(data: RuntimeData, node: str | None = None, *, limit: int = MAX_MESSAGE_BYTES) -> str | bytes | None:
    """The data-channel message for a pipeline output, or None for kinds not sent on the channel."""
    if isinstance(data, TextData):
        obj = _envelope("text", node, data.timestamp_us, text=data.text, channel=data.channel)
    elif isinstance(data, JsonData):
        obj = _envelope("json", node, data.timestamp_us, value=data.value)
    elif isinstance(data, ErrorData):
        obj = _envelope("error", node or data.node_id, None, message=data.message, error_type=data.error_type)
    elif isinstance(data, BinaryData):
        return _checked(bytes(data.data), limit)
    else:
        return None
    try:
        text = _dumps(obj)
    except ValueError:  # NaN / inf: fall back to JSON's lenient form as null-safe strings
        text = json.dumps(obj, separators=(",", ":"), default=_default)
    return _checked(text, limit)


def encode_error(message: str, error_type: str = "TransportError", node: str | None = None) -> str:
    """A transport-level ``error`` message."""
    return _dumps(_envelope("error", node, None, message=message, error_type=error_type))


def encode_metrics(value: dict[str, Any], *, limit: int = MAX_MESSAGE_BYTES) -> str:
    """A ``metrics`` message."""
    text = _dumps(_envelope("metrics", None, None, value=value))
    _checked(text, limit)
    return text


def decode_message(message: str | bytes) -> RuntimeData:
    """The pipeline input for one received data-channel message (see the module docstring)."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return BinaryData(bytes(message))
    try:
        value = json.loads(message)
    except ValueError:
        return TextData(message)
    except RecursionError:
        raise UndecodableMessage("message is JSON nested too deeply to decode") from None
    if isinstance(value, dict):
        kind = value.get("type")
        if kind == "text" and isinstance(value.get("text"), str):
            channel = value.get("channel")
            return TextData(value["text"], channel=channel if isinstance(channel, str) else "tts")
        if kind == "json" and "value" in value:
            return JsonData(value["value"])
        return JsonData(value)
    if isinstance(value, list):
        return JsonData(value)
    return TextData(message)
