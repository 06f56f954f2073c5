"""Binary media frames: a 13-byte header (kind, sequence, timestamp) then the payload.

Used by the WebSocket media fallback and by pcm16 audio on the ``rm-audio`` data channel (``datachannel``).
"""

from __future__ import annotations

import struct
import time

__all__ = ["FRAME_KINDS", "HEADER", "HEADER_BYTES", "KIND_AUDIO", "KIND_DATA", "KIND_VIDEO",
           "pack_frame", "unpack_frame", "wall_us"]

#: u8 kind, u32 sequence, u64 timestamp (microseconds since the Unix epoch), little-endian
HEADER = struct.Struct("<BIQ")
HEADER_BYTES = HEADER.size  # 13
KIND_AUDIO, KIND_VIDEO, KIND_DATA = 1, 2, 3
FRAME_KINDS: dict[str, int] = {"audio": KIND_AUDIO, "video": KIND_VIDEO, "data": KIND_DATA}


def wall_us() -> int:
    """Microseconds since the Unix epoch: the clock of frame headers and of data-channel ``ts_us``."""
    return time.time_ns() // 1000


def pack_frame(kind: int, seq: int, timestamp_us: int, payload: bytes) -> bytes:
    """One binary frame: the 13-byte header, then ``payload``."""
    return HEADER.pack(kind, seq & 0xFFFFFFFF, max(0, int(timestamp_us)) & 0xFFFFFFFFFFFFFFFF) + payload


def unpack_frame(frame: bytes) -> tuple[int, int, int, bytes]:
    """``(kind, seq, timestamp_us, payload)``; raises ``ValueError`` for a short or unknown frame."""
    if len(frame) < HEADER_BYTES:
        raise ValueError(f"binary frame of {len(frame)} bytes is shorter than the {HEADER_BYTES}-byte header")
    kind, seq, ts = HEADER.unpack_from(frame)
    if kind not in (KIND_AUDIO, KIND_VIDEO, KIND_DATA):
        raise ValueError(f"unknown binary frame kind {kind}")
    return kind, seq, ts, bytes(memoryview(frame)[HEADER_BYTES:])
