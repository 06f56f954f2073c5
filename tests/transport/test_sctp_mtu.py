"""Data-channel packets fit a 1280-byte path MTU (the IPv6 minimum), even for large messages.

A 60 KB output and a 60 KB input cross a real loopback connection; every SCTP packet handed to DTLS is
measured. With DTLS 1.2 AES-GCM (37 bytes), UDP (8) and IPv6 (40) around it, the datagram must stay
within 1280 bytes. aiortc before 1.16 used 1200-byte DATA chunks and broke this."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport

from remotemedia_nbrtc.runtime import Node, RuntimeData, TextData
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer

from ._peer_helpers import LOOPBACK, start_server

pytestmark = pytest.mark.timeout(30)

IPV6_MIN_MTU = 1280
OVERHEAD = 37 + 8 + 40  # DTLS 1.2 record with AES-GCM, UDP, IPv6


class Enlarge(Node, register=False):
    node_type = "TestEnlarge"

    def process(self, data: RuntimeData) -> Any:
        if isinstance(data, TextData):
            return TextData(data.text * 2)
        return None


async def test_large_data_channel_messages_fit_the_ipv6_minimum_mtu(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = RTCDtlsTransport._send_data

    async def measured(self: RTCDtlsTransport, data: bytes) -> None:
        sizes.append(len(data))
        await real(self, data)

    monkeypatch.setattr(RTCDtlsTransport, "_send_data", measured)  # test-only, both peers are in-process
    from remotemedia_nbrtc.runtime import Pipeline

    p = Pipeline("enlarge")
    p.add("big", Enlarge())
    server = await start_server(p)
    client = await ClientPeer.connect(server.url, ice=LOOPBACK)
    try:
        text = "x" * 30_000
        await client.send_text(text)
        out = await client.next_output(timeout=10)
        assert out is not None and out["type"] == "text" and len(out["text"]) == 60_000
        assert len(json.dumps(out)) > 60_000
    finally:
        await client.close()
        await server.stop()
    assert sum(sizes) > 90_000  # both messages were really carried in many packets
    assert max(sizes) + OVERHEAD <= IPV6_MIN_MTU, max(sizes)
