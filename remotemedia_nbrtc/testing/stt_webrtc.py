"""Speech to text through the WebRTC transport: a WAV streamed in real time into a pocketsphinx pipeline.

:func:`measure_stt_over_webrtc_async` starts a standalone :class:`WebRTCServer` (loopback ICE) whose
pipeline is ``[WebRTCVAD -> SpeechGate ->] PocketSphinxSTT``, connects a :class:`ClientPeer` that sends
the espeak-ng track as Opus from a :class:`WavFileSource` (48 kHz, paced in real time), and collects the
final transcripts from the data channel. Needs aiortc (unlike :mod:`.speech`), so it is its own module.

The real-time factor is the STT node's own processing time over the duration of the streamed audio:
``rtf`` counts wall-clock time inside ``process``/``flush`` (it includes waiting for the GIL and the CPU,
which the transport's threads share on a small machine), ``cpu_rtf`` the STT thread's CPU time.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from ..nodes.speech import PocketSphinxSTT
from .speech import HOME_COMMANDS, SpeechTrack, SttMeasurement, make_speech_track, word_accuracy, write_wav

__all__ = ["TimedPocketSphinxSTT", "measure_stt_over_webrtc", "measure_stt_over_webrtc_async", "webrtc_track"]


def webrtc_track(sentences: list[str] | tuple[str, ...] = HOME_COMMANDS) -> SpeechTrack:
    """The STT fixture: ``sentences`` with 1 s of leading silence and 0.8 s after each (about 34 s for 12)."""
    return make_speech_track(sentences, gap_s=0.8, lead_s=1.0)


class TimedPocketSphinxSTT(PocketSphinxSTT, register=False):
    """PocketSphinxSTT that also sums the wall-clock time of its ``process``/``flush`` calls (``wall_s``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wall_s = 0.0

    def process(self, data: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().process(data)
        finally:
            self.wall_s += time.perf_counter() - started

    def flush(self) -> Any:
        started = time.perf_counter()
        try:
            return super().flush()
        finally:
            self.wall_s += time.perf_counter() - started


def _pipeline(phrases: list[str] | None, gate: bool) -> Any:
    from ..nodes.speech import SpeechGate, WebRTCVAD
    from ..runtime import Pipeline

    pipeline = Pipeline("stt-webrtc")
    ids = []
    if gate:
        pipeline.add("vad", WebRTCVAD(aggressiveness=2, min_speech_ms=90, min_silence_ms=300))
        pipeline.add("gate", SpeechGate(pre_roll_ms=400, post_roll_ms=200))
        ids = ["vad", "gate"]
    pipeline.add("stt", TimedPocketSphinxSTT(phrases=phrases, emit_partials=False))
    if ids:
        pipeline.chain(*ids, "stt")
    return pipeline


async def measure_stt_over_webrtc_async(
    sentences: list[str] | tuple[str, ...] = HOME_COMMANDS,
    *,
    phrases: list[str] | tuple[str, ...] | None = None,
    track: SpeechTrack | None = None,
    gate: bool = False,
    tail_s: float = 1.5,
    idle_s: float = 1.5,
) -> SttMeasurement:
    """Stream ``track`` (default :func:`webrtc_track` of ``sentences``) through a real WebRTC server.

    ``phrases`` selects the phrase-list mode (None: the general model); ``gate`` puts a WebRTC VAD and
    a SpeechGate before the recogniser. After the source ends (``tail_s`` of silence is appended so the
    last utterance ends), outputs are read until none came for ``idle_s``. ``wall_s`` is the time from
    connect to the last transcript; ``init_s`` the connect time (session start incl. decoder load).
    """
    from ..runtime import PipelineRunner
    from ..standalone.server import ServerConfig, WebRTCServer
    from ..standalone.webrtc_client import ClientPeer
    from ..transport.config import IceConfig, PeerConfig
    from ..transport.sources import WavFileSource

    track = track or webrtc_track(sentences)
    ice = IceConfig(loopback_only=True)
    sessions: list[Any] = []

    class _Runner(PipelineRunner):  # keeps the server's sessions so the STT node's counters can be read
        async def create_stream_session(self, pipeline: Any) -> Any:
            session = await super().create_stream_session(pipeline)
            sessions.append(session)
            return session

    phrase_list = list(phrases) if phrases else None
    config = ServerConfig(port=0, peer=PeerConfig(ice=ice, send_audio=False, send_video=False))
    server = WebRTCServer(config, _pipeline(phrase_list, gate), runner=_Runner())
    await server.start()
    events: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="rm-stt-webrtc-") as tmp:
            wav = write_wav(Path(tmp) / "speech.wav", track.samples, track.sample_rate)
            source = WavFileSource(wav, pad_s=tail_s)
        streamed_s = source.duration
        started = time.perf_counter()
        client = await ClientPeer.connect(server.url, audio=source, ice=ice, receive_media=False)
        init_s = time.perf_counter() - started
        try:
            deadline = started + streamed_s + 20.0
            source_done_at: float | None = None
            last = time.perf_counter()
            while time.perf_counter() < deadline:
                now = time.perf_counter()
                if source.readyState == "ended":
                    source_done_at = source_done_at or now
                    if now - max(last, source_done_at) > idle_s:
                        break
                try:
                    msg = await client.next_output(timeout=0.25)
                except TimeoutError:
                    continue
                if msg is None:
                    break
                if msg.get("type") == "json" and isinstance(msg.get("value"), dict):
                    value = msg["value"]
                    if value.get("kind") == "transcript":
                        events.append(value)
                        last = time.perf_counter()
                elif msg.get("type") == "error":
                    raise RuntimeError(f"pipeline error: {msg}")
            wall = last - started
            if not sessions:
                raise RuntimeError("the server created no session")
            node = sessions[0].node("stt")
            metrics = sessions[0].metrics()
        finally:
            await client.close()
    finally:
        await server.stop()
    finals = [e["text"] for e in events if e.get("final") and e.get("text")]
    measurement = SttMeasurement(
        mode="phrases" if phrase_list else "general",
        accuracy=word_accuracy(list(track.sentences), finals),
        rtf=node.wall_s / streamed_s,
        audio_s=streamed_s,
        wall_s=wall,
        finals=finals,
        events=events,
        init_s=init_s,
        cpu_rtf=node.cpu_s / streamed_s,
    )
    measurement.extra = {
        "stt_metrics": metrics.get("stt"),
        "stt_audio_s": node.audio_s,
        "gate": gate,
        "stt_wall_s": node.wall_s,
        "stt_cpu_s": node.cpu_s,
    }
    return measurement


def measure_stt_over_webrtc(
    sentences: list[str] | tuple[str, ...] = HOME_COMMANDS,
    *,
    phrases: list[str] | tuple[str, ...] | None = None,
    gate: bool = False,
) -> SttMeasurement:
    """Blocking :func:`measure_stt_over_webrtc_async` (scripts and the bench; not inside a running loop)."""
    return asyncio.run(measure_stt_over_webrtc_async(sentences, phrases=phrases, gate=gate))
