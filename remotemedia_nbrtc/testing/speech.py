"""Speech fixtures and STT measurement: espeak-ng sentences, word accuracy, real-time factor.

Everything here runs offline. ``espeak-ng`` must be on ``PATH`` (Debian package ``espeak-ng``);
its output is byte-identical from run to run, so the fixtures are deterministic.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "HOME_COMMANDS",
    "SpeechTrack",
    "SttMeasurement",
    "have_espeak",
    "make_speech_track",
    "measure_stt",
    "measure_stt_async",
    "normalize_words",
    "synthesize",
    "word_accuracy",
    "write_wav",
]

HOME_COMMANDS: tuple[str, ...] = (
    "turn on the kitchen lights",
    "turn off the bedroom lights",
    "open the garage door",
    "close the living room blinds",
    "lock the front door",
    "play some music in the kitchen",
    "stop the music",
    "set the temperature to twenty degrees",
    "dim the lights in the hallway",
    "start the coffee machine",
    "what is the weather today",
    "turn the volume down",
)
"""Twelve home-automation commands (62 words), the default STT test corpus."""


def have_espeak() -> bool:
    """True when the ``espeak-ng`` binary is available."""
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, *, rate: int = 16000, speed: int = 150, voice: str | None = None) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 mono samples at ``rate`` (espeak's 22050 Hz resampled)."""
    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory(prefix="rm-espeak-") as tmp:
        path = Path(tmp) / "s.wav"
        cmd = ["espeak-ng", "-s", str(speed), "-w", str(path)]
        if voice:
            cmd += ["-v", voice]
        subprocess.run([*cmd, text], check=True, capture_output=True, timeout=30)
        with wave.open(str(path)) as w:
            src_rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    samples = pcm.astype(np.float32) / 32768.0
    if src_rate != rate:
        g = np.gcd(src_rate, rate)
        samples = resample_poly(samples, rate // g, src_rate // g).astype(np.float32)
    return samples


@dataclass
class SpeechTrack:
    """Sentences spoken one after another with silence between them."""

    samples: np.ndarray  # float32 mono
    sample_rate: int
    sentences: list[str]
    spans_ms: list[tuple[float, float]]  # where each sentence is, in ms from the start

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def make_speech_track(
    sentences: list[str] | tuple[str, ...] = HOME_COMMANDS,
    *,
    rate: int = 16000,
    gap_s: float = 1.0,
    lead_s: float = 0.5,
    speed: int = 150,
    voice: str | None = None,
) -> SpeechTrack:
    """Synthesize ``sentences`` into one mono track: ``lead_s`` of silence, then each sentence and ``gap_s``."""
    parts = [np.zeros(int(lead_s * rate), np.float32)]
    spans: list[tuple[float, float]] = []
    pos = len(parts[0])
    for text in sentences:
        speech = synthesize(text, rate=rate, speed=speed, voice=voice)
        spans.append((pos * 1000 / rate, (pos + len(speech)) * 1000 / rate))
        gap = np.zeros(int(gap_s * rate), np.float32)
        parts += [speech, gap]
        pos += len(speech) + len(gap)
    return SpeechTrack(np.concatenate(parts), rate, list(sentences), spans)


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write float mono samples as a 16-bit WAV (e.g. for a browser's fake mic)."""
    path = Path(path)
    pcm = np.clip(np.rint(np.asarray(samples, np.float32).reshape(-1) * 32768.0), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def normalize_words(text: str) -> list[str]:
    """Lower-case words, punctuation removed (apostrophes kept)."""
    return re.findall(r"[a-z']+", text.lower())


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_accuracy(reference: str | list[str], hypothesis: str | list[str]) -> float:
    """``1 - WER`` over all words (substitutions + deletions + insertions), floored at 0."""
    ref = normalize_words(" ".join(reference) if isinstance(reference, list) else reference)
    hyp = normalize_words(" ".join(hypothesis) if isinstance(hypothesis, list) else hypothesis)
    if not ref:
        return 1.0 if not hyp else 0.0
    return max(0.0, 1.0 - _edit_distance(ref, hyp) / len(ref))


@dataclass
class SttMeasurement:
    """Result of :func:`measure_stt`."""

    mode: str  # "general" or "phrases"
    accuracy: float  # 1 - WER over the whole corpus
    rtf: float  # wall-clock processing time / audio duration (includes waiting for the CPU on a busy machine)
    audio_s: float
    wall_s: float
    finals: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    init_s: float = 0.0  # session start incl. decoder load (not part of ``rtf``)
    cpu_rtf: float = float("nan")  # CPU time of the STT thread / audio duration
    extra: dict[str, Any] = field(default_factory=dict)  # path-specific details (e.g. the node's metrics)

    def summary(self) -> str:
        return (f"{self.mode}: word accuracy {self.accuracy:.1%}, RTF {self.rtf:.3f} wall / {self.cpu_rtf:.3f} CPU "
                f"({self.audio_s:.1f} s audio in {self.wall_s:.2f} s, decoder start {self.init_s:.2f} s)")


async def measure_stt_async(
    sentences: list[str] | tuple[str, ...] = HOME_COMMANDS,
    *,
    phrases: list[str] | tuple[str, ...] | None = None,
    track: SpeechTrack | None = None,
    frame_ms: int = 20,
    node: Any = None,
) -> SttMeasurement:
    """Stream ``sentences`` (espeak-ng, 16 kHz) through a ``PocketSphinxSTTNode`` session as fast as it goes.

    ``phrases`` switches to the phrase-list (domain LM) mode; ``node`` replaces the STT node
    (any node that emits ``{"kind": "transcript", "final": True, "text": ...}`` JSON).
    """
    from ..nodes.speech import PocketSphinxSTT
    from ..runtime import AudioData, JsonData, Pipeline, PipelineRunner

    track = track or make_speech_track(sentences)
    stt = node or PocketSphinxSTT(phrases=list(phrases) if phrases else None)
    pipeline = Pipeline("stt-measure")
    pipeline.add("stt", stt)
    t0 = time.perf_counter()
    session = await PipelineRunner().create_stream_session(pipeline)  # loads the decoder (node.start)
    init_s = time.perf_counter() - t0
    events: list[dict[str, Any]] = []
    try:
        step = track.sample_rate * frame_ms // 1000

        async def feed() -> None:
            for i in range(0, len(track.samples), step):
                await session.send_input(AudioData(track.samples[i:i + step], track.sample_rate,
                                                   timestamp_us=i * 1_000_000 // track.sample_rate))
            await session.end_input()

        start = time.perf_counter()
        feeder = asyncio.ensure_future(feed())
        async for out in session:
            if isinstance(out, JsonData) and out.value.get("kind") == "transcript":
                events.append(out.value)
        await feeder
        wall = time.perf_counter() - start
        live = session.node("stt")
        cpu_s = getattr(live, "cpu_s", float("nan"))
        extra = {"stt_metrics": session.metrics().get("stt"), "stt_audio_s": getattr(live, "audio_s", None)}
        if hasattr(live, "wall_s"):  # e.g. stt_webrtc.TimedPocketSphinxSTT: time inside the node
            extra["stt_wall_s"] = live.wall_s
    finally:
        await session.close()
    finals = [e["text"] for e in events if e["final"] and e["text"]]
    return SttMeasurement(
        mode="phrases" if phrases else "general",
        accuracy=word_accuracy(list(track.sentences), finals),
        rtf=wall / track.duration_s,
        audio_s=track.duration_s,
        wall_s=wall,
        finals=finals,
        events=events,
        init_s=init_s,
        cpu_rtf=cpu_s / track.duration_s,
        extra=extra,
    )


def measure_stt(
    sentences: list[str] | tuple[str, ...] = HOME_COMMANDS,
    *,
    phrases: list[str] | tuple[str, ...] | None = None,
    frame_ms: int = 20,
) -> SttMeasurement:
    """Blocking :func:`measure_stt_async` (for scripts and the bench; not from inside a running loop)."""
    return asyncio.run(measure_stt_async(sentences, phrases=phrases, frame_ms=frame_ms))
