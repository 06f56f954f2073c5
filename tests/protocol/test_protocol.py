"""The protocol package: stdlib only, one table of codes and notifications, JSON-RPC builders, binary frames and
kernel-link messages that round-trip."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from remotemedia_nbrtc import protocol
from remotemedia_nbrtc.protocol.jsonrpc import (
    ERROR_CODES,
    METHODS,
    NOTIFICATIONS,
    ErrorCode,
    Notification,
    error_message,
    notification,
    request_message,
    result_message,
)
from remotemedia_nbrtc.protocol.kernel_link import envelope, pack_link_frame, unpack_link_frame
from remotemedia_nbrtc.protocol.media_frames import HEADER_BYTES, KIND_VIDEO, pack_frame, unpack_frame


def test_protocol_imports_nothing_but_the_standard_library() -> None:
    import sys

    for path in Path(protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in sys.stdlib_module_names or node.module == "__future__", path
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names), path


def test_codes_are_json_rpc_server_errors_and_names_are_unique() -> None:
    assert ERROR_CODES["PARSE_ERROR"] == -32700
    assert ErrorCode.SESSION_UNAVAILABLE is ErrorCode.PEER_NOT_FOUND  # the relay's name for the same code
    distinct = {code for name, code in ERROR_CODES.items() if name != "SESSION_UNAVAILABLE"}
    assert len(distinct) == len(ERROR_CODES) - 1
    assert all(-32768 <= code <= -32000 for code in distinct)


def test_notifications_are_named_like_methods_and_dump_as_their_names() -> None:
    assert {n.value for n in Notification} == NOTIFICATIONS and "media.output" in NOTIFICATIONS
    assert all(n.name == n.value.upper().replace(".", "_") for n in Notification)
    # the relayed ones share their request's name (peer.offer, peer.answer, peer.ice_candidate)
    relayed = NOTIFICATIONS & METHODS
    assert relayed == {"peer.offer", "peer.answer", "peer.ice_candidate"}
    assert json.loads(notification(Notification.PEER_STATE_CHANGE, {}))["method"] == "peer.state_change"


def test_builders_round_trip_as_compact_json() -> None:
    assert json.loads(result_message("r", {"ok": 1})) == {"jsonrpc": "2.0", "result": {"ok": 1}, "id": "r"}
    err = json.loads(error_message(3, -32002, "Invalid SDP offer", {"reason": "x"}))
    assert err == {
        "jsonrpc": "2.0",
        "error": {"code": -32002, "message": "Invalid SDP offer", "data": {"reason": "x"}},
        "id": 3,
    }
    gone = error_message(None, ErrorCode.SESSION_UNAVAILABLE, "gone")
    assert gone == '{"jsonrpc":"2.0","error":{"code":-32000,"message":"gone"},"id":null}'  # no data, compact
    note = json.loads(notification("peer.state_change", {"peer_id": "a"}))
    assert note == {"jsonrpc": "2.0", "method": "peer.state_change", "params": {"peer_id": "a"}} and "id" not in note
    ask = json.loads(request_message("peer.list", {}, 9))
    assert ask == {"jsonrpc": "2.0", "method": "peer.list", "params": {}, "id": 9}


def test_builders_turn_array_likes_into_lists_and_refuse_nan() -> None:
    class ArrayLike:
        def tolist(self) -> list[int]:
            return [1, 2]

    values = json.loads(notification(Notification.CONTROL_EVENT, {"a": ArrayLike(), "s": (3,), "o": object}))["params"]
    assert values["a"] == [1, 2] and values["s"] == [3] and values["o"].startswith("<class")
    with pytest.raises(ValueError):
        result_message(1, float("nan"))


def test_a_frame_round_trips_and_bad_frames_are_refused() -> None:
    frame = pack_frame(KIND_VIDEO, 2**32 + 5, 1_700_000_000_000_000, b"jpeg")
    assert len(frame) == HEADER_BYTES + 4
    assert unpack_frame(frame) == (KIND_VIDEO, 5, 1_700_000_000_000_000, b"jpeg")  # seq wraps at 32 bits
    with pytest.raises(ValueError, match="shorter"):
        unpack_frame(frame[:5])
    with pytest.raises(ValueError, match="kind 9"):
        unpack_frame(pack_frame(9, 0, 0, b""))


def test_an_envelope_leaves_out_none_fields() -> None:
    assert json.loads(envelope("close", conn="c1", data=None)) == {"kind": "close", "conn": "c1"}
    assert json.loads(envelope("message", conn="c2", data="{}")) == {"kind": "message", "conn": "c2", "data": "{}"}


def test_a_link_frame_round_trips_and_bad_prefixes_are_refused() -> None:
    frame = pack_link_frame("c12", b"\x01media")
    assert frame == b"\x03c12\x01media" and unpack_link_frame(frame) == ("c12", b"\x01media")
    assert unpack_link_frame(pack_link_frame("c1", b"")) == ("c1", b"")
    for bad in (b"", b"\x00abc", b"\x05ab", b"\x02\xff\xfe"):
        with pytest.raises(ValueError):
            unpack_link_frame(bad)
    for bad_id in ("", "x" * 256, "c\u00e9"):
        with pytest.raises(ValueError):
            pack_link_frame(bad_id, b"")
