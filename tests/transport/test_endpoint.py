"""SignalingEndpoint: method semantics, ordering, candidate queueing, error codes.

The unit tests replace ServerPeer (the layer below) by a recording fake; the last tests use the real
ServerPeer and a real aiortc client peer over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import pytest

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.transport.endpoint import PeerRegistry, SignalingEndpoint
from tests.transport._signaling_cases import OVERSIZE_LIMIT, malformed_messages

pytestmark = pytest.mark.timeout(30)

FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    f"{FINGERPRINT}\r\n"
)
CAND = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
SERVER = "remotemedia-server"


class FakePeer:
    """Records calls; emits a candidate and a state change while handling the offer. A WebRTCPeer without a session."""

    instances: ClassVar[list[FakePeer]] = []
    transport_path = "webrtc"
    session = None

    def __init__(self, on_ice_candidate: Any, on_state_change: Any, fail: SignalingError | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.on_ice_candidate = on_ice_candidate
        self.on_state_change = on_state_change
        self.fail = fail
        self.closed = False
        self.session_id = f"s{len(FakePeer.instances)}"
        self.connection_state = "new"
        FakePeer.instances.append(self)

    async def handle_offer(self, sdp: str) -> str:
        self.calls.append(("offer", sdp))
        if self.fail is not None:
            raise self.fail
        self.on_ice_candidate({"candidate": CAND, "sdpMid": "0", "sdpMLineIndex": 0})
        self.on_ice_candidate(None)
        self.on_state_change("connecting")
        await asyncio.sleep(0)
        return "v=0\r\nanswer\r\nm=audio 9 x\r\n"

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        if not self.calls:
            raise AssertionError("candidate applied before the offer")
        self.calls.append(("candidate", candidate))

    async def close(self) -> None:
        self.closed = True


def make_endpoint(
    registry: PeerRegistry | None = None, fail: SignalingError | None = None, **kw: Any
) -> tuple[SignalingEndpoint, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    async def factory(
        pipeline: Any, config: Any, *, on_ice_candidate: Any, on_state_change: Any, runner: Any
    ) -> FakePeer:
        return FakePeer(on_ice_candidate, on_state_change, fail)

    ep = SignalingEndpoint(send, pipeline=None, peer_config=None, registry=registry, peer_factory=factory, **kw)
    return ep, sent


def req(method: str, params: dict[str, Any], rid: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})


def reply(sent: list[dict[str, Any]], rid: Any) -> dict[str, Any]:
    matches = [m for m in sent if m.get("id") == rid and "method" not in m]
    assert len(matches) == 1, sent
    return matches[0]


async def announce(ep: SignalingEndpoint, sent: list[dict[str, Any]], peer_id: str = "alice") -> None:
    await ep.handle_message(req("peer.announce", {"peer_id": peer_id, "capabilities": ["audio", "data"]}, "a"))
    assert reply(sent, "a")["result"]["success"] is True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_announce_must_come_first_and_duplicate_is_invalid_params() -> None:
    registry = PeerRegistry()
    ep, sent = make_endpoint(registry)
    await ep.handle_message(req("peer.list", {}, 1))
    assert reply(sent, 1)["error"]["code"] == -32600
    await ep.handle_message(req("control.subscribe", {"topic": "x.out"}, 2))
    assert reply(sent, 2)["error"]["code"] == -32600
    await announce(ep, sent)
    ep2, sent2 = make_endpoint(registry)
    await ep2.handle_message(req("peer.announce", {"peer_id": "alice"}, "dup"))
    assert reply(sent2, "dup")["error"]["code"] == -32602
    await ep2.handle_message(req("peer.announce", {"peer_id": "bob"}, "b"))
    result = reply(sent2, "b")["result"]
    assert result == {"success": True, "peer_id": "bob", "peers_count": 2, "other_peers": ["alice"]}
    await settle()
    assert any(m.get("method") == "peer.joined" and m["params"]["peer_id"] == "bob" for m in sent)
    await ep2.handle_message(req("list_peers", {}, "l"))
    assert reply(sent2, "l")["result"]["count"] == 2
    await ep2.close()
    await settle()
    assert any(m.get("method") == "peer.left" and m["params"]["peer_id"] == "bob" for m in sent)
    await ep.close()


async def test_session_limit_counts_live_sessions_not_announced_peers() -> None:
    registry = PeerRegistry(max_sessions=1)
    ep1, sent1 = make_endpoint(registry)
    ep2, sent2 = make_endpoint(registry)
    await announce(ep1, sent1, "one")
    await announce(ep2, sent2, "two")  # announcing takes no session slot
    await ep1.handle_message(req("peer.offer", {"from": "one", "to": SERVER, "sdp": SDP}, "o1"))
    assert reply(sent1, "o1")["result"]["type"] == "answer"
    await ep2.handle_message(req("peer.offer", {"from": "two", "to": SERVER, "sdp": SDP}, "o2"))
    assert reply(sent2, "o2")["error"]["code"] == -32001
    await ep1.close()
    await ep2.handle_message(req("peer.offer", {"from": "two", "to": SERVER, "sdp": SDP}, "o3"))
    assert reply(sent2, "o3")["result"]["type"] == "answer"
    await ep2.close()


async def test_idle_peers_limited_per_address_and_announces_per_connection() -> None:
    registry = PeerRegistry(max_sessions=1, max_idle_per_address=2)
    eps = [make_endpoint(registry, client_address="10.0.0.1") for _ in range(3)]
    for i, (ep, sent) in enumerate(eps[:2]):
        await announce(ep, sent, f"idle{i}")
    ep3, sent3 = eps[2]
    await ep3.handle_message(req("peer.announce", {"peer_id": "idle2"}, 1))
    assert reply(sent3, 1)["error"]["code"] == -32001
    other, sent_other = make_endpoint(registry, client_address="10.0.0.2")
    await announce(other, sent_other, "elsewhere")  # another address is not affected
    # a connection retrying announce (e.g. with taken ids) is cut off after max_announces attempts
    spam, sent_spam = make_endpoint(registry, client_address="10.0.0.3", max_announces=3)
    for i in range(4):
        await spam.handle_message(req("peer.announce", {"peer_id": "idle0"}, f"a{i}"))
    assert reply(sent_spam, "a3")["error"]["code"] == -32600
    await settle()
    assert spam.closed
    for ep, _ in [*eps, (other, None)]:
        await ep.close()


async def test_peer_that_never_offers_is_timed_out() -> None:
    closed = asyncio.Event()
    registry = PeerRegistry(max_sessions=1)
    ep, sent = make_endpoint(registry, offer_timeout_s=0.3, on_close=closed.set)
    await announce(ep, sent, "lazy")
    await asyncio.wait_for(closed.wait(), 5)
    assert ep.closed and len(registry) == 0
    assert any(m.get("error", {}).get("code") == -32006 for m in sent)
    # a peer that offers in time keeps its connection
    ep2, sent2 = make_endpoint(registry, offer_timeout_s=0.3)
    await announce(ep2, sent2, "quick")
    await ep2.handle_message(req("peer.offer", {"from": "quick", "to": SERVER, "sdp": SDP}, "o"))
    await asyncio.sleep(0.6)
    assert not ep2.closed
    await ep2.close()


async def test_candidates_before_offer_are_queued_then_applied_in_order() -> None:
    FakePeer.instances.clear()
    ep, sent = make_endpoint()
    await announce(ep, sent)
    c1 = {"from": "alice", "to": SERVER, "candidate": CAND, "sdp_mid": "0", "sdp_m_line_index": 0}
    c2 = {**c1, "candidate": CAND.replace("50000", "50001")}
    await ep.handle_message(req("peer.ice_candidate", c1, "c1"))
    await ep.handle_message(req("peer.ice_candidate", c2, "c2"))
    assert reply(sent, "c1")["result"] == {"success": True, "to_peer_id": SERVER, "buffered": True}
    await ep.handle_message(req("peer.offer", {"from": "ignored", "to": SERVER, "sdp": SDP}, "o"))
    answer = reply(sent, "o")["result"]
    assert answer == {"type": "answer", "sdp": "v=0\r\nanswer\r\nm=audio 9 x\r\n", "from": SERVER, "to": "alice"}
    peer = FakePeer.instances[-1]
    assert [c[1]["candidate"] for c in peer.calls[1:]] == [CAND, c2["candidate"]]
    # the server's candidates and state change were emitted during the offer but leave after the answer
    await settle()
    order = [m.get("method") or ("result" if m.get("id") == "o" else None) for m in sent]
    i_answer = order.index("result")
    cands = [m for m in sent if m.get("method") == "peer.ice_candidate"]
    assert order.index("peer.ice_candidate") > i_answer and order.index("peer.state_change") > i_answer
    assert cands[0]["params"] == {
        "from": SERVER,
        "to": "alice",
        "candidate": CAND,
        "sdp_mid": "0",
        "sdp_m_line_index": 0,
    }
    assert cands[1]["params"] == {
        "from": SERVER,
        "to": "alice",
        "candidate": "",
        "sdp_mid": None,
        "sdp_m_line_index": None,
    }
    state = next(m for m in sent if m.get("method") == "peer.state_change")["params"]
    assert state["peer_id"] == "alice" and state["connection_state"] == "connecting" and state["timestamp"] > 1e12
    # after the offer, candidates go straight to the peer; end-of-candidates becomes None
    await ep.handle_message(req("peer.ice_candidate", {"from": "alice", "to": SERVER, "candidate": ""}, "c3"))
    # an applied candidate is answered as upstream does: no `buffered` (upstream's buffered=false means dropped)
    assert reply(sent, "c3")["result"] == {"success": True, "to_peer_id": SERVER}
    assert peer.calls[-1] == ("candidate", None)
    await ep.close()
    assert peer.closed


async def test_new_offer_replaces_server_peer() -> None:
    FakePeer.instances.clear()
    ep, sent = make_endpoint()
    await announce(ep, sent)
    await ep.handle_message(req("peer.offer", {"from": "alice", "to": SERVER, "sdp": SDP}, 1))
    await ep.handle_message(req("peer.offer", {"from": "alice", "to": SERVER, "sdp": SDP}, 2))
    first, second = FakePeer.instances
    assert first.closed and not second.closed and ep.server_peer is second
    first.on_state_change("closed")  # late callbacks of the replaced peer are ignored
    await settle()
    assert not any(m.get("method") == "peer.state_change" and m["params"]["connection_state"] == "closed" for m in sent)
    await ep.handle_message(req("session.info", {}, 3))
    info = reply(sent, 3)["result"]
    assert info["session_id"] == second.session_id and info["limits"]["max_message_bytes"] == ep.max_message_bytes
    await ep.close()


@pytest.mark.parametrize("code", [-32002, -32005, -32006, -32007])
async def test_peer_errors_keep_their_code(code: int) -> None:
    FakePeer.instances.clear()
    ep, sent = make_endpoint(fail=SignalingError(code, "boom", {"reason": "r"}))
    await announce(ep, sent)
    await ep.handle_message(req("peer.offer", {"from": "alice", "to": SERVER, "sdp": SDP}, 1))
    err = reply(sent, 1)["error"]
    assert err == {"code": code, "message": "boom", "data": {"reason": "r"}}
    assert FakePeer.instances[-1].closed and ep.server_peer is None
    await ep.close()


async def test_custom_error_codes_from_endpoint() -> None:
    ep, sent = make_endpoint()
    await announce(ep, sent)
    await ep.handle_message(req("peer.offer", {"from": "alice", "to": SERVER, "sdp": "hello"}, 1))
    assert reply(sent, 1)["error"]["code"] == -32002 and reply(sent, 1)["error"]["data"]["reason"]
    await ep.handle_message(req("peer.offer", {"from": "alice", "to": "nobody", "sdp": SDP}, 2))
    assert reply(sent, 2)["error"]["code"] == -32000
    await ep.handle_message(req("peer.answer", {"from": "alice", "to": SERVER, "sdp": SDP}, 3))
    assert reply(sent, 3)["error"]["code"] == -32003
    await ep.handle_message(
        req("peer.ice_candidate", {"from": "alice", "to": SERVER, "candidate": "bogus", "sdp_mid": "0"}, 4)
    )
    assert reply(sent, 4)["error"]["code"] == -32004
    await ep.handle_message(
        req("peer.ice_candidate", {"from": "alice", "to": "nobody", "candidate": CAND, "sdp_mid": "0"}, 5)
    )
    assert reply(sent, 5)["error"]["code"] == -32000
    await ep.handle_message(req("peer.disconnect", {"peer_id": "nobody"}, 6))
    assert reply(sent, 6)["error"]["code"] == -32000
    await ep.handle_message(req("control.publish", {"topic": "x.in", "payload": "hi"}, 7))
    assert reply(sent, 7)["error"]["code"] == -32600  # no session before the offer
    await ep.handle_message(req("control.flush_audio", {}, 8))
    assert reply(sent, 8)["error"]["code"] == -32600  # no server peer before the offer
    await ep.close()


async def test_relay_between_announced_peers() -> None:
    registry = PeerRegistry()
    a, sent_a = make_endpoint(registry)
    b, sent_b = make_endpoint(registry)
    await announce(a, sent_a, "a")
    await announce(b, sent_b, "b")
    await a.handle_message(req("peer.offer", {"from": "a", "to": "b", "sdp": SDP}, 1))
    assert reply(sent_a, 1)["result"] == {"success": True, "to_peer_id": "b"}
    await settle()
    relayed = [m for m in sent_b if m.get("method") == "peer.offer"]
    assert relayed and relayed[0]["params"] == {"from": "a", "to": "b", "sdp": SDP}
    await a.close()
    await b.close()


async def test_malformed_messages_all_answered_and_endpoint_keeps_working() -> None:
    ep, sent = make_endpoint(max_message_bytes=OVERSIZE_LIMIT)
    await announce(ep, sent)
    cases = malformed_messages()
    before = len(sent)
    for text in cases:
        await ep.handle_message(text)
    replies = sent[before:]
    assert len(replies) == len(cases) == 50
    assert all("error" in m and isinstance(m["error"]["code"], int) for m in replies)
    await ep.handle_message(req("peer.list", {}, "after"))
    assert reply(sent, "after")["result"]["count"] == 1
    await ep.close()


async def test_messages_processed_in_order_even_when_fired_concurrently() -> None:
    FakePeer.instances.clear()
    ep, sent = make_endpoint()
    await announce(ep, sent)
    c = {"from": "alice", "to": SERVER, "candidate": CAND, "sdp_mid": "0"}
    await asyncio.gather(
        ep.handle_message(req("peer.offer", {"from": "alice", "to": SERVER, "sdp": SDP}, "o")),
        ep.handle_message(req("peer.ice_candidate", c, "c")),
    )
    assert reply(sent, "c")["result"] == {"success": True, "to_peer_id": SERVER}
    assert [k for k, _ in FakePeer.instances[-1].calls] == ["offer", "candidate"]
    ids = [m.get("id") for m in sent if "id" in m]
    assert ids.index("o") < ids.index("c")
    await ep.close()


async def test_real_server_peer_with_candidates_before_offer() -> None:
    """Client candidates sent before the offer are queued and used: the call connects on them alone."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from remotemedia_nbrtc.standalone.webrtc_client import split_candidates
    from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
    from remotemedia_nbrtc.transport.ice import prepare_peer_connection, rtc_configuration
    from remotemedia_nbrtc.transport.loop_thread import rtc_loop

    ice = IceConfig(loopback_only=True)
    manifest = {
        "version": "v1",
        "metadata": {},
        "nodes": [{"id": "echo", "node_type": "PassThrough"}],
        "connections": [],
    }

    async def scenario() -> dict[str, Any]:
        sent: list[dict[str, Any]] = []
        ep = SignalingEndpoint(lambda text: sent.append(json.loads(text)), manifest, PeerConfig(ice=ice))
        pc = RTCPeerConnection(rtc_configuration(ice))
        dc = pc.createDataChannel("pipeline-data")
        opened = asyncio.Event()
        echoed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        dc.on("open", opened.set)
        dc.on("message", lambda m: echoed.done() or echoed.set_result(m))
        try:
            await ep.handle_message(req("peer.announce", {"peer_id": "raw"}, 1))
            prepare_peer_connection(pc, ice)
            await pc.setLocalDescription(await pc.createOffer())
            sdp, candidates = split_candidates(pc.localDescription.sdp)
            assert candidates and "a=candidate" not in sdp
            for i, c in enumerate(candidates):  # all of them BEFORE the offer
                await ep.handle_message(
                    req(
                        "peer.ice_candidate",
                        {
                            "from": "raw",
                            "to": SERVER,
                            "candidate": c["candidate"],
                            "sdp_mid": c["sdpMid"],
                            "sdp_m_line_index": c["sdpMLineIndex"],
                        },
                        f"c{i}",
                    )
                )
            await ep.handle_message(req("peer.ice_candidate", {"from": "raw", "to": SERVER, "candidate": ""}, "end"))
            assert all(reply(sent, f"c{i}")["result"]["buffered"] for i in range(len(candidates)))
            await ep.handle_message(req("peer.offer", {"from": "raw", "to": SERVER, "sdp": sdp}, "o"))
            answer = reply(sent, "o")["result"]
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await asyncio.wait_for(opened.wait(), 10)
            dc.send(json.dumps({"type": "text", "text": "ping"}))
            echo = json.loads(await asyncio.wait_for(echoed, 10))
            states = [m["params"]["connection_state"] for m in sent if m.get("method") == "peer.state_change"]
            server_ice = ep.server_peer.pc.sctp.transport.transport
            remote_ports = {c.port for c in server_ice.getRemoteCandidates()}
            sent_ports = {int(c["candidate"].split()[5]) for c in candidates}
            return {
                "echo": echo,
                "states": states,
                "pc": pc.connectionState,
                "remote": remote_ports,
                "sent": sent_ports,
            }
        finally:
            await pc.close()
            await ep.close()

    out = await asyncio.wrap_future(rtc_loop().submit(scenario()))
    assert out["pc"] == "connected" and out["echo"]["type"] == "text" and out["echo"]["text"] == "ping"
    assert "connected" in out["states"]
    assert out["sent"] and out["sent"] <= out["remote"], out  # the queued candidates reached the server's ICE agent


