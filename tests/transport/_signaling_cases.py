"""Malformed and oversize signaling messages shared by the signaling, endpoint and server tests."""

from __future__ import annotations

import json

OVERSIZE_LIMIT = 64 * 1024


def malformed_messages() -> list[str]:
    """50 messages that must each get a JSON-RPC error (with a request id where one is readable)."""
    req = lambda method, params, rid=1: json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})
    big = "x" * (OVERSIZE_LIMIT + 10)
    cases = [
        "",
        "   ",
        "{",
        "not json",
        "[1, 2",
        '{"jsonrpc": "2.0", "method": "peer.list", "id": 1',
        "NaN",
        '{"jsonrpc":"2.0","method":"peer.list","id":NaN}',
        "[" * 30_000,  # deep nesting: RecursionError inside json
        "[]",
        "[{}]",
        "42",
        '"peer.list"',
        "null",
        "true",
        "{}",
        '{"jsonrpc": "1.0", "method": "peer.list", "id": 1}',
        '{"method": "peer.list", "id": 1}',
        '{"jsonrpc": 2.0, "method": "peer.list", "id": 1}',
        '{"jsonrpc": "2.0", "id": 1}',
        '{"jsonrpc": "2.0", "method": 5, "id": 1}',
        '{"jsonrpc": "2.0", "method": "", "id": 1}',
        '{"jsonrpc": "2.0", "method": null, "id": 1}',
        '{"jsonrpc": "2.0", "method": "peer.list", "id": {"a": 1}}',
        '{"jsonrpc": "2.0", "method": "peer.list", "id": [1]}',
        '{"jsonrpc": "2.0", "method": "peer.list", "id": true}',
        '{"jsonrpc": "2.0", "result": 1, "id": 1}',
        req("no.such.method", {}),
        req("peer.Announce", {"peer_id": "a"}),
        req("rpc.discover", {}, "s-1"),
        req("peer.announce", []),
        req("peer.announce", "peer"),
        req("peer.announce", {}),
        req("peer.announce", {"peer_id": 7}),
        req("peer.announce", {"peer_id": ""}),
        req("peer.announce", {"peer_id": "p" * 300}),
        req("peer.announce", {"peer_id": "a", "capabilities": "audio"}),
        req("peer.announce", {"peer_id": "a", "capabilities": [1, 2]}),
        req("peer.offer", {"to": "remotemedia-server", "sdp": "v=0"}),
        req("peer.offer", {"from": "a", "sdp": "v=0"}),
        req("peer.offer", {"from": "a", "to": "remotemedia-server"}),
        req("peer.offer", {"from": "a", "to": "remotemedia-server", "sdp": 12}),
        req("peer.ice_candidate", {"from": "a", "to": "remotemedia-server"}),
        req("peer.ice_candidate", {"from": "a", "to": "remotemedia-server", "candidate": 5}),
        req("peer.ice_candidate", {"from": "a", "to": "remotemedia-server", "candidate": "c", "sdp_m_line_index": "0"}),
        req("peer.disconnect", {}),
        req("control.subscribe", {"topic": "nodeout"}),
        req("control.publish", {"topic": "node.out", "payload": 1}),
        req("control.set_node_state", {"node_id": "n", "state": "paused"}),
        json.dumps({"jsonrpc": "2.0", "method": "peer.list", "params": {"pad": big}, "id": 1}),
    ]
    assert len(cases) == 50, len(cases)
    return cases
