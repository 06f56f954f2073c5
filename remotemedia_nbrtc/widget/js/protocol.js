// The protocol constants the front end shares with the kernel and the server extension, in one place.
// Plain JSON-compatible literals, one per line: tests/protocol/test_js_mirror.py parses them and checks them
// against remotemedia_nbrtc/protocol/.

// JSON-RPC error codes the browser acts on (protocol/jsonrpc.py ErrorCode).
export const ERROR_CODES = {"PARSE_ERROR": -32700, "INVALID_REQUEST": -32600, "SESSION_UNAVAILABLE": -32000};
// JSON-RPC methods the browser calls (protocol/jsonrpc.py METHODS); each key is its method upper-cased, "." -> "_".
export const METHODS = {"PEER_ANNOUNCE": "peer.announce", "PEER_OFFER": "peer.offer", "PEER_ICE_CANDIDATE": "peer.ice_candidate", "MEDIA_OPEN": "media.open", "MEDIA_SEND": "media.send", "MEDIA_STATS": "media.stats", "SESSION_INFO": "session.info"};
// JSON-RPC notifications from the server the browser acts on (protocol/jsonrpc.py Notification); keys as for METHODS.
export const NOTIFICATIONS = {"PEER_ICE_CANDIDATE": "peer.ice_candidate", "PEER_STATE_CHANGE": "peer.state_change", "MEDIA_OUTPUT": "media.output"};
// Binary media frames (protocol/media_frames.py): kind (u8), sequence (u32 LE), timestamp in µs (u64 LE), payload.
export const FRAME_KINDS = {"audio": 1, "video": 2, "data": 3};
export const FRAME_HEADER_BYTES = 13;
// The kernel's peer id in signaling (peer.offer / peer.ice_candidate are addressed to it).
export const SERVER_PEER_ID = "remotemedia-server";
// The data channel that carries pipeline data both ways (protocol/datachannel.py).
export const DATA_CHANNEL_LABEL = "pipeline-data";
// The data channel that carries audio both ways with audio_transport="datachannel" (protocol/datachannel.py).
export const DC_AUDIO_LABEL = "rm-audio";
