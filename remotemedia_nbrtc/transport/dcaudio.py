"""Audio on an unreliable data channel: the low-latency audio path of a WebRTC connection.

A browser's RTP audio costs latency the page cannot remove: its Opus encoder fills 10-20 ms frames and
looks 6.5 ms ahead, and its receive buffer (NetEq) holds about 30 ms even with ``jitterBufferTarget``
0. With ``audio_transport="datachannel"`` (what ``"auto"`` picks when the kernel is on the browser's
machine) the widget instead reads the mic track's PCM as it comes (MediaStreamTrackProcessor's 10 ms
chunks, or 128-sample quanta from an AudioWorklet), sends it on a data channel labelled :data:`DC_AUDIO_LABEL`
(unordered, no retransmits), and plays the returned audio from its own small adaptive buffer in an
AudioWorklet. Video (if any) stays on RTP. Good on loopback and LANs; over lossy or slow links RTP/Opus
is the better choice: PCM costs 768 kbit/s at 48 kHz and a lost message is a gap (filled with silence,
counted), not concealed.

Protocol: the channel's ``protocol`` string is ``"pcm16/<rate>"`` or ``"pcm16/<rate>/<out_rate>"``: mono
pcm16 from the browser at ``rate``, returned audio at ``out_rate`` (default ``rate``), both 16000..48000
(the widget sends at its mic track's own rate and asks for its AudioContext's rate back; the kernel
resamples with PyAV). Each message is one frame in the WebSocket media format of
:mod:`.wsmedia`: the 13-byte header (kind 1 = audio, sequence, capture time in us since the epoch),
then little-endian pcm16 samples. Messages of another kind or with a bad header are counted and dropped.

Inbound, a sequence gap of up to :data:`MAX_GAP_FILL_FRAMES` frames becomes silence of the same length
(the pipeline's timeline stays intact; ``lost_frames``), and a frame older than one already passed on is
dropped (``late_frames``). Outbound, returned audio goes through the same :class:`~.tracks.PipelineAudioTrack`
as the RTP path, in 10 ms frames with ``pacing="immediate"``: released as soon as it is delivered but
never more than :data:`OUT_LEAD_MS` ahead of real time (a TTS burst is paced, not dumped into the browser's
buffer, which skips a standing backlog more than 15 ms above its margin), silence when the pipeline is
late, a standing backlog left by a stall trimmed and counted. The frames stream from the first returned
audio on; frames the channel cannot take (over :data:`OUT_BUFFERED_MAX` unsent bytes) are dropped and
counted (``out_drops``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel
from aiortc.mediastreams import MediaStreamError

from ..protocol.datachannel import DC_AUDIO_LABEL
from ..protocol.media_frames import KIND_AUDIO, pack_frame, unpack_frame, wall_us
from ..runtime import AudioData, AudioFormat
from .tracks import AudioNormalizer, PipelineAudioTrack
from .wsmedia import MAX_PCM_RATE, MIN_PCM_RATE, PayloadAudioDecoder

__all__ = ["DataChannelAudio", "parse_protocol"]

log = logging.getLogger(__name__)

MAX_GAP_FILL_FRAMES = 10
OUT_FRAME_MS = 10
OUT_LEAD_MS = 10.0  # small: the browser's playout buffer, not the network, absorbs jitter here
OUT_BUFFERED_MAX = 64 * 1024  # bytes waiting in the channel (SCTP) before frames are dropped
_PROTOCOL = re.compile(r"^pcm16/(\d+)(?:/(\d+))?$")


def parse_protocol(protocol: str) -> tuple[int, int]:
    """``(rate, out_rate)`` of a ``"pcm16/<rate>[/<out_rate>]"`` channel protocol; ``ValueError`` otherwise."""
    match = _PROTOCOL.match(protocol or "")
    if not match:
        raise ValueError(f"{DC_AUDIO_LABEL} channel protocol must be 'pcm16/<rate>[/<out_rate>]', not {protocol!r}")
    rates = (int(match.group(1)), int(match.group(2) or match.group(1)))
    for rate in rates:
        if not MIN_PCM_RATE <= rate <= MAX_PCM_RATE:
            raise ValueError(f"{DC_AUDIO_LABEL} sample rates must be {MIN_PCM_RATE}..{MAX_PCM_RATE} Hz, not {rate}")
    return rates


class DataChannelAudio:
    """Audio in and out on the peer's :data:`DC_AUDIO_LABEL` channel; call everything on the RTC loop.

    ``sink`` receives each inbound frame as :class:`AudioData` in ``audio_format`` (the pipeline's
    ``audio_input``; None: 48 kHz mono), with ``arrival_ts_us`` and ``metadata["capture_ts_us"]``.
    """

    def __init__(self, sink: Callable[[AudioData], None], audio_format: AudioFormat | None) -> None:
        self._sink = sink
        self._audio_format = audio_format
        self.channel: RTCDataChannel | None = None
        self.rate: int | None = None
        self.error: str | None = None
        self.out_rate: int | None = None
        self._decoder: PayloadAudioDecoder | None = None
        self._normalizer: AudioNormalizer | None = None
        self._next_seq: int | None = None
        self._last_samples = 0
        self._out_track: PipelineAudioTrack | None = None
        self._sender: asyncio.Task[None] | None = None
        self._out_seq = 0
        self._closed = False
        self.counters = {"frames_in": 0, "bad_frames": 0, "lost_frames": 0, "late_frames": 0, "frames_out": 0,
                         "out_drops": 0}

    @property
    def active(self) -> bool:
        """True while an audio channel is attached and open."""
        return self.channel is not None and self.channel.readyState == "open" and not self._closed

    def attach(self, channel: Any) -> bool:
        """Adopt a :data:`DC_AUDIO_LABEL` channel; False (channel closed, ``error`` set) if its protocol is unusable."""
        try:
            rate, out_rate = parse_protocol(channel.protocol)
        except ValueError as exc:
            self.error = str(exc)
            log.warning("refusing data-channel audio: %s", exc)
            channel.close()
            return False
        if self.channel is not None:
            self.channel.close()
        self.channel, self.rate, self.out_rate = channel, rate, out_rate
        self._decoder = PayloadAudioDecoder({"codec": "pcm16", "sample_rate": rate, "channels": 1})
        self._normalizer = AudioNormalizer(self._audio_format)
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
        """Queue returned audio; frames leave paced by the outgoing track (see the module docstring)."""
        if not self.active or self.out_rate is None:
            return
        if self._out_track is None:
            self._out_track = PipelineAudioTrack(self.out_rate, frame_ms=OUT_FRAME_MS, pacing="immediate",
                                                 max_lead_ms=OUT_LEAD_MS)
            self._sender = asyncio.get_running_loop().create_task(self._send_frames(self._out_track),
                                                                  name="rm-dc-audio-out")
        self._out_track.push(data)

    def flush(self) -> int:
        """Drop the returned audio waiting to be sent (barge-in); the number of 20 ms frames dropped."""
        return 0 if self._out_track is None else self._out_track.flush()

    async def _send_frames(self, track: PipelineAudioTrack) -> None:
        try:
            while self.active:
                frame = await track.recv()
                pcm = frame.to_ndarray()[0, :: len(frame.layout.channels)]  # equal channels: keep the first
                channel = self.channel
                if channel is None:  # closed while the frame was paced
                    break
                if channel.bufferedAmount > OUT_BUFFERED_MAX:
                    self.counters["out_drops"] += 1
                    continue
                try:
                    channel.send(pack_frame(KIND_AUDIO, self._out_seq, wall_us(), pcm.astype("<i2").tobytes()))
                except Exception as exc:  # noqa: BLE001 - the channel closed under us
                    log.debug("data-channel audio send failed: %r", exc)
                    self.counters["out_drops"] += 1
                    continue
                self._out_seq = (self._out_seq + 1) & 0xFFFFFFFF
                self.counters["frames_out"] += 1
        except MediaStreamError:
            pass

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop sending (queued audio is dropped) and close the channel. Idempotent."""
        self._closed = True
        if self._out_track is not None:
            self._out_track.stop()
        if self._sender is not None:
            self._sender.cancel()
        if self.channel is not None:
            try:
                self.channel.close()
            except Exception:
                pass

    def stats(self) -> dict[str, Any]:
        """Counters, the rates in use, and the outgoing track's (``out``: see :meth:`PipelineAudioTrack.stats`)."""
        return {"label": DC_AUDIO_LABEL, "rate": self.rate, "out_rate": self.out_rate, "error": self.error,
                **self.counters,
                "out": None if self._out_track is None else self._out_track.stats(),
                "state": None if self.channel is None else self.channel.readyState}

