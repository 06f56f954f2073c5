"""The data channel(s) of one peer: decode incoming messages, send outputs, queue until open.

The browser opens the channel (any label); the server uses the most recently opened one for
outputs. Messages sent before any channel is open are queued (at most ``queue_limit``; beyond that
the oldest is dropped and counted in ``dropped``) and flushed in order on ``open``. Outputs larger
than :data:`~remotemedia_nbrtc.protocol.datachannel.MAX_MESSAGE_BYTES` are replaced by an ``error``
message and counted in ``too_large``.

Wire format, per channel: our JSON (:mod:`.wire`) by default; RemoteMedia's protobuf ``DataBuffer``
(:mod:`.databuffer`) when the client asks for it with the channel protocol ``remotemedia.databuffer``, or on
upstream's label ``pipeline-data`` once the first binary message parses as a DataBuffer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel

from ..protocol.datachannel import MAX_MESSAGE_BYTES
from ..runtime import RuntimeData
from ..runtime.queues import DropOldest
from .databuffer import DataBufferError, decode_databuffer, encode_databuffer, wants_databuffer
from .wire import (
    MessageTooLarge,
    _checked,
    decode_message,
    encode_error,
    encode_metrics,
    encode_output,
)

__all__ = ["DataChannelLink"]

log = logging.getLogger(__name__)


class DataChannelLink:
    """Owns the peer's data channels; call everything on the RTC loop."""

    def __init__(self, on_input: Callable[[RuntimeData], None], *, queue_limit: int = 256) -> None:
        self._on_input = on_input
        self._queue: DropOldest[str | bytes] = DropOldest(queue_limit)
        self._channels: list[RTCDataChannel] = []
        #: per channel: True = DataBuffer, False = JSON, None = decided by the first message
        self._databuffer: dict[int, bool | None] = {}
        self.messages_in = 0
        self.messages_out = 0
        self.too_large = 0
        self.send_errors = 0
        self.undecodable = 0

    @property
    def open_channel(self) -> RTCDataChannel | None:
        for channel in reversed(self._channels):
            if channel.readyState == "open":
                return channel
        return None

    def attach(self, channel: RTCDataChannel) -> None:
        """Adopt a channel announced by the remote peer (``datachannel`` event)."""
        self._channels.append(channel)
        key = id(channel)
        self._databuffer[key] = wants_databuffer(
            getattr(channel, "label", "") or "", getattr(channel, "protocol", "") or ""
        )

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            self.messages_in += 1
            mode = self._databuffer.get(key)
            binary = isinstance(message, (bytes, bytearray, memoryview))
            try:
                if mode is None:  # upstream's label: a DataBuffer client sends binary protobuf
                    try:
                        data = decode_databuffer(message) if binary else None
                    except DataBufferError:
                        data = None
                    self._databuffer[key] = mode = data is not None
                    if data is not None:
                        log.info("data channel %r speaks protobuf DataBuffer", channel.label)
                        self._on_input(data)
                        return
                data = decode_databuffer(message) if mode else decode_message(message)
            except Exception as exc:  # UndecodableMessage, DataBufferError, too deep to decode, ...
                # bad input from the client: answer it like other errors, one log line, no traceback
                self.undecodable += 1
                log.warning("undecodable data-channel message: %s", exc)
                self.send(encode_error(str(exc) or "message cannot be decoded", "UndecodableMessage"))
                return
            self._on_input(data)

        @channel.on("open")
        def on_open() -> None:
            self._flush()

        @channel.on("close")
        def on_close() -> None:
            if channel in self._channels:
                self._channels.remove(channel)
            self._databuffer.pop(key, None)

        if channel.readyState == "open":
            self._flush()

    def send_output(self, data: RuntimeData, node: str | None = None) -> bool:
        """Send a pipeline output if its kind goes on the data channel; False if it does not."""
        if self.speaks_databuffer:
            try:
                encoded = encode_databuffer(data)
                if encoded is None:
                    return False
                self.send(_checked(encoded, MAX_MESSAGE_BYTES))
            except MessageTooLarge as exc:
                self.too_large += 1
                log.warning("DataBuffer output dropped: %s", exc)
            return True
        try:
            message = encode_output(data, node)
        except MessageTooLarge as exc:
            self.too_large += 1
            message = encode_error(str(exc), "MessageTooLarge", node)
        if message is None:
            return False
        self.send(message)
        return True

    @property
    def speaks_databuffer(self) -> bool:
        """True when the newest channel carries protobuf DataBuffer messages."""
        return bool(self._channels) and self._databuffer.get(id(self._channels[-1])) is True

    def send_metrics(self, value: dict[str, Any]) -> None:
        if self.speaks_databuffer:  # our metrics envelope is not part of upstream's protocol
            return
        try:
            self.send(encode_metrics(value))
        except MessageTooLarge as exc:
            self.too_large += 1
            self.send(encode_error(str(exc), "MessageTooLarge"))

    def send(self, message: str | bytes) -> None:
        """Send now if a channel is open, else queue (bounded)."""
        channel = self.open_channel
        if channel is not None and not self._queue:
            self._send_on(channel, message)
            return
        self._queue.push(message)
        if channel is not None:
            self._flush()

    def _send_on(self, channel: RTCDataChannel, message: str | bytes) -> bool:
        try:
            channel.send(message)
        except Exception as exc:  # InvalidStateError, ValueError (remote size limit)
            self.send_errors += 1
            log.debug("data-channel send failed: %r", exc)
            return False
        self.messages_out += 1
        return True

    def _flush(self) -> None:
        channel = self.open_channel
        while channel is not None and self._queue:
            self._send_on(channel, self._queue.popleft())

    @property
    def dropped(self) -> int:
        """Messages dropped from the full send queue (no channel open yet)."""
        return self._queue.drops

    @property
    def queued(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        for channel in list(self._channels):
            try:
                channel.close()
            except Exception:
                pass
        self._channels.clear()
        self._queue.clear()
