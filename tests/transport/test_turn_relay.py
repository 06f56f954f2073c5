"""Media through a real TURN relay: coturn on 127.0.0.1 <-> ClientPeer (relay-only) <-> WebRTCServer.

The server peer offers only its 127.0.0.1 host candidate (``loopback_only``); the client is relay-only
(``IceConfig(transport_policy="relay")``), so the only way its audio can reach the server is through an
allocation on coturn: the selected pair must have a local ``relay`` candidate, the pipeline's levels
must come back, and coturn's log must show the allocation for our user. TURN over UDP, over TCP and
over TLS (``turns:``, self-signed certificate trusted through ``SSL_CERT_FILE``) are covered; a
``turns:`` server whose certificate is not trusted gives no relay candidate (aiortc verifies it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from remotemedia_nbrtc.errors import ConnectTimeout
from remotemedia_nbrtc.standalone.server import WebRTCServer
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.sources import ToneSource
from tests.transport._peer_helpers import start_server
from tests.turnserver import TurnServer, start_turnserver

pytestmark = pytest.mark.timeout(60)

LEVEL = {"version": "v1", "metadata": {"name": "t"}, "connections": [],
         "nodes": [{"id": "lvl", "node_type": "AudioLevelNode", "params": {}}]}


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    server = start_turnserver(tmp_path_factory.mktemp("turn"))
    try:
        yield server
    finally:
        server.stop()
        assert server.proc.returncode is not None


@pytest.fixture
async def level_server() -> AsyncIterator[WebRTCServer]:
    server = await start_server(LEVEL)
    yield server
    await server.stop()


def selected_pairs(client: ClientPeer) -> list[Any]:
    """aioice's nominated candidate pairs of the client's ICE transports (one per transport; BUNDLE: one)."""
    pc = client._pc
    assert pc is not None
    transports = {id(t.sender.transport.transport): t.sender.transport.transport for t in pc.getTransceivers()}
    pairs = []
    for ice in transports.values():
        pairs.extend(ice._connection._nominated.values())
    return pairs


async def levels_flow(client: ClientPeer, n: int = 25) -> list[float]:
    peaks = []
    while len(peaks) < n:
        msg = await client.next_output(timeout=5)
        assert msg is not None, "the connection closed before the levels came back"
        if msg.get("type") == "json" and msg.get("node") == "lvl":
            peaks.append(msg["value"]["peak_dbfs"])
    return peaks


async def wait_relayed(turn: TurnServer, log_start: int, port: int, timeout: float = 5.0) -> int:
    """Peer packets coturn relayed for our user in sessions on listener ``port`` (logged at session end)."""
    deadline = asyncio.get_running_loop().time() + timeout
    best = 0
    while True:
        log = turn.log_text()[log_start:]
        on_port = set(re.findall(rf"session (\d+): closed .*user <{turn.username}>.* local 127\.0\.0\.1:{port},", log))
        for sid, rp in re.findall(
            rf"session (\d+): peer usage: realm=<[^>]*>, username=<{turn.username}>, rp=(\d+)", log
        ):
            if sid in on_port:
                best = max(best, int(rp))
        if best >= 50 or asyncio.get_running_loop().time() > deadline:
            return best
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(("scheme", "transport"), [("turn", "udp"), ("turn", "tcp"), ("turns", "tcp")])
async def test_audio_flows_through_the_turn_relay(
    turn: TurnServer, level_server: WebRTCServer, monkeypatch: pytest.MonkeyPatch, scheme: str, transport: str
) -> None:
    if scheme == "turns":
        # aiortc verifies the TURN server's certificate with the default context: trust our self-signed one
        monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert))
    ice = IceConfig(ice_servers=[turn.ice_server(scheme, transport)], transport_policy="relay", gather_timeout_s=3)
    log_start = len(turn.log_text())
    client = await ClientPeer.connect(level_server.url, audio=ToneSource(440.0, amplitude=0.5), ice=ice, timeout_s=15)
    try:
        offer_candidates = re.findall(
            r"a=candidate:\S+ \d \w+ \d+ (\S+) \d+ typ (\w+)", client._pc.localDescription.sdp
        )
        assert offer_candidates and all(typ == "relay" for _, typ in offer_candidates), offer_candidates
        pairs = selected_pairs(client)
        assert pairs, "no nominated candidate pair"
        for pair in pairs:
            assert pair.local_candidate.type == "relay", pair
            assert pair.local_candidate.host == "127.0.0.1", pair
            assert pair.remote_candidate.type == "host" and pair.remote_candidate.host == "127.0.0.1", pair
        peaks = await levels_flow(client)
        assert max(peaks) > -12, peaks  # a 0.5-amplitude tone: about -6 dBFS
        assert client.stats()["connection_state"] == "connected"
    finally:
        await client.close()
    # coturn relayed the media: a session of our user, on the listener we asked for, moved peer packets
    port = turn.tls_port if scheme == "turns" else turn.port
    relayed = await wait_relayed(turn, log_start, port)
    assert relayed >= 50, turn.log_text()[log_start:][-3000:]

async def test_turns_with_an_untrusted_certificate_gives_no_relay_candidate(
    turn: TurnServer, level_server: WebRTCServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))  # system CAs only: self-signed fails
    ice = IceConfig(ice_servers=[turn.ice_server("turns", "tcp")], transport_policy="relay", gather_timeout_s=2)
    with pytest.raises(ConnectTimeout):
        await ClientPeer.connect(level_server.url, audio=ToneSource(440.0), ice=ice, timeout_s=6)
