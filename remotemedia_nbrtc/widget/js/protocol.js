// The protocol constants the front end shares with the kernel and the server extension, in one place.
// Plain JSON-compatible literals, one per line: tests/widget/test_js_protocol.py parses them and checks them
// against the Python side.

// JSON-RPC error codes the browser acts on (names as in server/relay.py and transport/signaling.py).
export const ERROR_CODES = {"PARSE_ERROR": -32700, "INVALID_REQUEST": -32600, "SESSION_UNAVAILABLE": -32000};
// Binary media frames (transport/wsmedia.py): kind (u8), sequence (u32 LE), timestamp in µs (u64 LE), payload.
export const FRAME_KINDS = {"audio": 1, "video": 2, "data": 3};
export const FRAME_HEADER_BYTES = 13;
// The kernel's peer id in signaling (peer.offer / peer.ice_candidate are addressed to it).
export const SERVER_PEER_ID = "remotemedia-server";
// The data channel that carries audio both ways with audio_transport="datachannel" (transport/dcaudio.py).
export const DC_AUDIO_LABEL = "rm-audio";
