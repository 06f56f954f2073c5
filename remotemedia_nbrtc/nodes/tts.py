"""Text to speech with hibari (``pip install remotemedia_nbrtc[tts]``): a small offline English voice
distilled from Kokoro's ``af_heart``, 24 kHz audio, about 100x real time on one CPU core.

Registered as ``TextToSpeechNode`` and under upstream's ``KokoroTTSNode`` (its params are accepted:
``lang_code`` ``a`` = American English, ``voice`` ``af_heart``, ``speed``, ``sample_rate`` 24000,
``stream_chunks``). Only the voice inside the package is used: nothing is downloaded at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..runtime import AudioData, Node, RuntimeData, TextData, register_node

__all__ = ["HibariTTS"]

log = logging.getLogger(__name__)

TTS_RATE = 24000
#: upstream Kokoro voice names that the bundled hibari voice reproduces
BUNDLED_VOICES = {"af_heart": "heart", "heart": "heart"}


class HibariTTS(Node):
    """Text in, speech out: one ``AudioData`` (24 kHz mono) per sentence with ``stream_chunks`` (default), or
    one for the whole text. Other inputs pass through. Speaks only the ``tts`` text channel (``ui`` text is
    for display, as upstream routes it)."""

    node_type = "TextToSpeechNode"
    threaded = True

    def __init__(self, *, voice: str = "af_heart", lang_code: str = "a", speed: float = 1.0,
                 split_pattern: str | None = None, sample_rate: int = TTS_RATE, stream_chunks: bool = True,
                 seed: int | None = 0) -> None:
        if voice not in BUNDLED_VOICES:
            raise ValueError(f"voice {voice!r}: only the bundled voice af_heart is available offline")
        if lang_code != "a":
            raise ValueError(f"lang_code {lang_code!r}: only 'a' (American English) is available")
        if sample_rate != TTS_RATE:
            raise ValueError(f"sample_rate must be {TTS_RATE} (the voice's own rate), not {sample_rate}")
        if not 0.5 <= float(speed) <= 2.0:
            raise ValueError(f"speed must be within 0.5..2.0, not {speed}")
        self.voice = voice
        self.lang_code = lang_code
        self.speed = float(speed)
        self.split_pattern = split_pattern  # upstream's sentence splitter; hibari splits sentences itself
        self.sample_rate = sample_rate
        self.stream_chunks = stream_chunks
        self.seed = seed
        self._tts: Any = None

    def _engine(self) -> Any:
        if self._tts is None:
            try:
                from hibari import Hibari
                from hibari.voices import voice_path
            except ImportError as exc:
                raise RuntimeError("text to speech needs hibari: pip install 'remotemedia_nbrtc[tts]'") from exc

            self._tts = Hibari(voice=BUNDLED_VOICES[self.voice], model=voice_path("heart", download_missing=False))
        return self._tts

    async def start(self) -> None:
        import asyncio

        await asyncio.to_thread(self._engine)  # model load stays off the event loop

    def process(self, data: RuntimeData) -> Iterator[RuntimeData]:
        if not isinstance(data, TextData):
            yield data
            return
        if data.channel != "tts" or not data.text.strip():
            return
        tts = self._engine()
        parts = tts.stream(data.text, speed=self.speed, seed=self.seed)
        if not self.stream_chunks:
            parts = iter([np.concatenate(list(parts) or [np.zeros(0, np.float32)])])
        for wav in parts:
            if wav.size:
                yield AudioData(np.asarray(wav, np.float32).reshape(-1, 1), TTS_RATE, timestamp_us=data.timestamp_us,
                                stream_id=data.stream_id)


register_node(HibariTTS, "KokoroTTSNode")
