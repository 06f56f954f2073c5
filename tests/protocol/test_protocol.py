"""The protocol package: stdlib only, one table of codes, binary frames that round-trip."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from remotemedia_nbrtc import protocol
from remotemedia_nbrtc.protocol import ErrorCode, pack_frame, unpack_frame


def test_protocol_imports_nothing_but_the_standard_library() -> None:
    import sys

    for path in Path(protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in sys.stdlib_module_names or node.module == "__future__", path
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names), path


def test_codes_are_json_rpc_server_errors_and_names_are_unique() -> None:
    assert protocol.ERROR_CODES["PARSE_ERROR"] == -32700
    assert ErrorCode.SESSION_UNAVAILABLE is ErrorCode.PEER_NOT_FOUND  # the relay's name for the same code
    distinct = {code for name, code in protocol.ERROR_CODES.items() if name != "SESSION_UNAVAILABLE"}
    assert len(distinct) == len(protocol.ERROR_CODES) - 1
    assert all(-32768 <= code <= -32000 for code in distinct)


def test_a_frame_round_trips_and_bad_frames_are_refused() -> None:
    frame = pack_frame(protocol.KIND_VIDEO, 2**32 + 5, 1_700_000_000_000_000, b"jpeg")
    assert len(frame) == protocol.HEADER_BYTES + 4
    assert unpack_frame(frame) == (protocol.KIND_VIDEO, 5, 1_700_000_000_000_000, b"jpeg")  # seq wraps at 32 bits
    with pytest.raises(ValueError, match="shorter"):
        unpack_frame(frame[:5])
    with pytest.raises(ValueError, match="kind 9"):
        unpack_frame(pack_frame(9, 0, 0, b""))
