"""Media tracks between aiortc and the pipeline.

Inbound: :class:`TrackReader` drains one received track on the RTC loop (always, so aiortc's queues
never grow), converts frames to :class:`AudioData` / :class:`VideoData` and hands them to a sink
(the bridge). Audio is normalised once, by one persistent ``av.AudioResampler``, to the pipeline's
``audio_input`` format; with no declared format it becomes 48 kHz mono (aiortc decodes Opus to 48 kHz
stereo s16).

Outbound: :class:`PipelineAudioTrack` turns pipeline audio into steady 20 ms frames paced by a clock
(silence on underrun); :class:`PipelineVideoTrack` sends the newest pipeline frame.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.codecs.opus import SAMPLE_RATE as OPUS_RATE
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError

from ..runtime import AudioData, AudioFormat, VideoData, now_us
from ..runtime.queues import DropOldest
from .aiortc_internals import sender_encoder, set_sender_encoder
from .config import PACING_MODES
from .stagetrace import StageTrace

__all__ = ["PipelineAudioTrack", "PipelineVideoTrack", "TrackReader", "install_opus_frame_size"]

log = logging.getLogger(__name__)

AUDIO_PTIME_S = 0.020
VIDEO_CLOCK_RATE = 90000
_LAYOUTS = {1: "mono", 2: "stereo"}


DEFAULT_AUDIO_INPUT = AudioFormat(48000, 1)
"""What received audio becomes when the pipeline declares no ``audio_input`` (RemoteMedia: 48 kHz mono)."""


class AudioNormalizer:
    """Converts decoded ``av.AudioFrame``s to :class:`AudioData` in one target format.

    Channels are mixed by averaging (aiortc decodes a browser's mono Opus to two equal channels, and
    swresample's stereo->mono matrix would add 3 dB to them); only the rate goes through one persistent
    ``av.AudioResampler``.
    """

    def __init__(self, target: AudioFormat | None, stream_id: str | None = None) -> None:
        self.target = target or DEFAULT_AUDIO_INPUT
        self.stream_id = stream_id
        self._resampler: av.AudioResampler | None = None
        self._resampler_key: tuple[int, int] | None = None

    def convert(self, frame: av.AudioFrame) -> list[AudioData]:
        arrival = now_us()
        data = AudioData.from_av_frame(frame, stream_id=self.stream_id)
        channels = self.target.channels
        if data.channels != channels:
            mixed = data.samples.mean(axis=1, keepdims=True)
            data = data.replace(samples=np.repeat(mixed, channels, axis=1) if channels > 1 else mixed)
        if data.sample_rate == self.target.sample_rate:
            data.arrival_ts_us = arrival
            return [data]
        key = (data.sample_rate, channels)
        if self._resampler is None or self._resampler_key != key:
            self._resampler = av.AudioResampler(
                format="flt", layout=_LAYOUTS.get(channels, f"{channels}c"), rate=self.target.sample_rate
            )
            self._resampler_key = key
        out = []
        for resampled in self._resampler.resample(data.to_av_frame()):
            converted = AudioData.from_av_frame(resampled, stream_id=self.stream_id)
            converted.arrival_ts_us = arrival
            out.append(converted)
        return out


class TrackReader:
    """Reads a received track until it ends; never lets ``MediaStreamError`` escape."""

    def __init__(
        self,
        track: MediaStreamTrack,
        sink: Callable[[Any], None],
        *,
        audio_format: AudioFormat | None = None,
        video_format: str | None = None,
        stream_id: str | None = None,
        trace: StageTrace | None = None,
    ) -> None:
        self.track = track
        self.trace = trace if track.kind == "audio" else None
        self.kind = track.kind
        self._sink = sink
        self._video_format = video_format
        self._stream_id = stream_id
        self._audio = AudioNormalizer(audio_format, stream_id) if track.kind == "audio" else None
        self.frames = 0
        self.errors = 0
        self.first_frame_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> TrackReader:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"rm-read-{self.kind}")
        return self

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
            self.frames += 1
            try:
                if self._audio is not None:
                    audio = cast(av.AudioFrame, frame)  # what an audio track's recv() yields
                    if self.trace is not None:
                        self._trace_decoded(audio)
                    for data in self._audio.convert(audio):
                        if self.trace is not None:
                            self.trace.level("reader", data.samples, rate=data.sample_rate, channels=data.channels)
                        self._sink(data)
                else:
                    self._sink(
                        VideoData.from_av_frame(
                            frame,
                            pixel_format=self._video_format,
                            stream_id=self._stream_id,
                            frame_number=self.frames - 1,
                        )
                    )
            except Exception:
                self.errors += 1
                if self.errors == 1:
                    log.exception("converting a received %s frame failed", self.kind)

    def _trace_decoded(self, frame: av.AudioFrame) -> None:
        assert self.trace is not None
        t = now_us()
        index = self.trace.frame_index(frame.pts, frame.samples)
        channels = len(frame.layout.channels)
        if self.trace.level("decoded", frame.to_ndarray(), t_us=t, index=index, rate=frame.sample_rate,
                            channels=channels):
            self.trace.decoded_onset(index)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class PipelineAudioTrack(MediaStreamTrack):
    """Audio from the pipeline, sent as ``frame_ms`` (20 or 10 ms) s16 frames at ``sample_rate``.

    :meth:`push` accepts :class:`AudioData` at any rate and channel count (downmixed by averaging,
    resampled by one persistent resampler per input format). Frames go out as stereo with equal
    channels: aiortc's Opus encoder would otherwise upmix mono with FFmpeg's -3 dB pan law. When nothing
    is queued, ``recv`` sends silence. At most ``max_buffer_s`` is queued; beyond that the oldest samples
    are dropped and counted (``dropped_samples``).

    Standing backlog: input and output run at the same rate, so audio that arrives after a silent frame
    was sent in its place would otherwise stay that much late for the rest of the stream (each underrun
    adding 20 ms). The track watches the backlog left after each frame is taken; when its minimum over
    ``trim_window_s`` has stayed at or above ``target_ms`` + ``hysteresis_ms`` while the pipeline kept
    delivering audio at about real-time rate, the oldest queued audio is trimmed down to ``target_ms``
    in whole 20 ms frames, counted in ``trimmed_frames`` / ``trimmed_samples``. A backlog that is
    draining (e.g. TTS pushing an utterance faster than real time) is never trimmed.
    ``target_ms=None`` disables trimming.

    Pacing: a frame of queued audio leaves as soon as it is queued, limited by a token bucket that
    refills one frame per 20 ms of real time and holds ``1 + max_lead_ms / 20`` frames, so audio is never
    sent more than ``max_lead_ms`` ahead of real time (a pipeline producing faster than real time, e.g.
    TTS, is paced). Silence frames take no token: audio that arrives after silence went out in its place
    is not "early" and is not held back (a clock counting silence ratcheted ahead at every late frame,
    and then held every frame back by up to 20 ms per late event). After a burst larger than the bucket
    (a stall), a real-time stream would stay locked to the bucket's phase, each frame waiting for its
    token; so when every frame of a ``trim_window_s`` window waited and none stayed queued behind it,
    the bucket is credited with the shortest wait. Silence goes out only when nothing came ``grace_ms``
    past the frame's slot on the output clock. This is ``pacing="immediate"``: the lowest latency, but
    frames leave at the (irregular) moments the pipeline delivers them.

    ``pacing="smooth"``: frames leave on a regular ``frame_ms`` grid whose phase follows the audio's
    arrival, so a receiver with an adaptive jitter buffer (a browser's NetEq) sees evenly spaced packets
    and keeps its buffer short; RTP timestamps (sample counts) then match send times. The track records,
    for each frame, when its audio was complete (pushed) relative to its slot (a frame that never came
    within ``grace_ms`` counts as ``grace_ms`` late). Every
    ``smooth_window_s`` the grid moves so that the ``smooth_quantile`` of those lateness values sits
    ``smooth_margin_ms`` before the slot: most frames are ready just before their slot and wait for it.
    Moves are asymmetric because a browser's buffer (NetEq) keeps whatever an earlier grid adds to it:
    later by up to 5 ms per window, earlier by 1 ms and only with 2 ms to spare (and only while audio
    arrives at about real-time rate). For the first half window of audio (again after a silent window) the
    grid stays where it is; it is then moved (by at most a frame) to just after the earliest of those
    arrivals. Cost: a frame waits for its slot (on average the spread of the arrival times around that
    quantile, plus the margin); audio queued ahead (TTS) leaves one frame per slot.
    """

    kind = "audio"

    def __init__(
        self,
        sample_rate: int = 48000,
        *,
        max_buffer_s: float = 10.0,
        target_ms: float | None = 0.0,
        hysteresis_ms: float = 20.0,
        trim_window_s: float = 0.5,
        max_lead_ms: float = 40.0,
        grace_ms: float = 10.0,
        frame_ms: float = 20.0,
        pacing: str = "immediate",
        smooth_quantile: float = 0.9,
        smooth_margin_ms: float = 1.0,
        smooth_window_s: float = 0.5,
    ) -> None:
        super().__init__()
        if pacing not in PACING_MODES:
            raise ValueError(f"pacing must be one of {PACING_MODES}, not {pacing!r}")
        if frame_ms not in (10.0, 20.0):
            raise ValueError(f"frame_ms must be 10 or 20, not {frame_ms!r}")
        self.ptime_s = frame_ms / 1000
        self.pacing = pacing
        self.max_lead_s = max_lead_ms / 1000
        self.grace_s = grace_ms / 1000
        self._bucket = 1.0 + self.max_lead_s / self.ptime_s
        self._tokens = self._bucket
        self._refilled: float | None = None
        self._hold_min: float | None = None  # over the window: shortest token wait, longest backlog behind
        self._hold_backlog = 0
        self._hold_count = 0
        self._data_event = asyncio.Event()
        self.sample_rate = sample_rate
        self.samples_per_frame = int(sample_rate * self.ptime_s)
        self._max_samples = int(max_buffer_s * sample_rate)
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0
        self._resampler: av.AudioResampler | None = None
        self._resampler_key: tuple[int, int] | None = None
        self._start: float | None = None
        self._timestamp = 0
        self.target_ms = target_ms
        self._target = None if target_ms is None else max(0, int(target_ms * sample_rate / 1000))
        self._hysteresis = max(1, int(hysteresis_ms * sample_rate / 1000))
        self._window_frames = max(1, round(trim_window_s / self.ptime_s))
        self._window_min: int | None = None
        self._window_count = 0
        self._window_in = 0
        self.frames_sent = 0
        self.silent_frames = 0
        self.samples_in = 0
        self.samples_sent = 0
        self.dropped_samples = 0
        self.trimmed_frames = 0
        self.trimmed_samples = 0
        self.flushed_samples = 0
        self.trace: StageTrace | None = None  # profiling: onset stamps at push / out / sent
        # smooth pacing: (stream position after, time) of recent pushes; lateness samples of the current
        # window; samples pushed and time at the window's start; grid anchored to the audio
        self._pushes: DropOldest[tuple[int, float]] = DropOldest(4096)  # bounded in case nobody pulls frames
        self._late_start: tuple[int, float] | None = None
        self._quantile = smooth_quantile
        self._margin_s = smooth_margin_ms / 1000
        self._late: list[float] = []
        self._late_data = 0
        self._late_window = max(4, round(smooth_window_s / self.ptime_s))
        self._anchored = False
        self._anchor: list[float] = []
        self._anchor_frames = max(2, self._late_window // 2)
        self.phase_shifts = 0
        self.phase_shift_ms = 0.0
        self.late_frames = 0
        self._trace_sent_pending = False

    @property
    def queued_s(self) -> float:
        return self._queued / self.sample_rate

    def push(self, data: AudioData) -> None:
        """Queue pipeline audio (call on the RTC loop)."""
        if self.trace is not None:
            self.trace.level("push", data.samples, rate=data.sample_rate, channels=data.channels)
        mono = data.samples.mean(axis=1) if data.channels > 1 else data.samples[:, 0]
        if data.sample_rate != self.sample_rate:
            mono = self._resample(mono, data.sample_rate)
        pcm = np.clip(np.rint(mono * 32768.0), -32768, 32767).astype(np.int16)
        if pcm.size == 0:
            return
        self.samples_in += pcm.size
        self._window_in += pcm.size
        self._chunks.append(pcm)
        self._queued += pcm.size
        if self.pacing == "smooth":
            self._pushes.push((self.samples_in, time.monotonic()))
        self._data_event.set()
        while self._queued > self._max_samples and self._chunks:
            dropped = self._chunks.popleft()
            self._queued -= dropped.size
            self.dropped_samples += dropped.size

    def _resample(self, mono: np.ndarray, rate: int) -> np.ndarray:
        key = (rate, 1)
        if self._resampler is None or self._resampler_key != key:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
            self._resampler_key = key
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(mono, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self) -> int:
        """Drop everything queued (barge-in); returns the number of 20 ms frames dropped (a partial one counts)."""
        per_20ms = max(1, self.sample_rate // 50)
        frames = -(-self._queued // per_20ms)
        self.flushed_samples += self._queued
        self._chunks.clear()
        self._queued = 0
        self._reset_window()
        return frames

    def _discard(self, n: int) -> int:
        """Remove up to ``n`` of the oldest queued samples; returns how many were removed."""
        removed = 0
        while removed < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - removed, chunk.size)
            removed += take
            if take == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
        self._queued -= removed
        return removed

    def _take(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.int16)
        filled = 0
        while filled < n and self._chunks:
            chunk = self._chunks[0]
            take = min(n - filled, chunk.size)
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
        self._queued -= filled
        self.samples_sent += filled
        if filled == 0:
            self.silent_frames += 1
        return out

    def _reset_window(self) -> None:
        self._window_min = None
        self._window_count = 0
        self._window_in = 0

    def _trim_standing_backlog(self) -> None:
        """Called once per frame, after it is taken: see the class docstring."""
        if self._target is None:
            return
        self._window_min = self._queued if self._window_min is None else min(self._window_min, self._queued)
        self._window_count += 1
        if self._window_count < self._window_frames:
            return
        expected = self._window_count * self.samples_per_frame
        standing, delivered = self._window_min, self._window_in
        self._reset_window()
        # only a live stream (input at about the output rate) has a standing backlog worth trimming
        if not 0.75 * expected <= delivered <= 1.25 * expected:
            return
        if standing < self._target + self._hysteresis:
            return
        frames = (standing - self._target) // self.samples_per_frame
        if frames <= 0:
            return
        removed = self._discard(frames * self.samples_per_frame)
        self.trimmed_samples += removed
        self.trimmed_frames += frames
        # the backlog drained the token bucket, which refills only as fast as live audio arrives: without a
        # fresh bucket every later frame waited for its token (about 20 ms more latency for good)
        self._tokens = self._bucket
        log.debug("audio out: trimmed %d ms of standing backlog", removed * 1000 // self.sample_rate)

    def take_frame(self) -> np.ndarray:
        """The next 20 ms of mono s16 samples (silence if nothing is queued), then the backlog check.

        ``recv`` calls this once per frame period; exposed for tests and custom pacing.
        """
        pcm = self._take(self.samples_per_frame)
        self._trim_standing_backlog()
        return pcm

    def stats(self) -> dict[str, Any]:
        """Counters; every sample pushed is sent, queued, trimmed, dropped (overflow) or flushed."""
        return {
            "frames_sent": self.frames_sent,
            "silent_frames": self.silent_frames,
            "queued_ms": round(self.queued_s * 1000, 1),
            "queued_samples": self._queued,
            "target_ms": self.target_ms,
            "samples_in": self.samples_in,
            "samples_sent": self.samples_sent,
            "trimmed_frames": self.trimmed_frames,
            "trimmed_samples": self.trimmed_samples,
            "trimmed_ms": round(self.trimmed_samples * 1000 / self.sample_rate, 1),
            "dropped_samples": self.dropped_samples,
            "dropped_ms": round(self.dropped_samples * 1000 / self.sample_rate, 1),
            "flushed_samples": self.flushed_samples,
            "frame_ms": round(self.ptime_s * 1000),
            "pacing": self.pacing,
            **({"phase_shifts": self.phase_shifts, "phase_shift_ms": round(self.phase_shift_ms, 1),
                "late_frames": self.late_frames} if self.pacing == "smooth" else {}),
        }

    def _note_hold(self, wait: float) -> None:
        """Credit the bucket when a live stream stays phase-locked to it (see the class docstring)."""
        self._hold_min = wait if self._hold_min is None else min(self._hold_min, wait)
        self._hold_backlog = max(self._hold_backlog, self._queued - self.samples_per_frame)
        self._hold_count += 1
        if self._hold_count < self._window_frames:
            return
        if self._hold_min > 0 and self._hold_backlog <= 0:
            self._tokens = min(self._bucket, self._tokens + self._hold_min / self.ptime_s)
        self._hold_min, self._hold_backlog, self._hold_count = None, 0, 0

    def _refill(self, now: float) -> None:
        if self._refilled is not None:
            self._tokens = min(self._bucket, self._tokens + (now - self._refilled) / self.ptime_s)
        self._refilled = now

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._trace_sent_pending and self.trace is not None:
            # aiortc's sender asks for the next frame once the previous one is encoded and sent
            self._trace_sent_pending = False
            self.trace.mark("sent")
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._timestamp += self.samples_per_frame
        if self.pacing == "smooth":
            await self._pace_smooth()
        else:
            await self._pace_immediate()
        return self._next_frame()

    async def _wait_data(self, until: float) -> None:
        """Wait until a whole frame is queued or ``until`` (monotonic) has passed."""
        while self._queued < self.samples_per_frame:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._data_event.clear()
            try:
                await asyncio.wait_for(self._data_event.wait(), remaining)
            except TimeoutError:  # on Python 3.10 not the builtin TimeoutError
                return
            if self.readyState != "live":
                raise MediaStreamError

    async def _pace_smooth(self) -> None:
        """Regular grid, phase locked to the audio's arrival (see the class docstring)."""
        assert self._start is not None  # recv() starts the clock before it paces
        slot = self._start + self._timestamp / self.sample_rate
        await self._wait_data(slot + self.grace_s)
        if self._queued >= self.samples_per_frame:
            ready = self._ready_time()
            if not self._anchored:
                # first audio: the earliest arrival phase over half a window, then the grid is put just
                # after it (later moves only shrink a browser's buffer; earlier ones grow it), by at most
                # a frame either way (bulk audio looks arbitrarily early and must still leave in real time)
                self._anchor.append(ready - slot)
                if len(self._anchor) >= self._anchor_frames:
                    self._anchored = True
                    shift = min(self.ptime_s, max(-self.ptime_s, min(self._anchor) + self._margin_s))
                    self._start += shift
                    slot += shift
                    self._anchor.clear()
            else:
                self._note_lateness(ready - slot, True)
                if ready > slot:
                    self.late_frames += 1
            wait = slot - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if self.readyState != "live":
                    raise MediaStreamError
        else:
            if self._anchored:
                self._note_lateness(self.grace_s, False)
            if time.monotonic() > slot + self.grace_s + 0.1:
                self._start = time.monotonic() - self._timestamp / self.sample_rate

    def _ready_time(self) -> float:
        """When the audio of the frame at the head of the queue was complete (pushed)."""
        end = self.samples_in - self._queued + self.samples_per_frame
        while len(self._pushes) > 1 and self._pushes.peek()[0] < end:
            self._pushes.popleft()
        return self._pushes.peek()[1] if self._pushes else time.monotonic()

    def _note_lateness(self, late: float, data: bool) -> None:
        now = time.monotonic()
        if self._late_start is None:
            self._late_start = (self.samples_in, now)
        self._late.append(late)
        self._late_data += data
        if len(self._late) < self._late_window:
            return
        if 2 * self._late_data < len(self._late):
            self._anchored = False  # mostly silence: re-anchor on the next audio
        else:
            ordered = sorted(self._late)
            q = ordered[min(len(ordered) - 1, int(self._quantile * len(ordered)))]
            shift = q + self._margin_s
            # later at once (up to 5 ms); earlier by 1 ms and only with 2 ms to spare: an earlier grid
            # adds to what a receiver's adaptive buffer holds, and it rarely gives that back
            shift = min(0.005, shift) if shift > 0 else (max(-0.001, shift) if shift < -0.002 else 0.0)
            # earlier only for a live stream (audio at about real-time rate): audio queued in bulk (TTS)
            # is "early" without the grid being late, and must keep leaving at real time
            delivered = (self.samples_in - self._late_start[0]) / self.sample_rate
            elapsed = now - self._late_start[1]
            if shift < 0 and not 0.75 * elapsed <= delivered <= 1.25 * elapsed:
                shift = 0.0
            if abs(shift) >= 0.0005 and self._start is not None:
                self._start += shift
                self.phase_shifts += 1
                self.phase_shift_ms += shift * 1000
        self._late.clear()
        self._late_data = 0
        self._late_start = (self.samples_in, now)

    async def _pace_immediate(self) -> None:
        # A frame leaves as soon as a whole frame of pipeline audio is queued (token bucket permitting,
        # see the class docstring); waiting for a slot would add up to a frame to every round trip.
        assert self._start is not None  # recv() starts the clock before it paces
        slot = self._start + self._timestamp / self.sample_rate
        await self._wait_data(slot + self.grace_s)
        if self._queued >= self.samples_per_frame:
            self._refill(time.monotonic())
            wait = max(0.0, (1.0 - self._tokens) * self.ptime_s)
            if wait > 0:
                await asyncio.sleep(wait)
                if self.readyState != "live":
                    raise MediaStreamError
                self._refill(time.monotonic())
            self._tokens = max(0.0, self._tokens - 1.0)
            self._note_hold(wait)
            ahead = slot - time.monotonic()
            if ahead > self.max_lead_s:
                # audio released early keeps the silence clock at most max_lead ahead of real time
                self._start -= ahead - self.max_lead_s
        elif time.monotonic() > slot + self.grace_s + 0.1:
            # far behind the clock (e.g. the loop stalled): restart the clock instead of bursting silence
            self._start = time.monotonic() - self._timestamp / self.sample_rate

    def _next_frame(self) -> av.AudioFrame:
        pcm = np.repeat(self.take_frame(), 2)
        if self.trace is not None:
            index = self._timestamp // self.samples_per_frame
            self._trace_sent_pending = self.trace.level("out", pcm, index=index, rate=self.sample_rate, channels=2)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self.frames_sent += 1
        return frame


class _OpusEncoder(OpusEncoder):
    """aiortc's Opus encoder with another frame duration (aiortc's own always sends 20 ms packets)."""

    def __init__(self, frame_ms: int) -> None:
        super().__init__()
        self.codec.options = {"application": "voip", "frame_duration": str(frame_ms)}
        self.resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_RATE * frame_ms // 1000
        )


def install_opus_frame_size(sender: Any, frame_ms: int) -> bool:
    """Make ``sender`` (an ``RTCRtpSender`` whose negotiated codec is Opus, before its first frame) send
    ``frame_ms`` Opus packets. False (nothing changed) if it already encodes."""
    if frame_ms == 20:
        return True
    if sender_encoder(sender) is not None:
        log.warning("the audio sender already encodes: keeping its 20 ms Opus packets")
        return False
    set_sender_encoder(sender, _OpusEncoder(frame_ms))
    return True


class PipelineVideoTrack(MediaStreamTrack):
    """Video from the pipeline: ``recv`` returns the newest pushed frame (older ones are dropped)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._latest: VideoData | None = None
        self._ready = asyncio.Event()
        self._start: float | None = None
        self.frames_in = 0
        self.frames_sent = 0
        self.drops = 0

    def push(self, data: VideoData) -> None:
        """Offer a frame (call on the RTC loop); an unsent older frame is replaced and counted."""
        if self._latest is not None:
            self.drops += 1
        self._latest = data
        self.frames_in += 1
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        while self._latest is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        data, self._latest = self._latest, None
        frame = data.to_av_frame()
        now = time.monotonic()
        if self._start is None:
            self._start = now
        frame.pts = int((now - self._start) * VIDEO_CLOCK_RATE)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()
