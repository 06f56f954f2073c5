"""Audio on an unreliable data channel: the low-latency audio path of a WebRTC connection.

A browser's RTP audio costs latency the page cannot remove: its Opus encoder fills 10-20 ms frames and
looks 6.5 ms ahead, and its receive buffer (NetEq) holds about 30 ms even with ``jitterBufferTarget``
0. With ``audio_transport="datachannel"`` the widget instead reads the mic track's PCM as it comes
(MediaStreamTrackProcessor's 10 ms chunks, or 128-sample quanta from an AudioWorklet), sends it on a data channel labelled :data:`LABEL` (unordered, no retransmits), and plays
the returned audio from its own small adaptive buffer in an AudioWorklet. Video (if any) stays on RTP.
Good on loopback and LANs; over lossy or slow links RTP/Opus (the default) is the better choice: PCM
costs 768 kbit/s at 48 kHz and a lost message is a gap (filled with silence, counted), not concealed.

Protocol: the channel's ``protocol`` string is ``"pcm16/<rate>"`` or ``"pcm16/<rate>/<out_rate>"``: mono
pcm16 from the browser at ``rate``, returned audio at ``out_rate`` (default ``rate``), both 16000..48000
(the widget sends at its mic track's own rate and asks for its AudioContext's rate back; the kernel
resamples with PyAV). Each message is one frame in the WebSocket media format of
:mod:`.wsmedia`: the 13-byte header (kind 1 = audio, sequence, capture time in us since the epoch),
then little-endian pcm16 samples. Messages of another kind or with a bad header are counted and dropped.

Inbound, a sequence gap of up to :data:`MAX_GAP_FILL_FRAMES` frames becomes silence of the same length
(the pipeline's timeline stays intact; ``lost_frames``), and a frame older than one already passed on is
dropped (``late_frames``). Outbound, returned audio is queued (at most :data:`OUT_QUEUE_MAX_S`, oldest
dropped and counted) and released in real time with at most :data:`OUT_LEAD_S` sent ahead, so a
pipeline that produces seconds of audio at once (TTS) does not overflow the browser's buffer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from ..runtime import AudioData, AudioFormat, now_us
from .tracks import AudioNormalizer
from .wsmedia import (
    KIND_AUDIO,
    MAX_PCM_RATE,
    MIN_PCM_RATE,
    PayloadAudioDecoder,
    Pcm16Encoder,
    pack_frame,
    unpack_frame,
    wall_us,
)

__all__ = ["LABEL", "DataChannelAudio", "parse_protocol"]

log = logging.getLogger(__name__)

LABEL = "rm-audio"
MAX_GAP_FILL_FRAMES = 10
OUT_LEAD_S = 0.04
OUT_QUEUE_MAX_S = 2.0
OUT_BUFFERED_MAX = 64 * 1024  # bytes waiting in the channel (SCTP) before frames are dropped
_PROTOCOL = re.compile(r"^pcm16/(\d+)(?:/(\d+))?$")


def parse_protocol(protocol: str) -> tuple[int, int]:
    """``(rate, out_rate)`` of a ``"pcm16/<rate>[/<out_rate>]"`` channel protocol; ``ValueError`` otherwise."""
    match = _PROTOCOL.match(protocol or "")
    if not match:
        raise ValueError(f"{LABEL} channel protocol must be 'pcm16/<rate>[/<out_rate>]', not {protocol!r}")
    rates = (int(match.group(1)), int(match.group(2) or match.group(1)))
    for rate in rates:
        if not MIN_PCM_RATE <= rate <= MAX_PCM_RATE:
            raise ValueError(f"{LABEL} sample rates must be {MIN_PCM_RATE}..{MAX_PCM_RATE} Hz, not {rate}")
    return rates


class DataChannelAudio:
    """Audio in and out on the peer's :data:`LABEL` channel; call everything on the RTC loop.

    ``sink`` receives each inbound frame as :class:`AudioData` in ``audio_format`` (the pipeline's
    ``audio_input``; None: 48 kHz mono), with ``arrival_ts_us`` and ``metadata["capture_ts_us"]``.
    """

    def __init__(self, sink: Callable[[AudioData], None], audio_format: AudioFormat | None) -> None:
        self._sink = sink
        self._audio_format = audio_format
        self.channel: Any = None
        self.rate: int | None = None
        self.error: str | None = None
        self._decoder: PayloadAudioDecoder | None = None
        self._normalizer: AudioNormalizer | None = None
        self._encoder: Pcm16Encoder | None = None
        self._next_seq: int | None = None
        self._last_samples = 0
        self._out: deque[bytes] = deque()
        self._out_samples = 0
        self._out_seq = 0
        self._clock_us = 0  # when the audio sent so far has played out (monotonic us)
        self._pump_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.counters = {"frames_in": 0, "bad_frames": 0, "lost_frames": 0, "late_frames": 0, "frames_out": 0,
                         "out_drops": 0, "out_delayed": 0}

    @property
    def active(self) -> bool:
        """True while an audio channel is attached and open."""
        return self.channel is not None and self.channel.readyState == "open" and not self._closed

    def attach(self, channel: Any) -> bool:
        """Adopt a :data:`LABEL` channel; False (channel closed, ``error`` set) if its protocol is unusable."""
        try:
            rate, out_rate = parse_protocol(channel.protocol)
        except ValueError as exc:
            self.error = str(exc)
            log.warning("refusing data-channel audio: %s", exc)
            channel.close()
            return False
        if self.channel is not None:
            self.channel.close()
        self.channel, self.rate = channel, rate
        self._decoder = PayloadAudioDecoder({"codec": "pcm16", "sample_rate": rate, "channels": 1})
        self._normalizer = AudioNormalizer(self._audio_format)
        self._encoder = Pcm16Encoder(out_rate)
        self._next_seq = None
        channel.on("message", lambda message, ch=channel: self._on_message(ch, message))
        return True

    # -- inbound ---------------------------------------------------------------------------------
    def _on_message(self, channel: Any, message: str | bytes) -> None:
        if channel is not self.channel or self._closed:
            return
        try:
            kind, seq, ts, payload = unpack_frame(message) if isinstance(message, bytes) else (0, 0, 0, b"")
        except ValueError:
            kind = 0
        if kind != KIND_AUDIO:  # text, a short header, video or data: not audio
            self.counters["bad_frames"] += 1
            return
        if self._next_seq is not None:
            gap = (seq - self._next_seq) & 0xFFFFFFFF
            if gap >= 0x80000000:  # behind what was already passed on
                self.counters["late_frames"] += 1
                return
            if gap:
                self.counters["lost_frames"] += gap
                if gap <= MAX_GAP_FILL_FRAMES and self._last_samples:
                    self._deliver(b"\0\0" * (gap * self._last_samples), ts, None)
        self._next_seq = (seq + 1) & 0xFFFFFFFF
        self.counters["frames_in"] += 1
        self._last_samples = len(payload) // 2
        self._deliver(payload, ts, seq)

    def _deliver(self, payload: bytes, ts: int, seq: int | None) -> None:
        assert self._decoder is not None and self._normalizer is not None
        for frame in self._decoder.decode(payload):
            for data in self._normalizer.convert(frame):
                data.metadata["capture_ts_us"] = ts
                if seq is None:
                    data.metadata["concealed"] = True
                else:
                    data.metadata["seq"] = seq
                self._sink(data)

    # -- outbound --------------------------------------------------------------------------------
    def push(self, data: AudioData) -> None:
        """Queue one returned-audio frame; it leaves at once unless more than ``OUT_LEAD_S`` is ahead."""
        if not self.active or self._encoder is None:
            return
        pcm = self._encoder.encode(data)
        if not pcm:
            return
        self._out.append(pcm)
        self._out_samples += len(pcm) // 2
        while self._out_samples > OUT_QUEUE_MAX_S * self._encoder.rate and len(self._out) > 1:
            self._out_samples -= len(self._out.popleft()) // 2
            self.counters["out_drops"] += 1
        if self._pump_handle is None:  # else the pending timer sends it in turn
            self._pump()

    def _pump(self) -> None:
        self._pump_handle = None
        if not self.active or self._encoder is None:
            return
        rate = self._encoder.rate
        while self._out:
            now = now_us()
            self._clock_us = max(self._clock_us, now)
            ahead = self._clock_us - now
            if ahead > OUT_LEAD_S * 1e6:
                self.counters["out_delayed"] += 1
                self._pump_handle = asyncio.get_running_loop().call_later((ahead - OUT_LEAD_S * 1e6) / 1e6, self._pump)
                return
            pcm = self._out.popleft()
            samples = len(pcm) // 2
            self._out_samples -= samples
            self._clock_us += samples * 1_000_000 // rate
            if self.channel.bufferedAmount > OUT_BUFFERED_MAX:
                self.counters["out_drops"] += 1
                continue
            try:
                self.channel.send(pack_frame(KIND_AUDIO, self._out_seq, wall_us(), pcm))
            except Exception as exc:  # noqa: BLE001 - the channel closed under us
                log.debug("data-channel audio send failed: %r", exc)
                self.counters["out_drops"] += 1
                continue
            self._out_seq = (self._out_seq + 1) & 0xFFFFFFFF
            self.counters["frames_out"] += 1

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop sending (queued audio is dropped) and close the channel. Idempotent."""
        self._closed = True
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        self._out.clear()
        self._out_samples = 0
        if self.channel is not None:
            try:
                self.channel.close()
            except Exception:
                pass

    def stats(self) -> dict[str, Any]:
        """Counters, the rate in use, and the returned audio still queued (ms)."""
        rate = self.rate or 48000
        out_rate = self._encoder.rate if self._encoder is not None else None
        return {"label": LABEL, "rate": self.rate, "out_rate": out_rate, "error": self.error, **self.counters,
                "out_queued_ms": round(1000 * self._out_samples / rate, 1),
                "state": None if self.channel is None else self.channel.readyState}

