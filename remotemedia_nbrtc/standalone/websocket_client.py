"""WebSocketMediaClient: a browser-free client of the WebSocket media fallback (see
:mod:`remotemedia_nbrtc.transport.wsmedia`).

It does what the widget does when WebRTC cannot connect: announce, ``media.open``, then stream
the frames of aiortc ``MediaStreamTrack`` sources (``ToneBurstSource``, ``SyntheticVideoSource``...)
as binary frames on the signaling socket, and read ``media.output`` notifications and returned
media. Runs on the loop that calls it (no aiortc peer, so no RTC loop hop).

:func:`connect_media` is the automatic choice: WebRTC first, the WebSocket path when WebRTC is
refused or not connected within ``webrtc_timeout_s``; it says which path is in use and why.

Backpressure here mirrors the kernel: audio waits in a bounded FIFO (``audio_buffer_frames``;
oldest dropped, counted in ``audio_dropped``), video in a keep-newest slot (``video_dropped``);
the sender awaits each socket write, so a slow socket fills these buffers, not memory.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from remotemedia_nbrtc.errors import ConnectTimeout, SignalingError, TransportError, wait_for_with_message
from remotemedia_nbrtc.protocol.jsonrpc import Method, Notification
from remotemedia_nbrtc.protocol.media_frames import KIND_AUDIO, KIND_DATA, KIND_VIDEO, pack_frame, unpack_frame, wall_us
from remotemedia_nbrtc.runtime import AudioData, VideoData, now_us
from remotemedia_nbrtc.runtime.queues import DropOldest
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.still_images import StillImageDecoder, StillImageEncoder

from .rpc_client import RpcClient

if TYPE_CHECKING:
    from .webrtc_client import ClientPeer

__all__ = ["MediaPath", "WebSocketMediaClient", "connect_media"]

log = logging.getLogger(__name__)

_OUTPUT_QUEUE_MAX = 4096
_VIDEO_KEEP = 600
_END = object()


class _AudioEncoder:
    """``av.AudioFrame`` -> pcm16 bytes at the declared rate, or raw Opus packets (48 kHz)."""

    def __init__(self, codec: str, rate: int, channels: int) -> None:
        self.codec = codec
        layout = "mono" if channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
        self._channels = channels
        self._opus: Any = None
        self._pts = 0
        if codec == "opus":
            ctx = av.CodecContext.create("libopus", "w")
            ctx.sample_rate = 48000
            ctx.layout = layout
            ctx.format = "s16"
            ctx.bit_rate = 64000
            ctx.time_base = fractions.Fraction(1, 48000)
            self._opus = ctx

    def encode(self, frame: av.AudioFrame) -> list[bytes]:
        frame.pts = None
        out: list[bytes] = []
        for resampled in self._resampler.resample(frame):
            if self._opus is None:
                out.append(bytes(resampled.planes[0])[: resampled.samples * 2 * self._channels])
                continue
            resampled.pts = self._pts
            self._pts += resampled.samples
            out.extend(bytes(p) for p in self._opus.encode(resampled))
        return out


class WebSocketMediaClient:
    """A client of the WebSocket media fallback. Create with :meth:`connect`.

    :meth:`next_output` gives the ``media.output`` params (the data-channel JSON of
    :mod:`remotemedia_nbrtc.transport.wire`) with ``recv_us`` added (``now_us()`` clock); binary data
    outputs as ``{"type": "binary", "data"}``.
    Returned audio is in :attr:`received_audio`, returned video in :attr:`received_video`.
    After the socket closed, :attr:`close_code` / :attr:`close_reason` and :attr:`errors` (JSON-RPC
    errors the server pushed, e.g. -32000 when the kernel went away) say why.
    """

    path = "websocket"

    def __init__(self, url: str, peer_id: str) -> None:
        self.url = url
        self.peer_id = peer_id
        self.accepted: dict[str, Any] = {}
        self.session_id: str | None = None
        self.received_audio: list[AudioData] = []
        self.received_video: deque[VideoData] = deque(maxlen=_VIDEO_KEEP)
        self.video_frames_received = 0
        self.notifications: list[dict[str, Any]] = []
        self.final_stats: dict[str, Any] | None = None
        self.connect_s: float | None = None
        self.counters = {"audio_frames_sent": 0, "video_frames_sent": 0, "audio_dropped": 0, "video_dropped": 0,
                         "video_rate_skipped": 0, "bytes_sent": 0, "outputs_received": 0, "outputs_dropped": 0}
        self._rpc: RpcClient | None = None
        self._outputs: asyncio.Queue[Any] = asyncio.Queue(_OUTPUT_QUEUE_MAX)
        self._sources: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._audio_q: DropOldest[bytes] = DropOldest(50)
        self._video_slot: bytes | None = None
        self._send_ready = asyncio.Event()
        self._seq = {KIND_AUDIO: 0, KIND_VIDEO: 0, KIND_DATA: 0}
        self._video_decoder: StillImageDecoder | None = None
        self._closed = False
        self._socket_closed = asyncio.Event()

    # -- public ------------------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        audio_codec: str = "pcm16",
        audio_rate: int | None = None,
        audio_channels: int = 1,
        video_codec: str = "jpeg",
        max_fps: float = 10.0,
        receive_audio: bool | dict[str, Any] = False,
        receive_video: bool | dict[str, Any] = False,
        peer_id: str | None = None,
        timeout_s: float = 10.0,
        audio_buffer_frames: int = 50,
    ) -> WebSocketMediaClient:
        """Open the socket, announce, ``media.open``, start streaming the sources.

        ``audio_rate`` (pcm16 only) defaults to the source's ``sample_rate`` attribute, else 48000;
        Opus is always 48000. Raises :class:`SignalingError`
        (e.g. -32007 for an unsupported format), :class:`ConnectTimeout` or :class:`TransportError`.
        """
        self = cls(url, peer_id or f"ws-client-{secrets.token_hex(4)}")
        self._audio_q = DropOldest(audio_buffer_frames)
        started = time.monotonic()
        try:
            self._rpc = await RpcClient.connect(
                url, token=token, timeout_s=timeout_s, what="WebSocket connection", nodelay=True,
                on_notification=self._on_notification, on_binary=self._on_binary, on_close=self._finish,
                socket_name="socket", explain_close=True)
            await self.call(Method.PEER_ANNOUNCE, {"peer_id": self.peer_id, "capabilities": ["audio", "video", "data"]},
                            timeout_s=timeout_s)
            params: dict[str, Any] = {"receive_audio": receive_audio, "receive_video": receive_video}
            if audio is not None:
                rate = 48000 if audio_codec == "opus" else (audio_rate or int(getattr(audio, "sample_rate", 48000)))
                params["audio"] = {"codec": audio_codec, "sample_rate": rate, "channels": audio_channels}
            if video is not None:
                params["video"] = {"codec": video_codec, "max_fps": max_fps}
            result = await self.call(Method.MEDIA_OPEN, params, timeout_s=timeout_s)
            self.accepted = result["accepted"]
            self.session_id = result.get("session_id")
            self._spawn(self._send_loop())
            if audio is not None:
                fmt = self.accepted["audio"]
                self._sources.append(audio)
                self._spawn(self._pump_audio(audio, _AudioEncoder(fmt["codec"], fmt["sample_rate"], fmt["channels"])))
            if video is not None:
                fmt = self.accepted["video"]
                self._sources.append(video)
                self._spawn(self._pump_video(video, StillImageEncoder(fmt["codec"]), fmt["max_fps"]))
        except BaseException:
            await self.close(drain=False)
            raise
        self.connect_s = time.monotonic() - started
        return self

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = 10.0) -> Any:
        """A JSON-RPC request; returns the result or raises :class:`SignalingError` / :class:`TransportError`."""
        if self._rpc is None or self._socket_closed.is_set():
            raise TransportError(f"socket is closed ({self.close_code}: {self.close_reason})")
        return await self._rpc.call(method, params, timeout_s=timeout_s)

    async def send_text(self, text: str, channel: str | None = None) -> None:
        """Send a ``{"type": "text"}`` input (like the data channel)."""
        msg: dict[str, Any] = {"type": "text", "text": text}
        if channel is not None:
            msg["channel"] = channel
        await self.call(Method.MEDIA_SEND, {"message": json.dumps(msg)})

    async def send_json(self, value: Any) -> None:
        """Send a ``{"type": "json"}`` input."""
        await self.call(Method.MEDIA_SEND, {"message": json.dumps({"type": "json", "value": value})})

    async def next_output(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next output; ``None`` once the socket has closed and every output was read."""
        if self._socket_closed.is_set() and self._outputs.empty():
            return None
        item = await wait_for_with_message(self._outputs.get(), timeout)
        if item is _END:
            self._outputs.put_nowait(_END)
            return None
        out: dict[str, Any] = item
        return out

    async def outputs(self) -> AsyncIterator[dict[str, Any]]:
        """Outputs until the socket closes."""
        while (item := await self.next_output()) is not None:
            yield item

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Until the server closed the socket (or :meth:`close` was called)."""
        await wait_for_with_message(self._socket_closed.wait(), timeout)

    @property
    def closed(self) -> bool:
        return self._socket_closed.is_set()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once the socket closed."""
        return None if self._rpc is None else self._rpc.close_code

    @property
    def close_reason(self) -> str | None:
        """The WebSocket close reason once the socket closed."""
        return None if self._rpc is None else self._rpc.close_reason

    @property
    def errors(self) -> list[dict[str, Any]]:
        """JSON-RPC errors the server pushed (no id), e.g. -32000 when the kernel went away."""
        return [] if self._rpc is None else self._rpc.server_errors

    @property
    def connection_state(self) -> str:
        return "closed" if self._socket_closed.is_set() else "connected"

    def stats(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "path": "websocket", "connection_state": self.connection_state,
                "connect_s": self.connect_s, **self.counters, "audio_queued": len(self._audio_q),
                "audio_chunks_received": len(self.received_audio),
                "video_frames_received": self.video_frames_received,
                "close_code": self.close_code, "close_reason": self.close_reason}

    def received_audio_samples(self) -> np.ndarray:
        chunks = [a.samples for a in self.received_audio]
        return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)

    def abort(self) -> None:
        """Drop the TCP connection with no goodbye (no ``media.close``, no close frame): a crashed tab."""
        for source in self._sources:
            source.stop()
        if self._rpc is not None:
            self._rpc.abort()

    async def close(self, *, drain: bool = True, timeout_s: float = 8.0) -> None:
        """Stop the sources; with ``drain`` ask the kernel to finish (``media.close``) first. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for source in self._sources:
            source.stop()
        if drain and self._rpc is not None and not self._socket_closed.is_set():
            try:
                await self._flush_sends(timeout_s / 2)
                result = await self.call(Method.MEDIA_CLOSE, timeout_s=timeout_s)
                self.final_stats = result.get("stats")
            except (SignalingError, TransportError, TimeoutError) as exc:
                log.debug("media.close failed: %r", exc)
        if self._rpc is not None:
            await self._rpc.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._finish()

    async def __aenter__(self) -> WebSocketMediaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending -----------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _frame(self, kind: int, payload: bytes, ts: int) -> bytes:
        seq = self._seq[kind]
        self._seq[kind] = (seq + 1) & 0xFFFFFFFF
        return pack_frame(kind, seq, ts, payload)

    async def _pump_audio(self, source: MediaStreamTrack, encoder: _AudioEncoder) -> None:
        while not self._socket_closed.is_set():
            try:
                frame = await source.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                raise TypeError(f"an audio source gave {type(frame).__name__}, not an av.AudioFrame")
            ts = wall_us()
            for payload in encoder.encode(frame):
                if self._audio_q.push(self._frame(KIND_AUDIO, payload, ts)) is not None:
                    self.counters["audio_dropped"] += 1
            self._send_ready.set()

    async def _pump_video(self, source: MediaStreamTrack, encoder: StillImageEncoder, max_fps: float) -> None:
        last = 0.0
        while not self._socket_closed.is_set():
            try:
                frame = await source.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.VideoFrame):
                raise TypeError(f"a video source gave {type(frame).__name__}, not an av.VideoFrame")
            now = time.monotonic()
            if now - last < 1.0 / max_fps - 0.002:
                self.counters["video_rate_skipped"] += 1
                continue
            last = now
            payload = encoder.encode(frame)
            if self._video_slot is not None:
                self.counters["video_dropped"] += 1
            self._video_slot = self._frame(KIND_VIDEO, payload, wall_us())
            self._send_ready.set()

    async def _send_loop(self) -> None:
        assert self._rpc is not None
        while True:
            await self._send_ready.wait()
            self._send_ready.clear()
            while self._audio_q or self._video_slot is not None:
                if self._audio_q:  # audio first: it is small and latency-critical
                    frame, kind = self._audio_q.popleft(), "audio_frames_sent"
                else:
                    frame, self._video_slot, kind = self._video_slot, None, "video_frames_sent"  # type: ignore[assignment]
                try:
                    await self._rpc.send_binary(frame)
                except TransportError:
                    return
                self.counters[kind] += 1
                self.counters["bytes_sent"] += len(frame)

    async def _flush_sends(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (self._audio_q or self._video_slot is not None) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    # -- receiving ---------------------------------------------------------------------------------
    def _finish(self) -> None:
        if self._socket_closed.is_set():
            return
        self._socket_closed.set()
        self._send_ready.set()
        while self._outputs.full():
            self._outputs.get_nowait()
        self._outputs.put_nowait(_END)

    def _on_notification(self, obj: dict[str, Any]) -> None:
        if obj["method"] == Notification.MEDIA_OUTPUT:
            out = dict(obj.get("params") or {})
            out["recv_us"] = now_us()
            self._put_output(out)
        else:
            self.notifications.append(obj)

    def _put_output(self, out: dict[str, Any]) -> None:
        self.counters["outputs_received"] += 1
        try:
            self._outputs.put_nowait(out)
        except asyncio.QueueFull:
            self.counters["outputs_dropped"] += 1

    def _on_binary(self, frame: bytes) -> None:
        kind, _seq, ts, payload = unpack_frame(frame)
        if kind == KIND_AUDIO:
            rate = int((self.accepted.get("audio_out") or {}).get("sample_rate", 24000))
            samples = (np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0).reshape(-1, 1)
            self.received_audio.append(AudioData(samples=samples, sample_rate=rate, timestamp_us=ts,
                                                 arrival_ts_us=now_us()))
        elif kind == KIND_VIDEO:
            if self._video_decoder is None:
                self._video_decoder = StillImageDecoder("jpeg")
            for decoded in self._video_decoder.decode(payload):
                self.video_frames_received += 1
                data = VideoData.from_av_frame(decoded, pixel_format="yuv420p",
                                               frame_number=self.video_frames_received - 1)
                data.timestamp_us = ts
                self.received_video.append(data)
        else:
            self._put_output({"type": "binary", "data": payload, "recv_us": now_us()})


@dataclass
class MediaPath:
    """The outcome of :func:`connect_media`: the connected client, the path in use and why."""

    client: ClientPeer | WebSocketMediaClient
    path: str  # "webrtc" | "websocket"
    reason: str
    webrtc_error: str | None = None


async def connect_media(
    url: str,
    *,
    token: str | None = None,
    audio: MediaStreamTrack | None = None,
    video: MediaStreamTrack | None = None,
    transport: str = "auto",
    webrtc_timeout_s: float = 5.0,
    ice: IceConfig | None = None,
    timeout_s: float = 10.0,
    **ws_options: Any,
) -> MediaPath:
    """Connect by WebRTC, or by WebSocket media when WebRTC is refused or slower than ``webrtc_timeout_s``.

    ``transport``: ``"auto"``, ``"webrtc"`` (no fallback) or ``"websocket"`` (skip WebRTC).
    The sources survive a failed WebRTC attempt (it reads them through an aiortc ``MediaRelay``).
    ``ws_options`` go to :meth:`WebSocketMediaClient.connect`.
    """
    if transport not in ("auto", "webrtc", "websocket"):
        raise ValueError(f"transport must be 'auto', 'webrtc' or 'websocket', not {transport!r}")
    webrtc_error: str | None = None
    if transport != "websocket":
        from aiortc.contrib.media import MediaRelay

        from .webrtc_client import ClientPeer

        relay = MediaRelay()
        proxies = {k: relay.subscribe(s, buffered=False) if s is not None else None
                   for k, s in (("audio", audio), ("video", video))}
        try:
            client = await ClientPeer.connect(url, token=token, audio=proxies["audio"], video=proxies["video"],
                                              ice=ice, timeout_s=webrtc_timeout_s if transport == "auto" else timeout_s)
            return MediaPath(client, "webrtc", "WebRTC connected" if transport == "auto" else "forced by setting")
        except (ConnectTimeout, TimeoutError) as exc:
            webrtc_error = f"WebRTC not connected within {webrtc_timeout_s} s ({exc or 'timeout'})"
        except SignalingError as exc:
            forced = isinstance(exc.data, dict) and exc.data.get("transport") == "websocket"
            webrtc_error = ("the server allows WebSocket media only (transport='websocket')" if forced
                            else f"WebRTC refused: {exc.code} {exc.message}")
        except TransportError as exc:
            webrtc_error = f"WebRTC failed: {exc}"
        finally:
            for proxy in proxies.values():
                if proxy is not None:
                    proxy.stop()
        if transport == "webrtc":
            raise TransportError(webrtc_error)
    ws_client = await WebSocketMediaClient.connect(url, token=token, audio=audio, video=video, timeout_s=timeout_s,
                                                   **ws_options)
    reason = webrtc_error or "forced by setting (transport='websocket')"
    return MediaPath(ws_client, "websocket", reason, webrtc_error)
