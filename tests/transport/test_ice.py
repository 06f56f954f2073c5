"""IceConfig: RTCConfiguration mapping, loopback-only candidates, bounded gathering."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.ice import prepare_peer_connection, rtc_configuration

pytestmark = pytest.mark.timeout(30)


def test_configuration_mapping_and_fresh_credentials() -> None:
    calls = []

    def creds() -> dict[str, str]:
        calls.append(1)
        return {"username": f"u{len(calls)}", "credential": "p"}

    cfg = IceConfig(
        ice_servers=[{"urls": "stun:stun.example.org"}, {"urls": ["turns:turn.example.org:443?transport=tcp"]}],
        browser_ice_servers=[{"urls": "turn:turn.example.org:3478", "username": "x", "credential": "y"}],
        credentials=creds,
    )
    rtc = rtc_configuration(cfg)
    assert [s.urls for s in rtc.iceServers] == ["stun:stun.example.org", ["turns:turn.example.org:443?transport=tcp"]]
    assert rtc.iceServers[1].username == "u1" and rtc.iceServers[0].username is None
    assert cfg.browser_servers()[0]["username"] == "u2"  # fresh credentials each time
    assert rtc_configuration(IceConfig(loopback_only=True, ice_servers=[{"urls": "stun:x"}])).iceServers == []
    assert rtc_configuration(IceConfig()).iceServers == []  # never None (= Google STUN in aiortc)


def test_relay_policy_reaches_aiortc() -> None:
    import aiortc

    cfg = IceConfig(ice_servers=[{"urls": "turn:turn.example.org", "username": "u", "credential": "p"}],
                    transport_policy="relay")
    assert rtc_configuration(cfg).iceTransportPolicy == aiortc.RTCIceTransportPolicy.RELAY
    assert rtc_configuration(IceConfig()).iceServers == []


def _candidate_hosts(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


def test_loopback_only_is_per_connection() -> None:
    async def scenario() -> tuple[set[str], set[str]]:
        ours = RTCPeerConnection(rtc_configuration(IceConfig(loopback_only=True)))
        other = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for pc in (ours, other):
            pc.addTransceiver("audio")
            pc.createDataChannel("d")
        prepare_peer_connection(ours, IceConfig(loopback_only=True))
        await ours.setLocalDescription(await ours.createOffer())
        await other.setLocalDescription(await other.createOffer())
        try:
            return _candidate_hosts(ours.localDescription.sdp), _candidate_hosts(other.localDescription.sdp)
        finally:
            await ours.close()
            await other.close()

    ours, other = asyncio.run(scenario())
    assert ours == {"127.0.0.1"}
    assert "127.0.0.1" not in other  # the untouched connection keeps aioice's normal gathering


def test_unreachable_stun_is_bounded_by_gather_timeout() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a STUN "server" that never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]

    async def scenario() -> float:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(f"stun:127.0.0.1:{port}")]))
        pc.addTransceiver("audio")
        prepare_peer_connection(pc, IceConfig(loopback_only=True, gather_timeout_s=0.4))
        started = time.monotonic()
        await pc.setLocalDescription(await pc.createOffer())
        elapsed = time.monotonic() - started
        await pc.close()
        return elapsed

    try:
        elapsed = asyncio.run(scenario())
    finally:
        silent.close()
    assert elapsed < 1.5, elapsed  # aioice alone waits 5 s


def test_a_host_with_only_loopback_still_connects_without_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice leaves 127.0.0.1 out of its host addresses: on a machine whose only interface is lo (the test
    namespace), two default-configured peers must still gather 127.0.0.1 and connect."""
    import aioice.ice

    if aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True):  # run outside `unshare -n`: act as if lo-only
        monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [])

    async def scenario() -> tuple[set[str], set[str], str]:
        a, b = RTCPeerConnection(rtc_configuration(IceConfig())), RTCPeerConnection(rtc_configuration(IceConfig()))
        opened = asyncio.Event()
        channel = a.createDataChannel("d")
        channel.on("open", opened.set)
        try:
            prepare_peer_connection(a, IceConfig())
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            prepare_peer_connection(b, IceConfig())
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
            await asyncio.wait_for(opened.wait(), 10)
            return (_candidate_hosts(a.localDescription.sdp), _candidate_hosts(b.localDescription.sdp),
                    a.connectionState)
        finally:
            await a.close()
            await b.close()

    hosts_a, hosts_b, state = asyncio.run(scenario())
    assert hosts_a == {"127.0.0.1"} and hosts_b == {"127.0.0.1"}
    assert state == "connected"


def test_relay_only_gathers_no_loopback_host_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [])

    async def scenario() -> set[str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio")
        prepare_peer_connection(pc, IceConfig(transport_policy="relay"))
        await pc.setLocalDescription(await pc.createOffer())
        try:
            return _candidate_hosts(pc.localDescription.sdp)
        finally:
            await pc.close()

    assert asyncio.run(scenario()) == set()
