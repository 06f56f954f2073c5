"""WebSocket media fallback: media and data over the signaling WebSocket when WebRTC cannot connect.

Binder, many JupyterHubs and corporate networks allow no UDP, so ICE fails. Then the browser sends
its media over the *same* authenticated WebSocket it uses for JSON-RPC signaling
(``remotemedia/ws/<session_id>`` through the server extension, or ``/ws`` of the standalone
server). The pipeline gets the same :class:`AudioData` / :class:`VideoData` as over WebRTC (decoded
by the same :class:`~.tracks.AudioNormalizer` to the pipeline's ``audio_input`` format), and its
outputs come back in the same JSON shape as on the data channel (:mod:`.wire`).

Protocol (version 1)
--------------------
Text frames stay JSON-RPC 2.0 (``peer.announce`` first, as for WebRTC). Then:

``media.open`` (request) params, all optional::

    {"audio": {"codec": "pcm16" | "opus", "sample_rate": int, "channels": 1 | 2},
     "video": {"codec": "jpeg" | "webp", "max_fps": number},
     "receive_audio": bool | {"sample_rate": int},      # returned pipeline audio, pcm16 mono
     "receive_video": bool | {"max_fps": number}}       # returned pipeline video, jpeg

  - ``pcm16``: little-endian signed 16-bit, interleaved, ``sample_rate`` in 16000..48000
    (8 kHz and mu-law are refused: -32007 codec mismatch). Any frame length; 20 ms is usual.
  - ``opus``: one raw Opus packet per binary frame (WebCodecs ``AudioEncoder`` output, no Ogg),
    ``sample_rate`` 48000 (what WebCodecs produces), 1 or 2 channels.
  - ``jpeg`` / ``webp``: one whole still image per frame; even width and height; ``max_fps``
    1..30 (default 10) bounds what the kernel accepts (extra frames are dropped, counted).
  - the result is ``{"session_id", "accepted": {"audio", "video", "audio_out", "video_out"},
    "header_bytes": 13, "max_frame_bytes": int}`` where each ``accepted`` entry is the format
    in force (``null`` when not used). A second ``media.open`` replaces the first (new session),
    as does ``peer.offer``; ``media.open`` replaces a WebRTC peer of the same connection.
  - errors: -32007 unsupported codec/format, -32600 ``media.open`` refused because the server
    forces WebRTC (``PeerConfig.transport == "webrtc"``), -32001 session limit.

``media.send`` (request or notification) ``{"message": str}``: one data-channel style text
message (see :mod:`.wire`: ``{"type": "text", ...}``, ``{"type": "json", "value": ...}``, ...).

``media.close`` (request): end of stream. The kernel stops taking media, lets the pipeline drain,
sends every remaining output, then answers ``{"closed": true, "stats": {...}}`` (within 5 s).

``media.stats`` (request): the kernel side's counters (see :meth:`WebSocketMediaPeer.stats`).

Binary frames, both directions, one media unit each, a 13-byte little-endian header::

    offset 0  u8   kind      1 = audio, 2 = video, 3 = binary data
    offset 1  u32  sequence  per kind and direction, starts at 0, +1 per frame (wraps at 2**32)
    offset 5  u64  timestamp capture time, microseconds since the Unix epoch (sender's wall clock;
                             browser: Math.round((performance.timeOrigin + performance.now()) * 1000))
    offset 13      payload   audio: pcm16 bytes or one Opus packet; video: a JPEG/WebP file;
                             data: raw bytes (-> BinaryData input / from a BinaryData output)

Kernel -> browser:

- ``media.output`` notifications whose params are exactly the data-channel JSON of :mod:`.wire`
  (``{"type": "json"|"text"|"error"|"metrics", ..., "ts_us", "node"?, "media_ts_us"?}``);
- binary kind 1: returned audio as pcm16 mono at ``accepted.audio_out.sample_rate``, kind 2:
  returned video as JPEG (newest frame only, at most ``video_out.max_fps``), kind 3: BinaryData.
  JSON outputs and BinaryData keep their order relative to each other.

Binary frames sent before ``media.open`` get one JSON-RPC error (-32600, id null) and are ignored.
Sizes: a frame may not exceed the socket's limit (256 KiB through the server extension).

Backpressure: every buffer is bounded. Kernel, inbound: audio goes through the bridge's audio
lane (bounded, drops counted as ``audio_drops``), video through a keep-newest slot (replaced frames
counted as ``video_drops``). Kernel, outbound: returned audio queue (2 s, oldest dropped and
counted), video keep-newest, JSON outputs bounded (counted). The extension drops binary frames for
a socket with too many unflushed writes (counted in ``remotemedia/status`` ``binary_dropped``).
The client does the same on its side (see :mod:`remotemedia_nbrtc.standalone.websocket_client`).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np

from ..protocol.jsonrpc import ErrorCode, Notification, notification
from ..protocol.media_frames import KIND_AUDIO, KIND_DATA, KIND_VIDEO, pack_frame, unpack_frame, wall_us
from ..runtime import (
    AudioData,
    AudioFormat,
    BinaryData,
    PipelineRunner,
    PipelineSource,
    RuntimeData,
    StreamSession,
    VideoData,
)
from ..runtime.queues import DropOldest
from . import signaling as rpc
from .bridge import SessionBridge
from .still_images import StillImageDecoder, StillImageEncoder
from .tracks import AudioNormalizer
from .wire import MessageTooLarge, decode_message, encode_error, encode_output

__all__ = [
    "MediaFormats",
    "PayloadAudioDecoder",
    "Pcm16Encoder",
    "WebSocketMediaPeer",
    "negotiate",
]

log = logging.getLogger(__name__)

AUDIO_CODECS = ("pcm16", "opus")
VIDEO_CODECS = ("jpeg", "webp")
MIN_PCM_RATE, MAX_PCM_RATE = 16000, 48000
DEFAULT_AUDIO_OUT_RATE = 24000
DEFAULT_MAX_FPS = 10.0
MAX_FPS = 30.0
AUDIO_OUT_MAX_S = 2.0
TEXT_OUT_MAX = 1024
DRAIN_TIMEOUT_S = 5.0

SendText = Callable[[str], Awaitable[None]]
SendBinary = Callable[[bytes], "Awaitable[None] | None"]




@dataclass
class MediaFormats:
    """What ``media.open`` settled on (``None``: that direction / kind is not used)."""

    audio: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    audio_out: dict[str, Any] | None = None
    video_out: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"audio": self.audio, "video": self.video, "audio_out": self.audio_out, "video_out": self.video_out}


def _mismatch(reason: str) -> rpc.RpcError:
    return rpc.RpcError(ErrorCode.CODEC_MISMATCH, "Codec mismatch",
                        {"reason": reason, "audio_codecs": list(AUDIO_CODECS), "video_codecs": list(VIDEO_CODECS)})


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise rpc.RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"{name!r} must be a number"})
    return float(value)


def negotiate(params: dict[str, Any]) -> MediaFormats:
    """Validate ``media.open`` params; the formats in force, or :class:`RpcError` (-32007 / -32602)."""
    formats = MediaFormats()
    audio = params.get("audio")
    if audio is not None:
        if not isinstance(audio, dict):
            raise rpc.RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": "'audio' must be an object"})
        codec = audio.get("codec", "pcm16")
        if codec not in AUDIO_CODECS:
            raise _mismatch(f"audio codec {codec!r} is not supported (8 kHz mu-law never is)")
        rate = int(_number(audio.get("sample_rate", 48000), "sample_rate"))
        channels = int(_number(audio.get("channels", 1), "channels"))
        if channels not in (1, 2):
            raise _mismatch("audio channels must be 1 or 2")
        if codec == "pcm16" and not MIN_PCM_RATE <= rate <= MAX_PCM_RATE:
            raise _mismatch(f"pcm16 sample_rate must be {MIN_PCM_RATE}..{MAX_PCM_RATE} Hz, not {rate}")
        if codec == "opus" and rate != 48000:
            raise _mismatch("opus sample_rate must be 48000")
        formats.audio = {"codec": codec, "sample_rate": rate, "channels": channels}
    video = params.get("video")
    if video is not None:
        if not isinstance(video, dict):
            raise rpc.RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": "'video' must be an object"})
        codec = video.get("codec", "jpeg")
        if codec not in VIDEO_CODECS:
            raise _mismatch(f"video codec {codec!r} is not supported")
        fps = _number(video.get("max_fps", DEFAULT_MAX_FPS), "max_fps")
        formats.video = {"codec": codec, "max_fps": min(max(fps, 1.0), MAX_FPS)}
    receive_audio = params.get("receive_audio", False)
    if receive_audio:
        rate = DEFAULT_AUDIO_OUT_RATE
        if isinstance(receive_audio, dict):
            rate = int(_number(receive_audio.get("sample_rate", rate), "sample_rate"))
        if not MIN_PCM_RATE <= rate <= MAX_PCM_RATE:
            raise _mismatch(f"returned audio sample_rate must be {MIN_PCM_RATE}..{MAX_PCM_RATE} Hz")
        formats.audio_out = {"codec": "pcm16", "sample_rate": rate, "channels": 1}
    receive_video = params.get("receive_video", False)
    if receive_video:
        fps = DEFAULT_MAX_FPS
        if isinstance(receive_video, dict):
            fps = _number(receive_video.get("max_fps", fps), "max_fps")
        formats.video_out = {"codec": "jpeg", "max_fps": min(max(fps, 1.0), MAX_FPS)}
    return formats


class PayloadAudioDecoder:
    """pcm16 / Opus payloads -> ``av.AudioFrame`` with running pts (as aiortc's decoder gives).

    ``fmt``: ``{"codec": "pcm16" | "opus", "sample_rate": int, "channels": 1 | 2}`` (see :func:`negotiate`).
    """

    def __init__(self, fmt: dict[str, Any]) -> None:
        self.codec = fmt["codec"]
        self.rate = fmt["sample_rate"]
        self.layout = "mono" if fmt["channels"] == 1 else "stereo"
        self.channels = fmt["channels"]
        self._pts = 0
        self._opus: Any = None
        if self.codec == "opus":
            self._opus = av.CodecContext.create("opus", "r")
            self._opus.sample_rate = 48000
            self._opus.layout = self.layout

    def decode(self, payload: bytes) -> list[av.AudioFrame]:
        if self.codec == "pcm16":
            usable = len(payload) - len(payload) % (2 * self.channels)
            if usable <= 0:
                return []
            pcm = np.frombuffer(payload[:usable], dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.int16), format="s16",
                                               layout=self.layout)
            frame.sample_rate = self.rate
            frames = [frame]
        else:
            frames = list(self._opus.decode(av.Packet(payload)))
        for frame in frames:
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, frame.sample_rate)
            self._pts += frame.samples
        return frames


class Pcm16Encoder:
    """Pipeline audio -> little-endian pcm16 mono bytes at ``rate`` (channels averaged; one persistent
    ``av.AudioResampler`` when the pipeline's rate differs)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: Any = None
        self._resampler_rate: int | None = None

    def encode(self, data: AudioData) -> bytes:
        mono = data.samples.mean(axis=1) if data.channels > 1 else data.samples[:, 0]
        if data.sample_rate != self.rate:
            if self._resampler is None or self._resampler_rate != data.sample_rate:
                self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
                self._resampler_rate = data.sample_rate
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono, np.float32).reshape(1, -1),
                                               format="flt", layout="mono")
            frame.sample_rate = data.sample_rate
            parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
            mono = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return np.clip(np.rint(mono * 32768.0), -32768, 32767).astype("<i2").tobytes()


