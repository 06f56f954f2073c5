"""Nodes the transport bench needs on top of the built-ins (imported by the bench's server processes)."""

from __future__ import annotations

from typing import Any

from remotemedia_nbrtc.nodes import VideoStats
from remotemedia_nbrtc.runtime import JsonData, RuntimeData, VideoData
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
