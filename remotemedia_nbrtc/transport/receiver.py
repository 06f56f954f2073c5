"""Low-latency receive path: a per-receiver replacement for aiortc's jitter buffer.

aiortc's (1.15, 1.16) ``RTCRtpReceiver`` builds ``JitterBuffer(capacity=16, prefetch=4)`` for audio: an Opus
packet is released only once four later frames have arrived (about 80 ms of added delay), and video
frames wait for the first packet of the *next* frame instead of using the RTP marker bit.

:func:`install_low_latency_buffer` swaps that buffer, on one receiver instance, for one of:

- :class:`AudioJitterBuffer` -- an in-order packet is released on arrival (one Opus packet is one
  frame). A packet after a gap is held until the missing one arrives or the reorder wait expires
  (``target_ms``, raised adaptively to ``JITTER_FACTOR`` x the measured interarrival jitter, capped at
  ``max_ms``); then the gap is skipped and counted as lost. A timer releases held packets on time even
  when no further packet arrives.
- :class:`VideoJitterBuffer` -- a frame is released when its marker-bit packet has arrived and every
  packet from the frame's first one up to it is present. Incomplete frames are dropped after
  ``wait_ms`` (NACK/RTX may fill gaps before that) and a PLI is requested.

The receiver's private fields (its jitter buffer, decoder queue...) are reached through
:mod:`.aiortc_internals`, which pins the supported aiortc range and fails loudly outside it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from .aiortc_internals import receiver_internals
from .stagetrace import StageTrace

__all__ = [
    "AudioJitterBuffer",
    "JitterStats",
    "VideoJitterBuffer",
    "install_low_latency_buffer",
    "installed_buffer",
]

logger = logging.getLogger(__name__)

DEFAULT_AUDIO_TARGET_MS = 10.0
"""Reorder wait for audio on loopback/LAN; raised adaptively with measured jitter."""
DEFAULT_AUDIO_MAX_MS = 80.0
DEFAULT_VIDEO_WAIT_MS = 100.0
JITTER_FACTOR = 3.0
_MAX_JUMP = 3000  # a sequence jump beyond this many packets means the stream restarted

Deliver = Callable[[JitterFrame, int], None]


class JitterStats:
    """Counters of one buffer (plain attributes, read by ``ServerPeer.stats``)."""

    def __init__(self) -> None:
        self.packets = 0
        self.frames_released = 0
        self.late = 0
        self.duplicates = 0
        self.lost = 0
        self.frames_dropped = 0
        self.resets = 0
        self.max_hold_ms = 0.0
        self.jitter_ms = 0.0
        self.target_ms = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


class _BaseBuffer:
    """Sequence-number bookkeeping and delivery shared by the audio and video buffers."""

    def __init__(
        self,
        *,
        capacity: int,
        clock_rate: int,
        deliver: Deliver | None,
        clock: Callable[[], float],
    ) -> None:
        self._capacity = capacity
        self._clock_rate = clock_rate
        self._deliver = deliver
        self._clock = clock
        self._next: int | None = None
        self._highest: int | None = None
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._closed = False
        self._last_arrival: float | None = None
        self._last_rtp_ts: int | None = None
        self.stats = JitterStats()
        self.trace: StageTrace | None = None  # profiling only (audio): packet arrival / release stamps

    # aiortc's JitterBuffer exposes ``capacity``; keep it for compatibility.
    @property
    def capacity(self) -> int:
        return self._capacity

    def _unwrap(self, seq: int) -> int:
        if self._highest is None:
            return seq
        delta = (seq - (self._highest & 0xFFFF)) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return self._highest + delta

    def _update_jitter(self, packet: RtpPacket, now: float) -> None:
        # RFC 3550 interarrival jitter, in ms, from in-order packets only.
        if self._last_arrival is not None and self._last_rtp_ts is not None:
            transit_diff = (now - self._last_arrival) - (
                ((packet.timestamp - self._last_rtp_ts) & 0xFFFFFFFF) / self._clock_rate
            )
            if abs(transit_diff) < 1.0:
                self.stats.jitter_ms += (abs(transit_diff) * 1000.0 - self.stats.jitter_ms) / 16.0
        self._last_arrival = now
        self._last_rtp_ts = packet.timestamp

    def _reset(self, ext: int) -> None:
        self.stats.resets += 1
        self.stats.frames_dropped += len(self._held)
        self._held.clear()
        self._next = ext
        self._highest = ext

    def _accept(self, packet: RtpPacket, now: float) -> bool:
        """Store ``packet``; False if it is late, a duplicate or triggered nothing to store."""
        self.stats.packets += 1
        ext = self._unwrap(packet.sequence_number)
        if self._next is None:
            self._next = ext
            self._highest = ext
        elif ext - self._next > _MAX_JUMP or self._next - ext > _MAX_JUMP:
            self._reset(ext)
        if ext < self._next:
            self.stats.late += 1
            return False
        if ext in self._held:
            self.stats.duplicates += 1
            return False
        if self._highest is None or ext > self._highest:
            if self._highest is not None and ext == self._highest + 1:
                self._update_jitter(packet, now)
            self._highest = ext
        self._held[ext] = (packet, now)
        return True

    def _wait_s(self) -> float:
        raise NotImplementedError

    def _drain(self, now: float) -> tuple[bool, list[JitterFrame]]:
        raise NotImplementedError

    def _note_hold(self, arrival: float, now: float) -> None:
        held_ms = (now - arrival) * 1000.0
        self.stats.max_hold_ms = max(self.stats.max_hold_ms, held_ms)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """aiortc's ``JitterBuffer.add`` contract: ``(pli_flag, frame or None)``.

        When several frames become ready at once, all but the last go to ``deliver`` first (in order),
        and the last is returned for aiortc to queue, which keeps decode order intact.
        """
        pli, frames = self.add_all(packet)
        if not frames:
            return pli, None
        if self._deliver is None:
            # without a sink only one frame can leave per call: the earlier ones are dropped (counted)
            self.stats.frames_dropped += len(frames) - 1
            return pli, frames[-1]
        for frame in frames[:-1]:
            self._deliver(frame, frame._payload_type)  # type: ignore[attr-defined]
        return pli, frames[-1]

    def add_all(self, packet: RtpPacket) -> tuple[bool, list[JitterFrame]]:
        """Store ``packet`` and return every frame that is now ready, in order."""
        now = self._clock()
        pli = False
        if self.trace is not None:
            self.trace.packet(packet.timestamp, 0)
        if self._accept(packet, now):
            pli, frames = self._drain(now)
        else:
            frames = []
        self._arm_timer(now)
        self.stats.frames_released += len(frames)
        if self.trace is not None:
            for frame in frames:
                self.trace.packet(frame.timestamp, 1)
        return pli, frames

    def poll(self) -> tuple[bool, list[JitterFrame]]:
        """Release what the reorder wait allows at the current time (the timer calls this)."""
        now = self._clock()
        pli, frames = self._drain(now)
        self.stats.frames_released += len(frames)
        if self.trace is not None:
            for frame in frames:
                self.trace.packet(frame.timestamp, 1)
        return pli, frames

    def _deadline(self) -> float | None:
        if not self._held:
            return None
        first = min(self._held)
        return self._held[first][1] + self._wait_s()

    def _arm_timer(self, now: float) -> None:
        if self._deliver is None or self._closed:
            return
        due = self._deadline()
        if due is None:
            return
        if self._timer is not None and self._timer_due <= due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = loop.call_later(max(0.0, due - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed or self._deliver is None:
            return
        _, frames = self.poll()
        for frame in frames:
            self._deliver(frame, frame._payload_type)  # type: ignore[attr-defined]
        self._arm_timer(self._clock())

    def close(self) -> None:
        """Cancel the pending timer and drop held packets."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()


