"""ClientPeer: a browser-free WebRTC client that talks RemoteMedia's JSON-RPC signaling.

It does what a browser page does: announce, offer to ``remotemedia-server`` with the answer in the
result, trickle its ICE candidates as separate ``peer.ice_candidate`` requests (sent right after the
offer, before the answer, as upstream's test page does), apply the server's candidates once the answer
is set, and open the ``pipeline-data`` data channel.

Everything aiortc runs on the shared RTC loop thread; the public coroutines can be awaited from any
loop (a Jupyter kernel's, pytest's) and hop to the RTC loop through :meth:`LoopThread.submit`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from remotemedia_nbrtc.errors import ConnectTimeout, TransportError, wait_for_with_message
from remotemedia_nbrtc.protocol.datachannel import DATA_CHANNEL_LABEL
from remotemedia_nbrtc.protocol.jsonrpc import SERVER_PEER_ID, Method, Notification
from remotemedia_nbrtc.runtime import AudioData, AudioFormat, VideoData, now_us
from remotemedia_nbrtc.transport import signaling as rpc
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.ice import prepare_peer_connection, rtc_configuration
from remotemedia_nbrtc.transport.loop_thread import rtc_loop
from remotemedia_nbrtc.transport.receiver import AudioJitterBuffer, VideoJitterBuffer, install_low_latency_buffer
from remotemedia_nbrtc.transport.stagetrace import StageTrace
from remotemedia_nbrtc.transport.tracks import TrackReader

from .rpc_client import RpcClient

__all__ = ["ClientPeer", "split_candidates"]

log = logging.getLogger(__name__)

_OUTPUT_QUEUE_MAX = 4096
_VIDEO_KEEP = 600
_END = object()

T = TypeVar("T")


def split_candidates(sdp: str) -> tuple[str, list[dict[str, Any]]]:
    """Remove ``a=candidate``/``a=end-of-candidates`` lines; return the SDP and the candidates with their mid."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    found: list[tuple[int, str]] = []  # (m-line index, candidate)
    mids: list[str | None] = []
    for line in lines:
        if line.startswith("m="):
            mids.append(None)
        elif line.startswith("a=mid:") and mids:
            mids[-1] = line[len("a=mid:") :].strip()
        if line.startswith("a=candidate:") and mids:
            found.append((len(mids) - 1, line[2:].strip()))
        elif not line.startswith("a=end-of-candidates"):
            kept.append(line)
    candidates = [{"candidate": text, "sdpMid": mids[index], "sdpMLineIndex": index} for index, text in found]
    return "\r\n".join(kept), candidates


