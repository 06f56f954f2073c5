"""Data-channel message format (protocol.datachannel, encoded by transport.wire) and the queueing link."""

from __future__ import annotations

import json

import numpy as np
import pytest

from remotemedia_nbrtc.protocol.datachannel import MAX_MESSAGE_BYTES
from remotemedia_nbrtc.runtime import AudioData, BinaryData, ErrorData, JsonData, TextData
from remotemedia_nbrtc.transport.datachannel import DataChannelLink
from remotemedia_nbrtc.transport.wire import (
    MessageTooLarge,
    decode_message,
    encode_metrics,
    encode_output,
)


@pytest.mark.parametrize(
    "message, kind, attr, expected",
    [
        ('{"type":"text","text":"hi"}', TextData, "text", "hi"),
        ('{"type":"json","value":[1,2]}', JsonData, "value", [1, 2]),
        ('{"other":1}', JsonData, "value", {"other": 1}),
        ("[1, 2]", JsonData, "value", [1, 2]),
        ("just words", TextData, "text", "just words"),
        ("42", TextData, "text", "42"),
        ('"quoted"', TextData, "text", '"quoted"'),
        (b"\x00\x01", BinaryData, "data", b"\x00\x01"),
    ],
)
def test_decode(message: str | bytes, kind: type, attr: str, expected: object) -> None:
    data = decode_message(message)
    assert isinstance(data, kind)
    assert getattr(data, attr) == expected


def test_decode_text_channel() -> None:
    data = decode_message('{"type":"text","text":"x","channel":"ui"}')
    assert isinstance(data, TextData) and data.channel == "ui"


def test_encode_outputs() -> None:
    text = json.loads(encode_output(TextData("hello", channel="ui", timestamp_us=5), "stt"))  # type: ignore[arg-type]
    assert text["type"] == "text" and text["text"] == "hello" and text["channel"] == "ui"
    assert text["node"] == "stt" and text["media_ts_us"] == 5 and isinstance(text["ts_us"], int)
    js = json.loads(encode_output(JsonData({"a": np.float32(1.5), "b": np.arange(3)})))  # type: ignore[arg-type]
    assert js["type"] == "json" and js["value"] == {"a": 1.5, "b": [0, 1, 2]}
    err = json.loads(encode_output(ErrorData("n1", "bad", "ValueError")))  # type: ignore[arg-type]
    assert err["type"] == "error" and err["node"] == "n1" and err["error_type"] == "ValueError"
    assert encode_output(BinaryData(b"abc")) == b"abc"
    assert encode_output(AudioData(np.zeros(10, np.float32), 16000)) is None
    met = json.loads(encode_metrics({"x": 1}))
    assert met["type"] == "metrics" and met["value"] == {"x": 1}
    assert " " not in encode_metrics({"x": [1, 2]})  # compact


def test_too_large_is_rejected() -> None:
    with pytest.raises(MessageTooLarge):
        encode_output(TextData("x" * (MAX_MESSAGE_BYTES + 1)))


class FakeChannel:
    """Below the layer under test: records sends, emulates readyState and events."""

    def __init__(self) -> None:
        self.readyState = "connecting"
        self.sent: list[object] = []
        self.handlers: dict[str, object] = {}

    def on(self, event: str):  # type: ignore[no-untyped-def]
        def register(fn):  # type: ignore[no-untyped-def]
            self.handlers[event] = fn
            return fn

        return register

    def send(self, message: object) -> None:
        assert self.readyState == "open"
        self.sent.append(message)

    def close(self) -> None:
        self.readyState = "closed"


def test_link_queues_until_open_and_bounds_queue() -> None:
    inputs: list[object] = []
    link = DataChannelLink(inputs.append, queue_limit=3)
    for i in range(5):
        link.send_output(TextData(f"m{i}"))
    assert link.queued == 3 and link.dropped == 2
    channel = FakeChannel()
    link.attach(channel)  # type: ignore[arg-type]
    assert channel.sent == []
    channel.readyState = "open"
    channel.handlers["open"]()  # type: ignore[operator]
    assert [json.loads(m)["text"] for m in channel.sent] == ["m2", "m3", "m4"]  # type: ignore[arg-type]
    link.send_output(TextData("y" * (MAX_MESSAGE_BYTES + 10)))
    assert link.too_large == 1 and json.loads(channel.sent[-1])["error_type"] == "MessageTooLarge"  # type: ignore[arg-type]
    channel.handlers["message"]('{"type":"json","value":7}')  # type: ignore[operator]
    assert isinstance(inputs[0], JsonData) and inputs[0].value == 7


def test_deeply_nested_message_is_refused_with_a_reply_not_dropped():
    import pytest

    from remotemedia_nbrtc.transport.datachannel import DataChannelLink
    from remotemedia_nbrtc.transport.wire import UndecodableMessage

    deep = "[" * 50_000 + "]" * 50_000
    with pytest.raises(UndecodableMessage):
        decode_message(deep)

    class Channel:  # the two aiortc RTCDataChannel members the link uses, to drive one layer
        readyState = "open"

        def __init__(self):
            self.handlers, self.sent = {}, []

        def on(self, event):
            return lambda fn: self.handlers.setdefault(event, fn)

        def send(self, message):
            self.sent.append(message)

    inputs = []
    link, channel = DataChannelLink(inputs.append), Channel()
    link.attach(channel)
    channel.handlers["message"](deep)
    assert inputs == [] and link.undecodable == 1
    reply = json.loads(channel.sent[-1])
    assert reply["type"] == "error" and reply["error_type"] == "UndecodableMessage" and "nested" in reply["message"]
