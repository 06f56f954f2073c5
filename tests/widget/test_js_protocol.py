"""The front end's protocol constants (widget/js/protocol.js) agree with the Python side's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from remotemedia_nbrtc.server import relay
from remotemedia_nbrtc.transport import dcaudio, signaling, wsmedia

PROTOCOL_JS = Path(__file__).parents[2] / "remotemedia_nbrtc" / "widget" / "js" / "protocol.js"


def js_constants() -> dict[str, Any]:
    """``export const NAME = <JSON>;`` lines of protocol.js, parsed as JSON."""
    out = {}
    for line in PROTOCOL_JS.read_text().splitlines():
        if line.startswith("export "):
            m = re.fullmatch(r"export const ([A-Z_]+) = (.+);", line)
            assert m, f"not a one-line JSON constant: {line}"
            out[m.group(1)] = json.loads(m.group(2))
    return out


def test_protocol_js_holds_exactly_the_shared_constants() -> None:
    assert set(js_constants()) == {"ERROR_CODES", "FRAME_KINDS", "FRAME_HEADER_BYTES", "SERVER_PEER_ID",
                                   "DC_AUDIO_LABEL"}


def test_error_codes_match_the_relay_and_signaling() -> None:
    codes = js_constants()["ERROR_CODES"]
    assert codes == {"PARSE_ERROR": relay.PARSE_ERROR, "INVALID_REQUEST": relay.INVALID_REQUEST,
                     "SESSION_UNAVAILABLE": relay.SESSION_UNAVAILABLE}
    # the kernel's endpoint calls -32000 "peer not found"; through the relay the browser reads it as the same
    assert (codes["PARSE_ERROR"], codes["INVALID_REQUEST"], codes["SESSION_UNAVAILABLE"]) == (
        signaling.PARSE_ERROR, signaling.INVALID_REQUEST, signaling.PEER_NOT_FOUND)


def test_frames_server_peer_and_audio_channel_match() -> None:
    c = js_constants()
    assert c["FRAME_KINDS"] == {"audio": wsmedia.KIND_AUDIO, "video": wsmedia.KIND_VIDEO, "data": wsmedia.KIND_DATA}
    assert c["FRAME_HEADER_BYTES"] == wsmedia.HEADER_BYTES
    assert c["SERVER_PEER_ID"] == signaling.SERVER_PEER_ID
    assert c["DC_AUDIO_LABEL"] == dcaudio.LABEL


def test_the_front_end_uses_the_constants_not_literals() -> None:
    for path in PROTOCOL_JS.parent.glob("*.js"):
        if path == PROTOCOL_JS:
            continue
        text = path.read_text()
        for literal in ("-32000", "-32600", "-32700", '"remotemedia-server"', '"rm-audio"'):
            assert literal not in text, (path.name, literal)
        assert not re.search(r"KIND_\w+ = \d", text), path.name
