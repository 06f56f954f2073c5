"""Unit tests of the relay's routing and bookkeeping (fake sockets are plain recorders)."""

from __future__ import annotations

import json

import pytest

from remotemedia_nbrtc.server.relay import Relay, SessionUnavailable


class Sock:
    """Records what the relay sends to one socket, and whether/why it closed it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: str | None = None

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close(self, reason: str) -> None:
        self.closed = reason

    def json(self) -> list[dict]:
        return [json.loads(t) for t in self.sent]


def _kernel(relay: Relay, *sessions: str) -> tuple[int, Sock]:
    sock = Sock()
    link = relay.add_kernel(sock.send)
    for sid in sessions:
        relay.kernel_message(link, json.dumps({"kind": "register", "session": sid}))
    return link, sock


def test_register_acknowledges_and_counts():
    relay = Relay()
    link, k = _kernel(relay, "a", "b")
    assert k.json() == [{"kind": "registered", "session": "a"}, {"kind": "registered", "session": "b"}]
    assert (relay.kernel_count, relay.session_count) == (1, 2)
    relay.kernel_message(link, json.dumps({"kind": "register", "session": "a"}))  # idempotent
    assert relay.session_count == 2


def test_open_unknown_session_raises():
    relay = Relay()
    with pytest.raises(SessionUnavailable, match="nope"):
        relay.open_browser("nope", Sock().send, Sock().close)
    assert relay.connection_count == 0


def test_messages_are_routed_per_connection_and_session():
    relay = Relay()
    l1, k1 = _kernel(relay, "s1")
    l2, k2 = _kernel(relay, "s2")
    b1, b2 = Sock(), Sock()
    c1 = relay.open_browser("s1", b1.send, b1.close)
    c2 = relay.open_browser("s2", b2.send, b2.close)
    assert c1 != c2
    relay.browser_message(c1, "hello-1")
    relay.browser_message(c2, "hello-2")
    assert k1.json()[-2:] == [
        {"kind": "open", "conn": c1, "session": "s1"},
        {"kind": "message", "conn": c1, "data": "hello-1"},
    ]
    assert k2.json()[-1] == {"kind": "message", "conn": c2, "data": "hello-2"}

    relay.kernel_message(l1, json.dumps({"kind": "message", "conn": c1, "data": "reply-1"}))
    assert b1.sent == ["reply-1"] and b2.sent == []
    # a kernel cannot write to another kernel's browser
    relay.kernel_message(l2, json.dumps({"kind": "message", "conn": c1, "data": "spoof"}))
    assert b1.sent == ["reply-1"]


def test_browser_close_notifies_kernel_once():
    relay = Relay()
    _, k = _kernel(relay, "s")
    b = Sock()
    c = relay.open_browser("s", b.send, b.close)
    relay.browser_closed(c)
    relay.browser_closed(c)
    assert [m for m in k.json() if m["kind"] == "close"] == [{"kind": "close", "conn": c}]
    assert relay.connection_count == 0
    relay.browser_message(c, "late")  # ignored, no crash
    assert k.json()[-1]["kind"] == "close"


def test_kernel_close_of_connection_closes_browser_with_reason():
    relay = Relay()
    link, _ = _kernel(relay, "s")
    b = Sock()
    c = relay.open_browser("s", b.send, b.close)
    relay.kernel_message(link, json.dumps({"kind": "close", "conn": c, "data": "pipeline failed"}))
    assert b.closed == "pipeline failed"
    assert relay.connection_count == 0


def test_remove_kernel_drops_sessions_and_errors_browsers():
    relay = Relay()
    link, _ = _kernel(relay, "s", "t")
    b1, b2 = Sock(), Sock()
    relay.open_browser("s", b1.send, b1.close)
    relay.open_browser("t", b2.send, b2.close)
    relay.remove_kernel(link)
    for b in (b1, b2):
        err = json.loads(b.sent[-1])
        assert err["error"]["code"] == -32000 and err["id"] is None
        assert b.closed == "kernel disconnected"
    assert (relay.kernel_count, relay.session_count, relay.connection_count) == (0, 0, 0)
    relay.remove_kernel(link)  # idempotent


def test_unregister_closes_only_that_sessions_browsers():
    relay = Relay()
    link, k = _kernel(relay, "s", "t")
    bs, bt = Sock(), Sock()
    relay.open_browser("s", bs.send, bs.close)
    relay.open_browser("t", bt.send, bt.close)
    relay.kernel_message(link, json.dumps({"kind": "unregister", "session": "s"}))
    assert bs.closed == "session closed" and bt.closed is None
    assert k.json()[-1] == {"kind": "unregistered", "session": "s"}
    assert relay.has_session("t") and not relay.has_session("s")


def test_session_owned_by_first_kernel():
    relay = Relay()
    _, k1 = _kernel(relay, "s")
    l2, k2 = _kernel(relay)
    relay.kernel_message(l2, json.dumps({"kind": "register", "session": "s"}))
    assert k2.json()[-1]["kind"] == "error"
    b = Sock()
    relay.open_browser("s", b.send, b.close)
    assert k1.json()[-1]["kind"] == "open"


@pytest.mark.parametrize(
    "bad",
    ["", "{", "[1]", "null", '{"kind": 3}', '{"kind": "open", "conn": "x"}', '{"kind": "unregister", "session": ""}'],
)
def test_bad_envelopes_are_answered_not_fatal(bad):
    relay = Relay()
    link, k = _kernel(relay, "s")
    before = len(k.sent)
    relay.kernel_message(link, bad)
    assert len(k.sent) == before + 1 and k.json()[-1]["kind"] == "error"
    assert relay.has_session("s")


def test_message_without_string_data_is_an_error():
    relay = Relay()
    link, k = _kernel(relay, "s")
    b = Sock()
    c = relay.open_browser("s", b.send, b.close)
    relay.kernel_message(link, json.dumps({"kind": "message", "conn": c, "data": {"x": 1}}))
    assert k.json()[-1]["kind"] == "error" and b.sent == []


def test_binary_frames_carry_the_connection_prefix_on_the_link():
    from remotemedia_nbrtc.protocol.kernel_link import pack_link_frame, unpack_link_frame

    relay = Relay()
    to_kernel: list[bytes] = []
    link = relay.add_kernel(Sock().send, to_kernel.append)
    relay.kernel_message(link, json.dumps({"kind": "register", "session": "s"}))
    got: list[bytes] = []
    conn = relay.open_browser("s", Sock().send, Sock().close, got.append)
    relay.browser_binary(conn, b"media")
    assert to_kernel == [pack_link_frame(conn, b"media")] and unpack_link_frame(to_kernel[0]) == (conn, b"media")
    relay.kernel_binary(link, pack_link_frame(conn, b"back"))
    relay.kernel_binary(link, pack_link_frame("c999", b"lost"))
    assert got == [b"back"]
    with pytest.raises(ValueError):
        unpack_link_frame(b"\x05ab")
