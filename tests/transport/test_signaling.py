"""JSON-RPC 2.0 parsing, validation and builders (pure; no I/O)."""

from __future__ import annotations

import json

import pytest

from remotemedia_nbrtc.protocol.jsonrpc import METHODS, ErrorCode, request_message
from remotemedia_nbrtc.transport import signaling as rpc
from tests.transport._signaling_cases import OVERSIZE_LIMIT, malformed_messages

pytestmark = pytest.mark.timeout(30)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
CAND = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"


def req(method: str, params: object = None, rid: object = 1) -> str:
    msg: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg)


def code_of(text: str) -> tuple[int, object]:
    with pytest.raises(rpc.RpcError) as info:
        rpc.parse_message(text, max_bytes=OVERSIZE_LIMIT)
    return info.value.code, info.value.request_id


def test_error_code_values_match_upstream() -> None:
    assert (
        ErrorCode.PARSE_ERROR,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.METHOD_NOT_FOUND,
        ErrorCode.INVALID_PARAMS,
        ErrorCode.INTERNAL_ERROR,
    ) == (
        -32700,
        -32600,
        -32601,
        -32602,
        -32603,
    )
    assert list(range(-32000, -32008, -1)) == [
        ErrorCode.PEER_NOT_FOUND,
        ErrorCode.SESSION_LIMIT,
        ErrorCode.OFFER_INVALID,
        ErrorCode.ANSWER_INVALID,
        ErrorCode.ICE_INVALID,
        ErrorCode.NEGOTIATION_IN_PROGRESS,
        ErrorCode.CONNECTION_TIMEOUT,
        ErrorCode.CODEC_MISMATCH,
    ]


@pytest.mark.parametrize("rid", [1, 0, -5, 2.5, "req-1", None])
def test_valid_request_ids_numbers_and_strings(rid: object) -> None:
    request = rpc.parse_message(req("peer.list", {}, rid))
    assert request.method == "peer.list" and request.id == rid and not request.is_notification


def test_notification_has_no_id() -> None:
    request = rpc.parse_message(json.dumps({"jsonrpc": "2.0", "method": "peer.list"}))
    assert request.is_notification and request.params == {}


def test_parse_error_and_invalid_request() -> None:
    assert code_of("{oops") == (-32700, None)
    assert code_of("[" * 30_000) == (-32700, None)
    assert code_of("[]") == (-32600, None)
    assert code_of('{"jsonrpc": "1.0", "method": "peer.list", "id": "x"}') == (-32600, "x")
    assert code_of('{"jsonrpc": "2.0", "method": "peer.list", "id": true}') == (-32600, None)


def test_every_protocol_method_has_a_parameter_spec_and_no_other() -> None:
    assert set(rpc._PARAM_SPECS) == METHODS


def test_method_not_found_keeps_id() -> None:
    assert code_of(req("peer.nope", {}, "abc")) == (-32601, "abc")


def test_invalid_params() -> None:
    assert code_of(req("peer.announce", {}))[0] == -32602
    assert code_of(req("peer.announce", ["a"]))[0] == -32602
    assert code_of(req("peer.offer", {"to": "remotemedia-server", "sdp": SDP}))[0] == -32602  # 'from' is required
    assert code_of(req("control.subscribe", {"topic": "vad.in"}))[0] == -32602
    assert code_of(req("control.publish", {"topic": "vad.out", "payload": {}}))[0] == -32602
    assert code_of(req("control.set_node_state", {"node_id": "vad", "state": "off"}))[0] == -32602
    assert (
        code_of(req("peer.ice_candidate", {"from": "a", "to": "b", "candidate": CAND, "sdp_m_line_index": True}))[0]
        == -32602
    )


def test_oversize_is_an_error_with_limit_in_data() -> None:
    big = req("peer.list", {"pad": "x" * 100})
    with pytest.raises(rpc.RpcError) as info:
        rpc.parse_message(big, max_bytes=50)
    assert info.value.code == -32600 and info.value.data["max_bytes"] == 50
    assert rpc.parse_message(big, max_bytes=len(big)).method == "peer.list"


