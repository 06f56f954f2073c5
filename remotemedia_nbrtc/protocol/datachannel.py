"""The WebRTC data channels: their labels and channel protocols, and the message format on them.

``DATA_CHANNEL_LABEL`` (the browser opens it; the server takes any label) carries pipeline data, JSON
text unless noted (encoded and decoded by ``transport.wire``; RemoteMedia's protobuf ``DataBuffer``
instead when the channel's protocol is ``DATABUFFER_PROTOCOL``, see ``transport.databuffer``).

Client -> server:

- a text message holding a JSON object ``{"type": "text", "text": str, "channel"?: str}`` -> ``TextData``
- ``{"type": "json", "value": any}`` -> ``JsonData(value)``
- any other JSON object or array -> ``JsonData`` of the whole value
- anything else (plain text, or a bare JSON scalar such as ``hello`` or ``42``) -> ``TextData`` of the
  message as sent
- a binary message -> ``BinaryData(bytes)``

Server -> client (compact JSON, one object per message). Every object has ``type`` and ``ts_us``
(server wall clock, microseconds since the Unix epoch, when the message was encoded); ``node`` names the
producing node and ``media_ts_us`` carries the data's own ``timestamp_us`` when they are known:

- ``{"type": "text", "text": str, "channel": str, ...}`` from ``TextData``
- ``{"type": "json", "value": any, ...}`` from ``JsonData`` (numpy values become lists / numbers)
- ``{"type": "error", "message": str, "error_type": str, "node"?: str, ...}`` from ``ErrorData``, and
  for transport-level errors (e.g. an output too large to send)
- ``{"type": "metrics", "value": {...}, ...}``
- ``BinaryData`` is sent as a binary message, as is.

Size: aiortc refuses messages above the peer's SCTP max-message-size (RFC 8841 default 64 KiB;
browsers usually allow 256 KiB). :data:`MAX_MESSAGE_BYTES` is the limit we enforce: a larger output is
replaced by a small ``error`` message and counted (no splitting, so every message stays one
self-contained JSON object).

``DC_AUDIO_LABEL`` (unordered, no retransmits; ``audio_transport="datachannel"``) carries pcm16 audio
both ways, one ``media_frames`` frame per message; its channel protocol is ``pcm16/<rate>[/<out_rate>]``
(parsed by ``transport.dcaudio``).
"""

from __future__ import annotations

__all__ = ["DATABUFFER_PROTOCOL", "DATA_CHANNEL_LABEL", "DC_AUDIO_LABEL", "MAX_MESSAGE_BYTES"]

#: The pipeline-data channel's label (upstream's; there a binary message is tried as a DataBuffer first).
DATA_CHANNEL_LABEL = "pipeline-data"
#: ``RTCDataChannel.protocol`` a client sets to get protobuf DataBuffer messages both ways.
DATABUFFER_PROTOCOL = "remotemedia.databuffer"
#: The unreliable data channel that carries pcm16 audio frames (``audio_transport="datachannel"``).
DC_AUDIO_LABEL = "rm-audio"
#: The largest data-channel message we send (the SCTP default max-message-size).
MAX_MESSAGE_BYTES = 65536
