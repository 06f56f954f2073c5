"""RemoteMedia's protobuf ``DataBuffer`` (upstream ``proto/common.proto``) for the data channel.

The message types are built from descriptors at import time (no ``protoc``, no generated code). Covered:
``audio=1`` (AudioBuffer), ``json=4`` (JsonData), ``text=5`` (TextBuffer), ``binary=6`` (BinaryBuffer) and the
``metadata`` map (10). Inner field numbers follow the order of the fields in upstream's messages:
``AudioBuffer{samples=1 (LE f32), sample_rate=2, channels=3, format=4, num_samples=5, metadata_json=6}``,
``JsonData{json_payload=1, schema_type=2}``, ``TextBuffer{text_data=1, encoding=2, language=3, channel=4}``,
``BinaryBuffer{data=1, mime_type=2}``. Other kinds (video, tensor, control, ...) are rejected with a clear error.

Which format a channel speaks is negotiated per channel (:func:`wants_databuffer`): a client asks for
DataBuffer with the channel ``protocol`` ``remotemedia.databuffer``; on upstream's label ``pipeline-data``
without a protocol, the first binary message that parses as a DataBuffer switches the channel to it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..protocol.datachannel import DATA_CHANNEL_LABEL, DATABUFFER_PROTOCOL
from ..runtime import AudioData, BinaryData, JsonData, RuntimeData, TextData

__all__ = ["DataBufferError", "decode_databuffer", "encode_databuffer",
           "message_classes", "wants_databuffer"]

AUDIO_F32 = 1

_F = descriptor_pb2.FieldDescriptorProto


class DataBufferError(ValueError):
    """A message is not a DataBuffer this side can map to pipeline data."""


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="remotemedia_nbrtc/common.proto", package="remotemedia.v1",
                                           syntax="proto3")

    def msg(name: str, fields: list[tuple[str, int, int]], *, oneof: str | None = None,
            types: dict[str, str] | None = None) -> descriptor_pb2.DescriptorProto:
        m = f.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for fname, number, ftype in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
            if types and fname in types:
                fd.type_name = types[fname]
                if oneof:
                    fd.oneof_index = 0
        return m

    msg("AudioBuffer", [("samples", 1, _F.TYPE_BYTES), ("sample_rate", 2, _F.TYPE_UINT32),
                        ("channels", 3, _F.TYPE_UINT32), ("format", 4, _F.TYPE_INT32),
                        ("num_samples", 5, _F.TYPE_UINT64), ("metadata_json", 6, _F.TYPE_STRING)])
    msg("JsonData", [("json_payload", 1, _F.TYPE_STRING), ("schema_type", 2, _F.TYPE_STRING)])
    msg("TextBuffer", [("text_data", 1, _F.TYPE_BYTES), ("encoding", 2, _F.TYPE_STRING),
                       ("language", 3, _F.TYPE_STRING), ("channel", 4, _F.TYPE_STRING)])
    msg("BinaryBuffer", [("data", 1, _F.TYPE_BYTES), ("mime_type", 2, _F.TYPE_STRING)])
    db = msg("DataBuffer", [("audio", 1, _F.TYPE_MESSAGE), ("json", 4, _F.TYPE_MESSAGE),
                            ("text", 5, _F.TYPE_MESSAGE), ("binary", 6, _F.TYPE_MESSAGE)], oneof="data_type",
             types={"audio": ".remotemedia.v1.AudioBuffer", "json": ".remotemedia.v1.JsonData",
                    "text": ".remotemedia.v1.TextBuffer", "binary": ".remotemedia.v1.BinaryBuffer"})
    entry = db.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    db.field.add(name="metadata", number=10, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                 type_name=".remotemedia.v1.DataBuffer.MetadataEntry")
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
# classes built at run time from the descriptor above: their fields are unknown to a type checker
_CLASSES: dict[str, Any] = {name: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"remotemedia.v1.{name}"))
            for name in ("DataBuffer", "AudioBuffer", "JsonData", "TextBuffer", "BinaryBuffer")}
DataBuffer = _CLASSES["DataBuffer"]


def message_classes() -> dict[str, Any]:
    """The generated message classes by name (for clients and tests that speak DataBuffer)."""
    return dict(_CLASSES)


def wants_databuffer(label: str, protocol: str) -> bool | None:
    """True: DataBuffer from the start; None: decide on the first message (upstream's label); False: JSON."""
    if protocol == DATABUFFER_PROTOCOL:
        return True
    if label == DATA_CHANNEL_LABEL and not protocol:
        return None
    return False


def encode_databuffer(data: RuntimeData) -> bytes | None:
    """A serialized DataBuffer for a pipeline output; None for kinds not carried (e.g. video)."""
    msg = DataBuffer()
    if isinstance(data, JsonData):
        msg.json.json_payload = json.dumps(data.value, default=_default)
    elif isinstance(data, TextData):
        msg.text.text_data = data.text.encode("utf-8")
        msg.text.encoding = "utf-8"
        msg.text.channel = data.channel
    elif isinstance(data, BinaryData):
        msg.binary.data = bytes(data.data)
        msg.binary.mime_type = data.mime_type
    elif isinstance(data, AudioData):
        samples = np.ascontiguousarray(data.samples, dtype="<f4")
        msg.audio.samples = samples.tobytes()
        msg.audio.sample_rate = data.sample_rate
        msg.audio.channels = samples.shape[1] if samples.ndim == 2 else 1
        msg.audio.format = AUDIO_F32
        msg.audio.num_samples = samples.shape[0]
    else:
        return None
    if getattr(data, "stream_id", None):
        msg.metadata["stream_id"] = str(data.stream_id)
    return bytes(msg.SerializeToString())


def decode_databuffer(message: bytes | str) -> RuntimeData:
    """Pipeline data for one DataBuffer; :class:`DataBufferError` if it is not one we can map."""
    if isinstance(message, str):
        raise DataBufferError("not a DataBuffer: a text message (DataBuffers are binary)")
    msg = DataBuffer()
    try:
        msg.ParseFromString(bytes(message))
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise DataBufferError(f"not a DataBuffer: {exc}") from exc
    kind = msg.WhichOneof("data_type")
    meta = dict(msg.metadata)
    if kind == "json":
        try:
            return JsonData(json.loads(msg.json.json_payload), metadata=meta)
        except ValueError as exc:
            raise DataBufferError(f"DataBuffer.json is not JSON: {exc}") from exc
    if kind == "text":
        return TextData(msg.text.text_data.decode(msg.text.encoding or "utf-8", "replace"),
                        channel=msg.text.channel or "tts", metadata=meta)
    if kind == "binary":
        return BinaryData(bytes(msg.binary.data), mime_type=msg.binary.mime_type or "application/octet-stream",
                          metadata=meta)
    if kind == "audio":
        a = msg.audio
        if a.format not in (0, AUDIO_F32):
            raise DataBufferError(f"DataBuffer.audio format {a.format}: only F32 (1) is supported")
        channels = max(1, a.channels)
        samples = np.frombuffer(a.samples, dtype="<f4").astype(np.float32)
        if samples.size % channels:
            raise DataBufferError(f"DataBuffer.audio: {samples.size} samples do not split into {channels} channels")
        if not a.sample_rate:
            raise DataBufferError("DataBuffer.audio has no sample_rate")
        return AudioData(samples.reshape(-1, channels), int(a.sample_rate), metadata=meta)
    raise DataBufferError(f"DataBuffer kind {kind!r} is not supported on this data channel")


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)
