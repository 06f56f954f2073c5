"""RemoteMedia's protobuf DataBuffer on the data channel: JSON stays the default; a client on upstream's
``pipeline-data`` label that sends DataBuffer, or one that asks with the channel protocol, gets DataBuffer back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from remotemedia_nbrtc import AudioData, BinaryData, JsonData, TextData
from remotemedia_nbrtc.protocol.datachannel import DATABUFFER_PROTOCOL
from remotemedia_nbrtc.transport.databuffer import (
    decode_databuffer,
    encode_databuffer,
    message_classes,
)
from remotemedia_nbrtc.transport.loop_thread import LoopThread
from tests.transport._peer_helpers import Client
from tests.transport.test_peer import connect, manifest

DataBuffer = message_classes()["DataBuffer"]


def test_round_trips_and_the_wire_fields() -> None:
    assert decode_databuffer(encode_databuffer(JsonData({"a": [1, 2]}))).value == {"a": [1, 2]}
    text = decode_databuffer(encode_databuffer(TextData("hi", channel="ui")))
    assert (text.text, text.channel) == ("hi", "ui")
    assert decode_databuffer(encode_databuffer(BinaryData(b"\x00\x01", mime_type="x/y"))).data == b"\x00\x01"
    samples = np.linspace(-1, 1, 960, dtype=np.float32).reshape(-1, 1)
    msg = DataBuffer.FromString(encode_databuffer(AudioData(samples, 48000)))
    assert msg.WhichOneof("data_type") == "audio" and msg.audio.sample_rate == 48000 and msg.audio.format == 1
    assert np.array_equal(np.frombuffer(msg.audio.samples, "<f4"), samples[:, 0]) and msg.audio.num_samples == 960
    audio = decode_databuffer(msg.SerializeToString())
    assert isinstance(audio, AudioData) and np.array_equal(audio.samples, samples)


def text_buffer(text: str) -> bytes:
    msg = DataBuffer()
    msg.text.text_data = text.encode()
    msg.text.encoding = "utf-8"
    return bytes(msg.SerializeToString())


async def echo_round_trip(client: Client | None, send: bytes | str, n: int = 1) -> list[Any]:
    client = client or Client()  # made on the RTC loop (aiortc needs a running loop)
    peer, _ = await connect(manifest(("echo", "Echo", {})), client)
    try:
        await client.wait_for(lambda: client.channel.readyState == "open", 10)
        client.channel.send(send)
        await client.wait_for(lambda: len(client.messages) >= n, 10)
        return list(client.messages)
    finally:
        await client.close()
        await peer.close()


def test_upstream_label_with_a_databuffer_client_gets_databuffer_back(rtc: LoopThread) -> None:
    messages = rtc.run(echo_round_trip(None, text_buffer("hello upstream")), timeout=30)
    assert isinstance(messages[0], bytes), messages
    reply = DataBuffer.FromString(messages[0])
    assert reply.WhichOneof("data_type") == "text" and reply.text.text_data == b"hello upstream"


def test_json_stays_the_default_on_the_same_label(rtc: LoopThread) -> None:
    messages = rtc.run(echo_round_trip(None, json.dumps({"type": "text", "text": "hi"})), timeout=30)
    assert json.loads(messages[0])["text"] == "hi"


def test_a_client_asking_with_the_channel_protocol_gets_databuffer(rtc: LoopThread) -> None:
    async def scenario() -> list[Any]:
        client = Client(datachannel=False)
        client.channel = client.pc.createDataChannel("data", protocol=DATABUFFER_PROTOCOL)

        @client.channel.on("message")
        def on_message(message: Any) -> None:
            client.messages.append(message)
            client.message_event.set()

        payload = DataBuffer()
        payload.json.json_payload = json.dumps({"kind": "asked"})
        return await echo_round_trip(client, bytes(payload.SerializeToString()))

    messages = rtc.run(scenario(), timeout=30)
    reply = DataBuffer.FromString(messages[0])
    assert reply.WhichOneof("data_type") == "json" and json.loads(reply.json.json_payload) == {"kind": "asked"}