async def test_real_server_peer_trickled_candidates_answered_as_upstream() -> None:
    """Candidates trickled after the offer are applied and answered `{success, to_peer_id}`, as upstream's server
    does. The server used to add `buffered: false`, which upstream sends only for a candidate it drops, so a
    client written to upstream's spec read every trickled candidate as lost."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from remotemedia_nbrtc.standalone.webrtc_client import split_candidates
    from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
    from remotemedia_nbrtc.transport.ice import prepare_peer_connection, rtc_configuration
    from remotemedia_nbrtc.transport.loop_thread import rtc_loop

    ice = IceConfig(loopback_only=True)
    manifest = {"version": "v1", "metadata": {}, "nodes": [{"id": "echo", "node_type": "PassThrough"}],
                "connections": []}

    async def scenario() -> dict[str, Any]:
        sent: list[dict[str, Any]] = []
        ep = SignalingEndpoint(lambda text: sent.append(json.loads(text)), manifest, PeerConfig(ice=ice))
        pc = RTCPeerConnection(rtc_configuration(ice))
        dc = pc.createDataChannel("pipeline-data")
        opened = asyncio.Event()
        dc.on("open", opened.set)
        try:
            await ep.handle_message(req("peer.announce", {"peer_id": "up"}, 1))
            prepare_peer_connection(pc, ice)
            await pc.setLocalDescription(await pc.createOffer())
            sdp, candidates = split_candidates(pc.localDescription.sdp)
            await ep.handle_message(req("peer.offer", {"from": "up", "to": SERVER, "sdp": sdp}, "o"))
            answer = reply(sent, "o")["result"]
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            for i, c in enumerate(candidates):  # all of them AFTER the offer
                params = {"from": "up", "to": SERVER, "candidate": c["candidate"], "sdp_mid": c["sdpMid"],
                          "sdp_m_line_index": c["sdpMLineIndex"]}
                await ep.handle_message(req("peer.ice_candidate", params, f"c{i}"))
            await asyncio.wait_for(opened.wait(), 10)
            return {"replies": [reply(sent, f"c{i}") for i in range(len(candidates))], "pc": pc.connectionState}
        finally:
            await pc.close()
            await ep.close()

    out = await asyncio.wrap_future(rtc_loop().submit(scenario()))
    assert out["pc"] == "connected" and out["replies"]
    for r in out["replies"]:
        assert r["result"] == {"success": True, "to_peer_id": SERVER}, r