class WebSocketMediaPeer:
    """The kernel side of one WebSocket media connection (sibling of :class:`~.peer.ServerPeer`).

    Lives on the RTC loop; its :class:`SessionBridge` puts the stream session on the pipeline loop.
    ``send_text`` sends one JSON-RPC text message (the endpoint's ordered sender); ``send_binary``
    sends one binary frame and may return an awaitable that resolves once the frame is written
    (awaited: that is the outbound backpressure). A :class:`~.media_peer.MediaPeer`.
    """

    transport_path: Final = "websocket"

    def __init__(self) -> None:
        self.session_id = ""
        self.formats = MediaFormats()
        self.bridge: SessionBridge
        self._send_text: SendText
        self._send_binary: SendBinary
        self._normalizer: AudioNormalizer | None = None
        self._audio_dec: PayloadAudioDecoder | None = None
        self._video_dec: StillImageDecoder | None = None
        self._video_format: str | None = None
        self._video_slot: tuple[int, int, bytes] | None = None
        self._video_ready = asyncio.Event()
        self._video_task: asyncio.Task[None] | None = None
        self._min_video_interval = 0.0
        self._last_video_at = 0.0
        self._out_msgs: DropOldest[str | bytes] = DropOldest(TEXT_OUT_MAX)
        self._out_audio: deque[tuple[int, bytes]] = deque()
        self._out_video: VideoData | None = None
        self._out_ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._pcm_out: Pcm16Encoder | None = None
        self._jpeg = StillImageEncoder("jpeg")
        self._last_video_out = 0.0
        self._seq_out = {KIND_AUDIO: 0, KIND_VIDEO: 0, KIND_DATA: 0}
        self._seq_in: dict[int, int] = {}
        self._ended = asyncio.Event()
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self.created_at = time.monotonic()
        self.counters: dict[str, int] = {
            "audio_frames_in": 0, "video_frames_in": 0, "data_frames_in": 0, "bad_frames": 0, "seq_gaps": 0,
            "video_drops": 0, "video_rate_drops": 0, "decode_errors": 0, "outputs": 0, "json_out": 0,
            "text_out_drops": 0, "audio_frames_out": 0, "audio_out_drops": 0, "video_frames_out": 0,
            "video_out_drops": 0, "binary_out": 0, "unrouted_outputs": 0, "too_large": 0,
        }

    @classmethod
    async def create(
        cls,
        pipeline: PipelineSource,
        formats: MediaFormats,
        *,
        send_text: SendText,
        send_binary: SendBinary,
        runner: PipelineRunner | None = None,
        video_format: str | None = None,
    ) -> WebSocketMediaPeer:
        """Create the session (on the pipeline loop) and the decoders; await on the RTC loop."""
        self = cls()
        self.formats = formats
        self._send_text = send_text
        self._send_binary = send_binary
        self._video_format = video_format
        self.bridge = await SessionBridge.create(pipeline, on_output=self._on_output, on_end=self._ended.set,
                                                 runner=runner)
        self.session_id = self.bridge.session_id
        audio_format: AudioFormat | None = self.bridge.session.audio_input
        if formats.audio is not None:
            self._audio_dec = PayloadAudioDecoder(formats.audio)
            self._normalizer = AudioNormalizer(audio_format)
        if formats.video is not None:
            self._video_dec = StillImageDecoder(formats.video["codec"])
            self._min_video_interval = 0.5 / formats.video["max_fps"]  # tolerate 2x bursts, bound the rest
            self._video_task = asyncio.get_running_loop().create_task(self._decode_video(), name="rm-ws-video")
        self._sender = asyncio.get_running_loop().create_task(self._send_outputs(), name="rm-ws-send")
        return self

    @property
    def session(self) -> StreamSession:
        return self.bridge.session

    @property
    def connection_state(self) -> str:
        return "closed" if self._closed else "connected"

    # -- inbound (RTC loop) ------------------------------------------------------------------------
    def on_frame(self, frame: bytes) -> None:
        """One binary frame from the client; never raises, never blocks."""
        if self._closed:
            return
        try:
            kind, seq, ts, payload = unpack_frame(frame)
        except ValueError:
            self.counters["bad_frames"] += 1
            return
        expected = self._seq_in.get(kind)
        if expected is not None and seq != expected:
            self.counters["seq_gaps"] += (seq - expected) & 0xFFFFFFFF
        self._seq_in[kind] = (seq + 1) & 0xFFFFFFFF
        if kind == KIND_AUDIO:
            self._on_audio(seq, ts, payload)
        elif kind == KIND_VIDEO:
            self._on_video(seq, ts, payload)
        else:
            self.counters["data_frames_in"] += 1
            self.bridge.send_data(BinaryData(payload))

    def _on_audio(self, seq: int, ts: int, payload: bytes) -> None:
        if self._audio_dec is None or self._normalizer is None:
            self.counters["bad_frames"] += 1
            return
        self.counters["audio_frames_in"] += 1
        try:
            frames = self._audio_dec.decode(payload)
            for frame in frames:
                for data in self._normalizer.convert(frame):
                    data.metadata["capture_ts_us"] = ts
                    data.metadata["seq"] = seq
                    self.bridge.send_audio(data)
        except Exception:
            self.counters["decode_errors"] += 1
            if self.counters["decode_errors"] == 1:
                log.exception("decoding a WebSocket audio frame failed")

    def _on_video(self, seq: int, ts: int, payload: bytes) -> None:
        if self._video_dec is None:
            self.counters["bad_frames"] += 1
            return
        self.counters["video_frames_in"] += 1
        now = time.monotonic()
        if now - self._last_video_at < self._min_video_interval:
            self.counters["video_rate_drops"] += 1
            return
        self._last_video_at = now
        if self._video_slot is not None:
            self.counters["video_drops"] += 1
        self._video_slot = (seq, ts, payload)
        self._video_ready.set()

    async def _decode_video(self) -> None:
        assert self._video_dec is not None
        number = 0
        while True:
            await self._video_ready.wait()
            self._video_ready.clear()
            slot, self._video_slot = self._video_slot, None
            if slot is None:
                continue
            seq, ts, payload = slot
            try:
                for frame in self._video_dec.decode(payload):
                    fmt = self._video_format or "yuv420p"
                    data = VideoData.from_av_frame(frame, pixel_format=fmt, frame_number=number)
                    data.timestamp_us = ts
                    data.metadata["capture_ts_us"] = ts
                    data.metadata["seq"] = seq
                    number += 1
                    self.bridge.send_video(data)
            except Exception:
                self.counters["decode_errors"] += 1
                if self.counters["decode_errors"] == 1:
                    log.exception("decoding a WebSocket video frame failed")
            await asyncio.sleep(0)  # let newer frames replace the slot while we were busy

    def send_message(self, message: str) -> None:
        """A data-channel style text message from ``media.send`` (see :mod:`.wire`)."""
        if not self._closed:
            self.bridge.send_data(decode_message(message))

    # -- outbound ----------------------------------------------------------------------------------
    def _on_output(self, node_id: str, data: RuntimeData) -> None:
        if self._closed:
            return
        self.counters["outputs"] += 1
        if isinstance(data, AudioData):
            if self.formats.audio_out is None:
                self.counters["unrouted_outputs"] += 1
                return
            self._queue_audio(data)
        elif isinstance(data, VideoData):
            if self.formats.video_out is None:
                self.counters["unrouted_outputs"] += 1
                return
            if self._out_video is not None:
                self.counters["video_out_drops"] += 1
            self._out_video = data
        else:
            try:
                message = encode_output(data, node_id, limit=1 << 20)
            except MessageTooLarge as exc:
                self.counters["too_large"] += 1
                message = encode_error(str(exc), "MessageTooLarge", node_id)
            if message is None:
                self.counters["unrouted_outputs"] += 1
                return
            if isinstance(message, bytes):
                self._queue_binary(KIND_DATA, wall_us(), message)
            else:
                self.counters["json_out"] += 1
                self._queue_text(notification(Notification.MEDIA_OUTPUT, json.loads(message)))
        self._out_ready.set()

    def _queue_text(self, message: str | bytes) -> None:
        # JSON outputs and BinaryData share one FIFO, so results keep their order
        if self._out_msgs.push(message) is not None:
            self.counters["text_out_drops"] += 1
        self._out_ready.set()

    def _queue_binary(self, kind: int, ts: int, payload: bytes) -> None:
        seq = self._seq_out[kind]
        self._seq_out[kind] = (seq + 1) & 0xFFFFFFFF
        self.counters["binary_out"] += 1
        self._queue_text(pack_frame(kind, seq, ts, payload))

    def _queue_audio(self, data: AudioData) -> None:
        assert self.formats.audio_out is not None
        if self._pcm_out is None:
            self._pcm_out = Pcm16Encoder(self.formats.audio_out["sample_rate"])
        pcm = self._pcm_out.encode(data)
        if not pcm:
            return
        ts = data.timestamp_us if data.timestamp_us is not None else wall_us()
        self._out_audio.append((ts, pcm))
        limit = int(AUDIO_OUT_MAX_S * self._pcm_out.rate * 2)
        while sum(len(p) for _, p in self._out_audio) > limit and len(self._out_audio) > 1:
            self._out_audio.popleft()
            self.counters["audio_out_drops"] += 1

    async def _write(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self._send_text(message)
            return
        result = self._send_binary(message)
        if result is not None:
            await result

    async def _send_outputs(self) -> None:
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            while self._out_msgs or self._out_audio or self._out_video is not None:
                try:
                    if self._out_msgs:
                        await self._write(self._out_msgs.popleft())
                    elif self._out_audio:
                        ts, pcm = self._out_audio.popleft()
                        seq = self._seq_out[KIND_AUDIO]
                        self._seq_out[KIND_AUDIO] = (seq + 1) & 0xFFFFFFFF
                        self.counters["audio_frames_out"] += 1
                        await self._write(pack_frame(KIND_AUDIO, seq, ts, pcm))
                    else:
                        await self._send_video_out()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the socket went away; close() follows from the transport
                    log.debug("WebSocket media send failed: %r", exc)

    async def _send_video_out(self) -> None:
        data, self._out_video = self._out_video, None
        if data is None or self.formats.video_out is None:
            return
        wait = self._last_video_out + 1.0 / self.formats.video_out["max_fps"] - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            if self._out_video is not None:  # a newer frame came in meanwhile: send that one
                self.counters["video_out_drops"] += 1
                data, self._out_video = self._out_video, None
        self._last_video_out = time.monotonic()
        payload = self._jpeg.encode(data.to_av_frame())
        seq = self._seq_out[KIND_VIDEO]
        self._seq_out[KIND_VIDEO] = (seq + 1) & 0xFFFFFFFF
        self.counters["video_frames_out"] += 1
        await self._write(pack_frame(KIND_VIDEO, seq, data.timestamp_us or wall_us(), payload))

    def flush_audio(self) -> int:
        """Drop queued returned audio (barge-in); the number of frames dropped."""
        dropped = len(self._out_audio)
        self._out_audio.clear()
        return dropped

    # -- lifecycle -------------------------------------------------------------------------------
    async def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """End of input: wait until the pipeline has drained and every output was sent."""
        if self._closed:
            return False
        deadline = time.monotonic() + timeout
        self._audio_dec = None  # media after end of stream is ignored (counted as bad frames)
        self._video_dec = None
        try:
            await asyncio.wait_for(self.bridge.end_input(), timeout)
            await asyncio.wait_for(self._ended.wait(), max(0.01, deadline - time.monotonic()))
            while self._out_msgs or self._out_audio or self._out_video is not None:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.005)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop decoding and sending, close the session. Idempotent."""
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._closed = True
        for task in (self._video_task, self._sender):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.bridge.close()

    def stats(self) -> dict[str, Any]:
        """Counters; the bridge's (``audio_drops``, ``video_drops`` ...) under ``bridge``."""
        return {
            "transport": "websocket",
            "session_id": self.session_id,
            "connection_state": self.connection_state,
            "formats": self.formats.as_dict(),
            **self.counters,
            "audio_out_queued": len(self._out_audio),
            "bridge": self.bridge.stats(),
        }