def _decode_output(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return {"type": "binary", "data": bytes(message), "recv_us": now_us()}
    try:
        value = json.loads(message)
    except ValueError:
        return {"type": "text", "text": message, "recv_us": now_us()}
    if not isinstance(value, dict):
        value = {"type": "json", "value": value}
    value["recv_us"] = now_us()
    return value


class ClientPeer:
    """A WebRTC client of a RemoteMedia signaling server. Create with :meth:`connect`.

    Received data-channel messages are decoded JSON objects (``{"type": "text"|"json"|"error"|"metrics",
    ...}``; binary messages as ``{"type": "binary", "data": bytes}``), each with ``recv_us`` (``now_us()``
    clock). Received audio is kept in :attr:`received_audio` (``AudioData`` chunks, 48 kHz) and video in
    :attr:`received_video` (the last 600 ``VideoData`` frames).

    Received media goes through the low-latency jitter buffer (:mod:`~remotemedia_nbrtc.transport.receiver`), as on
    the server; ``low_latency_receive=False`` keeps aiortc's own (about 80 ms more audio latency).
    ``stage_trace=True`` stamps received audio onsets per stage in :attr:`trace` (profiling,
    :mod:`~remotemedia_nbrtc.transport.stagetrace`).
    """

    def __init__(
        self,
        url: str,
        *,
        ice: IceConfig,
        peer_id: str,
        low_latency_receive: bool = True,
        stage_trace: bool = False,
        token: str | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.trace: StageTrace | None = StageTrace() if stage_trace else None
        self.ice = ice
        self.peer_id = peer_id
        self.low_latency_receive = low_latency_receive
        self._buffers: list[AudioJitterBuffer | VideoJitterBuffer] = []
        self.answer: dict[str, Any] | None = None
        self.received_audio: list[AudioData] = []
        self.received_video: deque[VideoData] = deque(maxlen=_VIDEO_KEEP)
        self.video_frames_received = 0
        self.notifications: list[dict[str, Any]] = []
        self.server_states: list[str] = []
        self.messages_received = 0
        self.outputs_dropped = 0
        self.connect_s: float | None = None
        self._rtc = rtc_loop()
        self._rpc: RpcClient | None = None
        self._pc: RTCPeerConnection | None = None
        self._dc: Any = None
        self._remote_candidates: list[dict[str, Any] | None] = []
        self._remote_set = False
        self._outputs: asyncio.Queue[Any] | None = None
        self._readers: list[TrackReader] = []
        self._sources: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected: asyncio.Event | None = None
        self._dc_open: asyncio.Event | None = None
        self._closed = False

    # -- public API (any loop) ------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        ice: IceConfig | None = None,
        receive_media: bool = True,
        peer_id: str | None = None,
        timeout_s: float = 15.0,
        low_latency_receive: bool = True,
        stage_trace: bool = False,
    ) -> ClientPeer:
        """Connect through the signaling server at ``url`` (``ws://host:port/ws``) and wait for the
        peer connection and data channel to be up. Raises :class:`ConnectTimeout` or
        :class:`SignalingError` (with the server's JSON-RPC code)."""
        self = cls(
            url,
            token=token,
            ice=ice or IceConfig(),
            peer_id=peer_id or f"client-{secrets.token_hex(4)}",
            low_latency_receive=low_latency_receive,
            stage_trace=stage_trace,
        )
        try:
            await self._on_rtc(self._connect(audio, video, receive_media, timeout_s))
        except BaseException:
            await self.close()
            raise
        return self

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = 10.0) -> Any:
        """A JSON-RPC request over the signaling socket; returns the result or raises SignalingError."""
        return await self._on_rtc(self._call(method, params or {}, timeout_s))

    async def send_text(self, text: str, channel: str | None = None) -> None:
        """Send ``{"type": "text", "text": ...}`` on the data channel."""
        msg: dict[str, Any] = {"type": "text", "text": text}
        if channel is not None:
            msg["channel"] = channel
        await self._on_rtc(self._dc_send(json.dumps(msg)))

    async def send_json(self, value: Any) -> None:
        """Send ``{"type": "json", "value": ...}`` on the data channel."""
        await self._on_rtc(self._dc_send(json.dumps({"type": "json", "value": value})))

    async def send_raw(self, message: str | bytes) -> None:
        """Send a message on the data channel as is (plain text or binary)."""
        await self._on_rtc(self._dc_send(message))

    async def next_output(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next decoded data-channel message; None once the connection has closed."""
        return await self._on_rtc(self._next_output(timeout))

    async def outputs(self) -> AsyncIterator[dict[str, Any]]:
        """Decoded data-channel messages until the connection closes."""
        while (item := await self.next_output()) is not None:
            yield item

    @property
    def connection_state(self) -> str:
        return "closed" if self._pc is None else self._pc.connectionState

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, Any]:
        """Counters (plain reads; safe from any thread)."""
        return {
            "peer_id": self.peer_id,
            "connection_state": self.connection_state,
            "connect_s": self.connect_s,
            "messages_received": self.messages_received,
            "outputs_dropped": self.outputs_dropped,
            "audio_chunks_received": len(self.received_audio),
            "audio_samples_received": sum(a.num_samples for a in list(self.received_audio)),
            "video_frames_received": self.video_frames_received,
            "server_states": list(self.server_states),
            "tracks": {r.kind: {"frames": r.frames, "errors": r.errors} for r in self._readers},
            "jitter": {
                "audio" if isinstance(b, AudioJitterBuffer) else "video": b.stats.as_dict() for b in self._buffers
            },
        }

    def received_audio_samples(self) -> Any:
        """All received audio as one float32 array (samples, channels)."""
        import numpy as np

        chunks = [a.samples for a in list(self.received_audio)]
        return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)

    async def close(self) -> None:
        """Close the peer connection and the signaling socket; stops the sources. Idempotent."""
        if self._rtc.is_running():
            await self._on_rtc(self._close())

    async def __aenter__(self) -> ClientPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- RTC loop ---------------------------------------------------------------------------------
    async def _on_rtc(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._rtc.in_loop_thread():
            return await coro
        return await asyncio.wrap_future(self._rtc.submit(coro))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(
        self, audio: MediaStreamTrack | None, video: MediaStreamTrack | None, receive_media: bool, timeout_s: float
    ) -> None:
        started = time.monotonic()
        self._outputs = asyncio.Queue(_OUTPUT_QUEUE_MAX)
        self._connected = asyncio.Event()
        self._dc_open = asyncio.Event()
        self._rpc = await RpcClient.connect(
            self.url,
            token=self._token,
            timeout_s=timeout_s,
            on_notification=self._on_signal,
            on_close=self._on_signaling_closed,
        )
        await self._call(
            Method.PEER_ANNOUNCE, {"peer_id": self.peer_id, "capabilities": ["audio", "video", "data"]}, timeout_s
        )

        pc = self._pc = RTCPeerConnection(rtc_configuration(self.ice))
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        for kind, source in (("audio", audio), ("video", video)):
            if source is not None:
                self._sources.append(source)
                pc.addTransceiver(source, direction="sendrecv" if receive_media else "sendonly")
            elif receive_media:
                pc.addTransceiver(kind, direction="recvonly")
        if self.low_latency_receive:
            self._buffers = [install_low_latency_buffer(t.receiver, trace=self.trace) for t in pc.getTransceivers()]
        self._dc = pc.createDataChannel(DATA_CHANNEL_LABEL, ordered=True)
        self._dc.on("open", self._dc_open.set)
        self._dc.on("message", self._on_dc_message)
        prepare_peer_connection(pc, self.ice)
        await pc.setLocalDescription(await pc.createOffer())
        sdp, candidates = split_candidates(pc.localDescription.sdp)

        # pipelined like upstream's page: offer, then every candidate, then end-of-candidates
        offer = self._request(Method.PEER_OFFER, {"from": self.peer_id, "to": SERVER_PEER_ID, "sdp": sdp})
        trickled = [
            self._request(
                Method.PEER_ICE_CANDIDATE,
                {
                    "from": self.peer_id,
                    "to": SERVER_PEER_ID,
                    "candidate": c["candidate"],
                    "sdp_mid": c["sdpMid"],
                    "sdp_m_line_index": c["sdpMLineIndex"],
                },
            )
            for c in candidates
        ]
        trickled.append(
            self._request(
                Method.PEER_ICE_CANDIDATE,
                {
                    "from": self.peer_id,
                    "to": SERVER_PEER_ID,
                    "candidate": "",
                    "sdp_mid": None,
                    "sdp_m_line_index": None,
                },
            )
        )
        answer: dict[str, Any] = await wait_for_with_message(offer, timeout_s, f"no answer within {timeout_s} s")
        self.answer = answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        self._remote_set = True
        for cand in self._remote_candidates:
            await self._add_remote_candidate(cand)
        self._remote_candidates.clear()
        await wait_for_with_message(asyncio.gather(*trickled), timeout_s)
        remaining = max(0.1, timeout_s - (time.monotonic() - started))
        try:
            await asyncio.wait_for(asyncio.gather(self._connected.wait(), self._dc_open.wait()), remaining)
        except TimeoutError:
            raise ConnectTimeout(f"peer connection not up after {timeout_s} s (state {pc.connectionState})") from None
        self.connect_s = time.monotonic() - started

    def _request(self, method: str, params: dict[str, Any]) -> asyncio.Future[Any]:
        if self._rpc is None or self._closed:
            raise TransportError("signaling socket is closed")
        return self._rpc.request(method, params)

    async def _call(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        if self._rpc is None or self._closed:
            raise TransportError("signaling socket is closed")
        return await self._rpc.call(method, params, timeout_s=timeout_s)

    def _on_signaling_closed(self) -> None:
        if not self._closed:
            self._spawn(self._close())

    def _on_signal(self, obj: dict[str, Any]) -> None:
        self.notifications.append(obj)
        params = obj.get("params") or {}
        if obj["method"] == Notification.PEER_ICE_CANDIDATE:
            candidate = rpc.normalize_candidate(params) if params.get("candidate") else None
            if self._remote_set:
                self._spawn(self._add_remote_candidate(candidate))
            else:
                self._remote_candidates.append(candidate)
        elif obj["method"] == Notification.PEER_STATE_CHANGE:
            self.server_states.append(str(params.get("connection_state")))

    async def _add_remote_candidate(self, candidate: dict[str, Any] | None) -> None:
        if self._pc is None:
            return
        try:
            if candidate is None:
                await self._pc.addIceCandidate(None)
                return
            text = candidate["candidate"]
            parsed = candidate_from_sdp(text.split(":", 1)[1])
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            await self._pc.addIceCandidate(parsed)
        except Exception:
            log.debug("adding a server candidate failed", exc_info=True)

    def _on_connection_state(self) -> None:
        pc = self._pc
        if pc is None:
            return
        if pc.connectionState == "connected" and self._connected is not None:
            self._connected.set()
        elif pc.connectionState in ("failed", "closed") and not self._closed:
            self._spawn(self._close())

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            reader = TrackReader(
                track, self.received_audio.append, audio_format=AudioFormat(48000, 1), trace=self.trace
            )
        else:
            reader = TrackReader(track, self._on_video)
        self._readers.append(reader.start())

    def _on_video(self, frame: VideoData) -> None:
        self.video_frames_received += 1
        self.received_video.append(frame)

    def _on_dc_message(self, message: str | bytes) -> None:
        self.messages_received += 1
        if self._outputs is None:
            return
        try:
            self._outputs.put_nowait(_decode_output(message))
        except asyncio.QueueFull:
            self.outputs_dropped += 1

    async def _dc_send(self, message: str | bytes) -> None:
        if self._dc is None or self._dc.readyState != "open":
            raise TransportError("data channel is not open")
        self._dc.send(message)

    async def _next_output(self, timeout: float | None) -> dict[str, Any] | None:
        queue = self._outputs
        if queue is None:
            return None
        if self._closed and queue.empty():
            return None
        item = await wait_for_with_message(queue.get(), timeout)
        if item is _END:
            queue.put_nowait(_END)  # keep the end marker for other readers
            return None
        out: dict[str, Any] = item
        return out

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for source in self._sources:
            source.stop()
        for buffer in self._buffers:
            buffer.close()
        if self._pc is not None:
            try:
                await self._pc.close()
            except Exception:
                log.debug("closing RTCPeerConnection failed", exc_info=True)
        for reader in self._readers:
            await reader.stop()
        if self._rpc is not None:
            await self._rpc.close()
        current = asyncio.current_task()
        others = [t for t in self._tasks if t is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        if self._outputs is not None:
            while self._outputs.full():
                self._outputs.get_nowait()
            self._outputs.put_nowait(_END)