def _frame(packets: list[RtpPacket]) -> JitterFrame:
    frame = JitterFrame(
        data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
        timestamp=packets[0].timestamp,
    )
    frame._payload_type = packets[0].payload_type  # type: ignore[attr-defined]
    return frame


class AudioJitterBuffer(_BaseBuffer):
    """Releases each in-order audio packet on arrival; holds out-of-order ones up to the target."""

    def __init__(
        self,
        *,
        target_ms: float | None = None,
        max_ms: float = DEFAULT_AUDIO_MAX_MS,
        adaptive: bool = True,
        capacity: int = 64,
        clock_rate: int = 48000,
        deliver: Deliver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity=capacity, clock_rate=clock_rate, deliver=deliver, clock=clock)
        self.base_target_ms = DEFAULT_AUDIO_TARGET_MS if target_ms is None else float(target_ms)
        self.max_ms = max(max_ms, self.base_target_ms)
        self.adaptive = adaptive
        self.stats.target_ms = self.base_target_ms

    def target_ms(self) -> float:
        """Current reorder wait: the base target, raised to JITTER_FACTOR x jitter when adaptive."""
        target = self.base_target_ms
        if self.adaptive:
            target = max(target, JITTER_FACTOR * self.stats.jitter_ms)
        return min(target, self.max_ms)

    def _wait_s(self) -> float:
        return self.target_ms() / 1000.0

    def _drain(self, now: float) -> tuple[bool, list[JitterFrame]]:
        frames: list[JitterFrame] = []
        self.stats.target_ms = self.target_ms()
        while self._held:
            assert self._next is not None
            entry = self._held.pop(self._next, None)
            if entry is not None:
                self._note_hold(entry[1], now)
                frames.append(_frame([entry[0]]))
                self._next += 1
                continue
            # a gap at _next: skip it once the earliest held packet has waited long enough
            first = min(self._held)
            if now - self._held[first][1] >= self._wait_s() or len(self._held) >= self._capacity:
                self.stats.lost += first - self._next
                self._next = first
                continue
            break
        return False, frames