def test_fifty_malformed_messages_each_give_an_error_object() -> None:
    cases = malformed_messages()
    codes = set()
    for text in cases:
        with pytest.raises(rpc.RpcError) as info:
            rpc.parse_message(text, max_bytes=OVERSIZE_LIMIT)
        reply = json.loads(info.value.to_message())
        assert reply["jsonrpc"] == "2.0" and "id" in reply and "result" not in reply
        assert isinstance(reply["error"]["code"], int) and isinstance(reply["error"]["message"], str)
        codes.add(reply["error"]["code"])
    assert codes == {-32700, -32600, -32601, -32602}


def test_bytes_input_and_bad_utf8() -> None:
    assert rpc.parse_message(req("peer.list").encode()).method == "peer.list"
    with pytest.raises(rpc.RpcError) as info:
        rpc.parse_message(b"\xff\xfe{}")
    assert info.value.code == -32700


def test_validate_sdp() -> None:
    rpc.validate_sdp(SDP)
    with pytest.raises(rpc.RpcError) as info:
        rpc.validate_sdp("hello")
    assert info.value.code == -32002 and "v=0" in info.value.data["reason"]
    with pytest.raises(rpc.RpcError) as info:
        rpc.validate_sdp("v=0\r\ns=-\r\n", code=ErrorCode.ANSWER_INVALID)
    assert info.value.code == -32003 and "m=" in info.value.data["reason"]


def test_normalize_candidate_forms() -> None:
    snake = rpc.normalize_candidate({"candidate": CAND, "sdp_mid": "0", "sdp_m_line_index": 0})
    camel = rpc.normalize_candidate({"candidate": CAND, "sdpMid": "0", "sdpMLineIndex": 0})
    browser = rpc.normalize_candidate({"candidate": {"candidate": CAND, "sdpMid": "0", "sdpMLineIndex": 0}})
    assert snake == camel == browser == {"candidate": CAND, "sdpMid": "0", "sdpMLineIndex": 0}
    assert rpc.normalize_candidate({"candidate": "", "sdp_mid": None, "sdp_m_line_index": None}) is None
    assert rpc.normalize_candidate({"candidate": None}) is None


@pytest.mark.parametrize(
    "params",
    [
        {"candidate": "foo", "sdp_mid": "0"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ", "sdp_mid": "0"},
        {"candidate": "candidate:1 1 udp x 127.0.0.1 5 typ host", "sdp_mid": "0"},
        {"candidate": "candidate:1 1 sctp 1 127.0.0.1 5 typ host", "sdp_mid": "0"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 99999 typ host", "sdp_mid": "0"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5 typ magic", "sdp_mid": "0"},
        {"candidate": CAND},
        {"candidate": CAND, "sdp_m_line_index": -1},
    ],
)
def test_bad_candidates_are_ice_invalid(params: dict[str, object]) -> None:
    with pytest.raises(rpc.RpcError) as info:
        rpc.normalize_candidate(params)
    assert info.value.code == -32004 and info.value.data["reason"]


def test_end_of_candidates_params_and_a_built_request_parse_back() -> None:
    end = rpc.ice_candidate_params(None, from_id="remotemedia-server", to_id="a")
    assert end == {"from": "remotemedia-server", "to": "a", "candidate": "", "sdp_mid": None, "sdp_m_line_index": None}
    back = rpc.parse_message(request_message("peer.offer", {"from": "a", "to": "remotemedia-server", "sdp": SDP}, 9))
    assert back.params["sdp"] == SDP and back.id == 9


def test_parse_topic() -> None:
    assert rpc.parse_topic("vad.out") == ("vad", "out", None)
    assert rpc.parse_topic("vad.out.speech") == ("vad", "out", "speech")
    assert rpc.parse_topic("*.out") == ("*", "out", None)
    assert rpc.parse_topic("vad") is None and rpc.parse_topic("vad.sideways") is None
