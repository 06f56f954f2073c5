"""Nodes the transport bench needs on top of the built-ins (imported by the bench's server processes)."""

from __future__ import annotations

import time
from typing import Any

from remotemedia_nbrtc.nodes import VideoStats
from remotemedia_nbrtc.runtime import AudioData, JsonData, Node, RuntimeData, VideoData
from remotemedia_nbrtc.transport.sources import decode_frame_number


class BenchVideoStats(VideoStats):
    """``VideoStatsNode`` plus ``source_frame_number``: the number SyntheticVideoSource drew in the pixels.

    The pipeline's own ``frame_number`` counts frames as received, which shifts after a lost frame;
    the drawn number ties each result to the moment its frame left the client. ``arrival_us`` splits the
    latency into client -> decoded at the server, and the rest.
    """

    node_type = "BenchVideoStatsNode"

    def process(self, data: RuntimeData) -> Any:
        out = super().process(data)
        if isinstance(data, VideoData) and isinstance(out, JsonData):
            out.value["source_frame_number"] = decode_frame_number(data)
            out.value["arrival_us"] = data.arrival_ts_us  # decoded frame reached the server (now_us clock)
        return out


class BenchStallOnce(Node):
    """Passes audio on; once ``after_s`` of audio has gone through, blocks the pipeline loop for ``stall_s``
    (a GC pause, a model reload, a slow first call: what the stall-recovery bench simulates)."""

    node_type = "BenchStallOnceNode"

    def __init__(self, *, after_s: float = 3.0, stall_s: float = 5.0) -> None:
        self.after_s, self.stall_s = after_s, stall_s
        self.seen_s = 0.0
        self.stalled = False

    def process(self, data: RuntimeData) -> Any:
        if isinstance(data, AudioData):
            self.seen_s += data.duration_s
            if not self.stalled and self.seen_s >= self.after_s:
                self.stalled = True
                time.sleep(self.stall_s)
        return data