class VideoJitterBuffer(_BaseBuffer):
    """Releases a video frame on its marker-bit packet once every packet of the frame is present."""

    def __init__(
        self,
        *,
        wait_ms: float = DEFAULT_VIDEO_WAIT_MS,
        capacity: int = 1024,
        clock_rate: int = 90000,
        deliver: Deliver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity=capacity, clock_rate=clock_rate, deliver=deliver, clock=clock)
        self.wait_ms = float(wait_ms)
        self.stats.target_ms = self.wait_ms

    def _wait_s(self) -> float:
        return self.wait_ms / 1000.0

    def _reset(self, ext: int) -> None:
        super()._reset(ext)
        self._pending_pli = True

    _pending_pli = False

    def _drain(self, now: float) -> tuple[bool, list[JitterFrame]]:
        frames: list[JitterFrame] = []
        pli = self._pending_pli
        self._pending_pli = False
        while self._held:
            assert self._next is not None
            start = self._next
            if start in self._held:
                timestamp = self._held[start][0].timestamp
                seq = start
                end: int | None = None
                while seq in self._held and self._held[seq][0].timestamp == timestamp:
                    if self._held[seq][0].marker:
                        end = seq
                        break
                    seq += 1
                else:
                    if seq in self._held:  # next frame began without a marker on this one
                        end = seq - 1
                if end is not None:
                    packets = []
                    for s in range(start, end + 1):
                        packet, arrival = self._held.pop(s)
                        self._note_hold(arrival, now)
                        packets.append(packet)
                    frames.append(_frame(packets))
                    self._next = end + 1
                    continue
            # incomplete frame or gap: give up on it after the wait
            first = min(self._held)
            if now - self._held[first][1] < self._wait_s() and len(self._held) < self._capacity:
                break
            pli = True
            if start in self._held:
                timestamp = self._held[start][0].timestamp
                doomed = [s for s, (p, _) in self._held.items() if p.timestamp == timestamp]
                for s in doomed:
                    del self._held[s]
                self.stats.frames_dropped += 1
                self._next = min(self._held) if self._held else max(doomed) + 1
            else:
                self.stats.lost += first - start
                self._next = first
        return pli, frames


def install_low_latency_buffer(
    receiver: RTCRtpReceiver,
    *,
    audio_target_ms: float | None = None,
    video_wait_ms: float = DEFAULT_VIDEO_WAIT_MS,
    trace: StageTrace | None = None,
) -> AudioJitterBuffer | VideoJitterBuffer:
    """Replace ``receiver``'s jitter buffer with a low-latency one (before RTP arrives). Idempotent.

    ``trace`` (profiling) gets the arrival and release time of every audio packet.
    Raises :class:`UnsupportedAiortcError` if aiortc's receiver no longer has the fields this relies on.
    """
    internals = receiver_internals(receiver)
    current = internals.jitter_buffer
    if isinstance(current, (AudioJitterBuffer, VideoJitterBuffer)):
        return current
    kind = internals.kind
    codecs = internals.codecs
    decoder_queue = internals.decoder_queue
    mapper = internals.timestamp_mapper

    def deliver(frame: JitterFrame, payload_type: int) -> None:
        # mirrors the tail of RTCRtpReceiver._handle_rtp_packet for frames released out of band
        if not internals.decoding:
            return
        codec = codecs.get(payload_type)
        if codec is None:
            return
        frame.timestamp = mapper.map(frame.timestamp)
        decoder_queue.put((codec, frame))

    buffer: AudioJitterBuffer | VideoJitterBuffer
    if kind == "audio":
        buffer = AudioJitterBuffer(target_ms=audio_target_ms, deliver=deliver)
        buffer.trace = trace
    else:
        buffer = VideoJitterBuffer(wait_ms=video_wait_ms, deliver=deliver)
    internals.jitter_buffer = buffer
    return buffer


def installed_buffer(receiver: RTCRtpReceiver) -> AudioJitterBuffer | VideoJitterBuffer | None:
    """The low-latency buffer installed on ``receiver``, if any."""
    current = receiver_internals(receiver).jitter_buffer
    return current if isinstance(current, (AudioJitterBuffer, VideoJitterBuffer)) else None
