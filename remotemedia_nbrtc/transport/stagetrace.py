"""Per-stage latency stamps for audio onsets, for profiling the media path (off unless asked for).

A :class:`StageTrace` records, per named stage, the ``now_us()`` time at which an audio *onset* passed
that stage: the first frame whose peak reaches ``threshold`` after a frame that did not. Bursts of tone
in silence (the bench's ``ToneBurstSource``) thus leave one stamp per stage, and since ``now_us()`` is
system-wide on Linux, the stamps of a client and a server process line up into a per-stage breakdown
(``bench/latency.py``). Encoded stages (RTP packet arrival / jitter-buffer release) cannot see the
signal: they note every packet by frame index and the stamp is taken once the decoded frame of that
index turns out to be the onset.

Peers create one only when asked (``PeerConfig.stage_trace``, ``ClientPeer.connect(stage_trace=True)``,
or ``REMOTEMEDIA_STAGE_TRACE=1`` in the environment); every hook is ``if trace is not None``, so the
normal path pays one attribute test per frame. Hooks run on the RTC loop and the pipeline loop; each
stage is written by one thread only, and ``deque.append`` is atomic.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from typing import Any

import numpy as np

from ..runtime import now_us

__all__ = ["ENV_VAR", "StageTrace", "peak", "trace_from_env"]

ENV_VAR = "REMOTEMEDIA_STAGE_TRACE"
_KEEP = 4096
_PACKETS_KEPT = 256


def trace_from_env() -> bool:
    """True if ``REMOTEMEDIA_STAGE_TRACE`` is set to a true value."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def peak(samples: np.ndarray) -> float:
    """Peak magnitude normalised to [0, 1] (int16 or float samples)."""
    if samples.size == 0:
        return 0.0
    value = float(np.max(np.abs(samples)))
    return value / 32768.0 if samples.dtype == np.int16 else value


class StageTrace:
    """Onset stamps per stage (see the module docstring)."""

    def __init__(self, threshold: float = 0.1, keep: int = _KEEP) -> None:
        self.threshold = threshold
        self.stages: dict[str, deque[tuple[int, int, float]]] = {}
        self._keep = keep
        self._loud: dict[str, bool] = {}
        self._packets: OrderedDict[int, list[int]] = OrderedDict()
        self._first_rtp: int | None = None
        self._first_pts: int | None = None

    def mark(self, stage: str, t_us: int | None = None, index: int = -1, offset_ms: float = 0.0) -> None:
        """Record that an onset passed ``stage`` at ``t_us`` (default: now)."""
        events = self.stages.get(stage)
        if events is None:
            events = self.stages[stage] = deque(maxlen=self._keep)
        events.append((now_us() if t_us is None else t_us, index, offset_ms))

    def level(
        self,
        stage: str,
        samples: np.ndarray,
        *,
        t_us: int | None = None,
        index: int = -1,
        rate: int = 48000,
        channels: int = 1,
    ) -> bool:
        """Note a frame at ``stage``; marks it if it is an onset. Returns True for an onset.

        ``samples`` are interleaved (any shape); the onset's position in the frame (ms from its start) is
        kept with the stamp: it shows codec lookahead moving the onset within frames.
        """
        flat = samples.reshape(-1)
        loud = peak(flat) >= self.threshold
        was = self._loud.get(stage, False)
        self._loud[stage] = loud
        if loud and not was:
            scale = 32768.0 if flat.dtype == np.int16 else 1.0
            first = int(np.argmax(np.abs(flat) >= self.threshold * scale)) // max(1, channels)
            self.mark(stage, t_us, index, round(first * 1000.0 / rate, 2))
            return True
        return False

    # -- encoded stages: RTP packets noted by frame index, stamped when their frame is an onset ----------
    def _rtp_index(self, rtp_timestamp: int, samples_per_frame: int) -> int:
        if self._first_rtp is None:
            self._first_rtp = rtp_timestamp
        return ((rtp_timestamp - self._first_rtp) & 0xFFFFFFFF) // samples_per_frame

    def packet(self, rtp_timestamp: int, which: int, samples_per_frame: int = 960) -> None:
        """Note a packet's arrival (``which=0``) or jitter-buffer release (``which=1``) now."""
        index = self._rtp_index(rtp_timestamp, samples_per_frame)
        entry = self._packets.get(index)
        if entry is None:
            entry = self._packets[index] = [0, 0]
            if len(self._packets) > _PACKETS_KEPT:
                self._packets.popitem(last=False)
        entry[which] = now_us()

    def frame_index(self, pts: int | None, samples_per_frame: int) -> int:
        """Index of a decoded frame, counted like :meth:`packet` (from the first frame seen)."""
        if pts is None or samples_per_frame <= 0:
            return -1
        if self._first_pts is None:
            self._first_pts = pts
        return (pts - self._first_pts) // samples_per_frame

    def decoded_onset(self, index: int, prefix: str = "") -> None:
        """Stamp the packet stages of the frame ``index`` (called when that decoded frame is an onset)."""
        entry = self._packets.get(index)
        if entry is None:
            return
        arrival, release = entry
        if arrival:
            self.mark(prefix + "rtp_arrival", arrival, index)
        if release:
            self.mark(prefix + "jitter_release", release, index)

    def as_dict(self) -> dict[str, Any]:
        """``{stage: [[t_us, frame_index, onset_offset_ms], ...]}`` (JSON-friendly)."""
        return {stage: [list(e) for e in list(events)] for stage, events in self.stages.items()}
