"""The front end's protocol constants (widget/js/protocol.js) are the ones of remotemedia_nbrtc.protocol, and the
other modules use them rather than literals."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from remotemedia_nbrtc import protocol
from remotemedia_nbrtc.protocol.datachannel import DATA_CHANNEL_LABEL, DC_AUDIO_LABEL
from remotemedia_nbrtc.protocol.jsonrpc import (
    ERROR_CODES,
    METHODS,
    NOTIFICATIONS,
    SERVER_PEER_ID,
    Method,
    Notification,
)
from remotemedia_nbrtc.protocol.media_frames import FRAME_KINDS, HEADER_BYTES

PROTOCOL_JS = Path(protocol.__file__).parents[1] / "widget" / "js" / "protocol.js"


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
    assert set(js_constants()) == {"ERROR_CODES", "METHODS", "NOTIFICATIONS", "FRAME_KINDS", "FRAME_HEADER_BYTES",
                                   "SERVER_PEER_ID", "DATA_CHANNEL_LABEL", "DC_AUDIO_LABEL"}


def test_every_error_code_the_front_end_knows_is_the_python_one() -> None:
    codes = js_constants()["ERROR_CODES"]
    assert codes and all(ERROR_CODES[name] == code for name, code in codes.items()), codes


def test_every_method_the_front_end_calls_is_a_protocol_method_named_after_it() -> None:
    methods = js_constants()["METHODS"]
    assert methods and set(methods.values()) <= METHODS, methods
    assert all(key == method.upper().replace(".", "_") for key, method in methods.items()), methods
    assert all(Method[key] == method for key, method in methods.items()), methods  # the Python names too


def test_every_notification_the_front_end_handles_is_one_the_server_sends_named_after_it() -> None:
    notifications = js_constants()["NOTIFICATIONS"]
    assert notifications and set(notifications.values()) <= NOTIFICATIONS, notifications
    assert all(key == name.upper().replace(".", "_") for key, name in notifications.items()), notifications
    assert all(Notification[key] == name for key, name in notifications.items()), notifications


def test_frames_server_peer_and_channel_labels_match() -> None:
    c = js_constants()
    assert c["FRAME_KINDS"] == FRAME_KINDS
    assert c["FRAME_HEADER_BYTES"] == HEADER_BYTES
    assert c["SERVER_PEER_ID"] == SERVER_PEER_ID
    assert c["DATA_CHANNEL_LABEL"] == DATA_CHANNEL_LABEL
    assert c["DC_AUDIO_LABEL"] == DC_AUDIO_LABEL


def test_the_front_end_uses_the_constants_not_literals() -> None:
    for path in PROTOCOL_JS.parent.glob("*.js"):
        if path == PROTOCOL_JS:
            continue
        text = path.read_text()
        for literal in ("-32000", "-32600", "-32700", '"remotemedia-server"', '"pipeline-data"', '"rm-audio"'):
            assert literal not in text, (path.name, literal)
        assert not re.search(r"\.(call|notify)\(\s*[\"'`]", text), f"{path.name}: a method name literal, not METHODS"
        compared = re.search(r"\bmethod\s*[!=]==?\s*[\"'`]|[\"'`]\s*[!=]==?\s*method\b|\bcase\s*[\"'`]", text)
        assert not compared, f"{path.name}: a literal compared with a method name, not NOTIFICATIONS: {compared}"
        names = "|".join(re.escape(name) for name in METHODS | NOTIFICATIONS)
        quoted = re.search(rf"[\"']({names})[\"']", text)
        assert not quoted, f"{path.name}: a method or notification name literal, not METHODS/NOTIFICATIONS: {quoted}"
        assert not re.search(r"KIND_\w+ = \d", text), path.name
