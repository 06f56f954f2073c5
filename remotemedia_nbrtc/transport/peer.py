"""ServerPeer: the server side of one WebRTC connection, bound to one stream session.

The ``RTCPeerConnection`` lives on the RTC loop; its :class:`StreamSession` lives on the pipeline loop
(see :mod:`.bridge`). Received audio/video tracks are drained into the session (:mod:`.tracks`), data
channel messages become inputs (:mod:`.wire`), and session outputs go back as an audio track, a video
track or data-channel messages. Receivers use the low-latency jitter buffer (:mod:`.receiver`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from ..errors import ConnectTimeout, SignalingError
from ..protocol.datachannel import DC_AUDIO_LABEL
from ..protocol.jsonrpc import ErrorCode
from ..runtime import AudioData, AudioFormat, PipelineRunner, PipelineSource, RuntimeData, StreamSession, VideoData
from .aiortc_internals import offer_direction, transceiver_codecs
from .bridge import SessionBridge
from .config import PeerConfig
from .datachannel import DataChannelLink
from .dcaudio import DataChannelAudio
from .ice import prepare_peer_connection, rtc_configuration
from .receiver import AudioJitterBuffer, VideoJitterBuffer, install_low_latency_buffer
from .signaling import validate_dtls_fingerprints
from .stagetrace import StageTrace
from .tracks import PipelineAudioTrack, PipelineVideoTrack, TrackReader, install_opus_frame_size

__all__ = ["ServerPeer"]

log = logging.getLogger(__name__)



def with_audio_ptime(sdp: str, ptime_ms: int | None) -> str:
    """``sdp`` with ``a=ptime:<ptime_ms>`` in every audio media section (an existing ptime replaced)."""
    if not ptime_ms:
        return sdp
    out: list[str] = []
    audio = pending = False  # in an audio section / its ptime line is still to be written (before its first a=)
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            audio = pending = line.startswith("m=audio ")
        elif audio and line.startswith("a=ptime:"):
            continue
        elif pending and line.startswith("a="):
            out.append(f"a=ptime:{int(ptime_ms)}")
            pending = False
        out.append(line)
    return "\r\n".join(out)


def _validate_offer(sdp: Any) -> None:
    if not isinstance(sdp, str) or not sdp.strip():
        raise SignalingError(ErrorCode.OFFER_INVALID, "invalid offer", data={"reason": "empty or non-string SDP"})
    if not sdp.lstrip().startswith("v=0"):
        raise SignalingError(ErrorCode.OFFER_INVALID, "invalid offer", data={"reason": "SDP must start with v=0"})
    if "\nm=" not in sdp.replace("\r\n", "\n"):
        raise SignalingError(ErrorCode.OFFER_INVALID, "invalid offer", data={"reason": "SDP has no m= line"})
    validate_dtls_fingerprints(sdp)


class ServerPeer:
    """Server side of one WebRTC connection: RTCPeerConnection on the RTC loop, bound to a StreamSession on
    the pipeline loop. Create with :meth:`create`; call every coroutine on the RTC loop.
    A :class:`~.media_peer.WebRTCPeer`."""

    transport_path: Final = "webrtc"

    def __init__(self) -> None:
        self.session_id: str = ""
        self.config: PeerConfig
        self.pc: RTCPeerConnection
        self.bridge: SessionBridge
        self.error: Exception | None = None
        self._on_ice_candidate: Callable[[dict[str, Any] | None], None]
        self._on_state_change: Callable[[str], None]
        self._audio_format: AudioFormat | None = None
        self._readers: list[TrackReader] = []
        self._buffers: list[AudioJitterBuffer | VideoJitterBuffer] = []
        self._pending_candidates: list[dict[str, Any] | None] = []
        self._offer_handled = False
        self._negotiating = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.audio_track: PipelineAudioTrack | None = None
        self.video_track: PipelineVideoTrack | None = None
        self.datachannel: DataChannelLink
        self.dc_audio: DataChannelAudio
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.unrouted_outputs = 0
        self._last_state = "new"
        self.trace: StageTrace | None = None

    @classmethod
    async def create(
        cls,
        pipeline: PipelineSource,
        config: PeerConfig,
        *,
        on_ice_candidate: Callable[[dict[str, Any] | None], None],
        on_state_change: Callable[[str], None],
        runner: PipelineRunner | None = None,
    ) -> ServerPeer:
        """Create the peer (call on the RTC loop); its stream session is created on the pipeline loop."""
        self = cls()
        self.config = config
        self._on_ice_candidate = on_ice_candidate
        self._on_state_change = on_state_change
        self.datachannel = DataChannelLink(self._on_data_input)
        self.trace = StageTrace() if config.stage_trace else None
        self.bridge = await SessionBridge.create(pipeline, on_output=self._on_output, runner=runner, trace=self.trace)
        self.session_id = self.bridge.session_id
        self._audio_format = self.bridge.session.audio_input
        self.dc_audio = DataChannelAudio(self.bridge.send_audio, self._audio_format)
        self.pc = RTCPeerConnection(rtc_configuration(config.ice))
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)
        return self

    @property
    def session(self) -> StreamSession:
        """The pipeline session (lives on the pipeline loop)."""
        return self.bridge.session

    # -- signaling -----------------------------------------------------------------------------
    @property
    def connection_state(self) -> str:
        return "closed" if self._closed else self.pc.connectionState

    async def handle_offer(self, sdp: str) -> str:
        """Apply the client's offer and return our answer SDP (all our candidates are in it)."""
        if self._closed:
            raise SignalingError(ErrorCode.OFFER_INVALID, "peer is closed", data={"reason": "closed"})
        _validate_offer(sdp)
        if self._negotiating:
            raise SignalingError(-32005, "negotiation in progress")
        self._negotiating = True
        try:
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except SignalingError:
                raise
            except Exception as exc:
                raise SignalingError(
                    ErrorCode.OFFER_INVALID, "invalid offer", data={"reason": f"{type(exc).__name__}: {exc}"}
                ) from exc
            self._setup_transceivers()
            prepare_peer_connection(self.pc, self.config.ice)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            self._set_audio_encoder()
        finally:
            self._negotiating = False
        first_offer = not self._offer_handled
        self._offer_handled = True
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            try:
                await self.add_ice_candidate(candidate)
            except SignalingError as exc:
                log.debug("dropping queued candidate: %s", exc)
        # aiortc gathers before answering: every local candidate is in the SDP; signal "complete".
        self._notify(self._on_ice_candidate, None)
        if first_offer and self.config.connect_timeout_s:
            self._watchdog = asyncio.get_running_loop().create_task(self._connect_watchdog())
        return with_audio_ptime(self.pc.localDescription.sdp, self.config.audio_ptime_ms)

    def _set_audio_encoder(self) -> None:
        """Our outgoing Opus packets at ``audio_out_frame_ms`` (aiortc's encoder is fixed at 20 ms)."""
        if self.audio_track is None or self.config.audio_out_frame_ms == 20:
            return
        for transceiver in self.pc.getTransceivers():
            if transceiver.sender.track is not self.audio_track:
                continue
            codecs = transceiver_codecs(transceiver)
            if codecs and codecs[0].mimeType.lower() == "audio/opus":
                install_opus_frame_size(transceiver.sender, self.config.audio_out_frame_ms)

    def _setup_transceivers(self) -> None:
        have_audio = have_video = False
        for transceiver in self.pc.getTransceivers():
            if self.config.low_latency_receive:
                self._buffers.append(
                    install_low_latency_buffer(
                        transceiver.receiver, audio_target_ms=self.config.jitter_target_ms, trace=self.trace
                    )
                )
            can_send = offer_direction(transceiver) in ("sendrecv", "sendonly")
            if not can_send or transceiver.sender.track is not None:
                continue
            track: MediaStreamTrack | None = None
            if transceiver.kind == "audio" and self.config.send_audio and not have_audio:
                self.audio_track = self.audio_track or PipelineAudioTrack(
                    self.config.audio_out_rate,
                    target_ms=self.config.audio_out_target_ms,
                    frame_ms=self.config.audio_out_frame_ms,
                    pacing=self.config.audio_out_pacing,
                )
                self.audio_track.trace = self.trace
                track, have_audio = self.audio_track, True
            elif transceiver.kind == "video" and self.config.send_video and not have_video:
                self.video_track = self.video_track or PipelineVideoTrack()
                track, have_video = self.video_track, True
            if track is None:
                continue
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv" if offer_direction(transceiver) == "sendrecv" else "sendonly"
        # dedupe buffers installed on earlier offers
        self._buffers = list({id(b): b for b in self._buffers}.values())

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Add a remote candidate ``{"candidate", "sdpMid", "sdpMLineIndex"}``; None or "" ends them.

        Candidates that arrive before the offer are queued and applied after it.
        """
        if self._closed:
            return
        if not self._offer_handled:
            self._pending_candidates.append(candidate)
            return
        text = None if candidate is None else candidate.get("candidate")
        if not text:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
            parsed.sdpMid = candidate.get("sdpMid")  # type: ignore[union-attr]
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")  # type: ignore[union-attr]
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SignalingError(
                ErrorCode.ICE_INVALID, "invalid ICE candidate", data={"reason": f"{type(exc).__name__}: {exc}"}
            ) from exc

    async def _connect_watchdog(self) -> None:
        await asyncio.sleep(self.config.connect_timeout_s)
        if self.pc.connectionState != "connected" and not self._closed:
            self.error = ConnectTimeout(f"peer not connected after {self.config.connect_timeout_s} s")
            log.info("peer %s: %s", self.session_id[:8], self.error)
            await self.close()

    # -- media and data ------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        sink = self.bridge.send_audio if track.kind == "audio" else self.bridge.send_video
        reader = TrackReader(
            track,
            sink,
            audio_format=self._audio_format,
            video_format=self.config.video_format,
            stream_id=None,
            trace=self.trace,
        )
        self._readers.append(reader.start())

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label == DC_AUDIO_LABEL:
            self.dc_audio.attach(channel)  # audio both ways on this channel (see .dcaudio)
        else:
            self.datachannel.attach(channel)

    def _on_data_input(self, data: RuntimeData) -> None:
        self.bridge.send_data(data)

    def _on_output(self, node_id: str, data: RuntimeData) -> None:
        if self._closed:
            return
        if isinstance(data, AudioData):
            if self.dc_audio.active:
                self.dc_audio.push(data)
                return
            if self.audio_track is not None:
                self.audio_track.push(data)
                return
        elif isinstance(data, VideoData):
            if self.video_track is not None:
                self.video_track.push(data)
                return
        elif self.datachannel.send_output(data, node_id):
            return
        self.unrouted_outputs += 1

    def send_metrics(self, value: dict[str, Any]) -> None:
        """Send a ``metrics`` message on the data channel (queued until it opens)."""
        self.datachannel.send_metrics(value)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
        self._emit_state(state)

    def _emit_state(self, state: str) -> None:
        if state != self._last_state:
            self._last_state = state
            self._notify(self._on_state_change, state)

    @staticmethod
    def _notify(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("peer callback failed")

    # -- lifecycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Close the connection, tracks and session; aiortc's decoder threads are joined. Idempotent."""
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._closed = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        for buffer in self._buffers:
            buffer.close()
        for track in (self.audio_track, self.video_track):
            if track is not None:
                track.stop()
        self.datachannel.close()
        self.dc_audio.close()
        try:
            await self.pc.close()  # stops receivers: joins their decoder threads
        except Exception:
            log.exception("closing RTCPeerConnection failed")
        for reader in self._readers:
            await reader.stop()
        await self.bridge.close()
        self._emit_state("closed")

    # -- introspection -------------------------------------------------------------------------
    def flush_audio(self) -> int:
        """Drop queued outbound audio (RTP track and data-channel audio; barge-in): 20 ms frames dropped.

        Answers ``control.flush_audio`` (``{flushed, frames_dropped}``). Call on the RTC loop.
        """
        dropped = self.dc_audio.flush()
        if self.audio_track is not None:
            dropped += self.audio_track.flush()
        return dropped

    def stats(self) -> dict[str, Any]:
        """Counters and latency figures (cheap; safe to call on the RTC loop)."""
        readers: dict[str, Any] = {}
        for reader in self._readers:
            entry = readers.setdefault(reader.kind, {"frames": 0, "errors": 0})
            entry["frames"] += reader.frames
            entry["errors"] += reader.errors
        buffers: dict[str, dict[str, Any]] = {}
        for buffer in self._buffers:
            kind = "audio" if isinstance(buffer, AudioJitterBuffer) else "video"
            buffers.setdefault(kind, buffer.stats.as_dict())
        out: dict[str, Any] = {
            "session_id": self.session_id,
            "connection_state": self.connection_state,
            "connect_s": None if self.connected_at is None else round(self.connected_at - self.created_at, 3),
            "frames_in": readers,
            "bridge": self.bridge.stats(),
            "jitter": buffers,
            "datachannel": {
                "messages_in": self.datachannel.messages_in,
                "messages_out": self.datachannel.messages_out,
                "queued": self.datachannel.queued,
                "dropped": self.datachannel.dropped,
                "too_large": self.datachannel.too_large,
                "send_errors": self.datachannel.send_errors,
            },
            "unrouted_outputs": self.unrouted_outputs,
        }
        if self.audio_track is not None:
            out["audio_out"] = self.audio_track.stats()
        if self.dc_audio.channel is not None or self.dc_audio.error:
            out["dc_audio"] = self.dc_audio.stats()
        if self.video_track is not None:
            v = self.video_track
            out["video_out"] = {"frames_in": v.frames_in, "frames_sent": v.frames_sent, "drops": v.drops}
        if self.trace is not None:
            out["trace"] = self.trace.as_dict()
        return out
