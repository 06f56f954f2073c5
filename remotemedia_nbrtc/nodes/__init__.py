"""Built-in nodes, registered under RemoteMedia's ``node_type`` names where upstream has the node.

Importing is cheap: pocketsphinx, scipy, Pillow, webrtcvad and silero load when a node first needs them.
May import: ``runtime`` and the model libraries above; nothing of ``transport``, Jupyter or the widget.
"""

from .audio import AudioChunker, AudioLevel, EnergyVAD, FastResample, Gain, Spectrum
from .basic import Echo, PassThrough
from .effects import BiquadFilter, Compressor, Delay, NoiseGate, PitchShift
from .speech import PocketSphinxSTT, SileroVAD, SpeechGate, SpeechToText, SpeechToTextNode, WebRTCVAD
from .text import ApertiumTranslator, PhrasebookTranslator, TranslateNode, Translator
from .tts import HibariTTS
from .turns import ReplyOnPause
from .upstream import TransportCodec, WhisperSTTAlias
from .video import VideoFlip, VideoFormatConverter, VideoGrayscale, VideoScaler, VideoStats
from .vision import EdgeDetect, ForegroundMask, MotionHeatmap, Overlay
from .whisper import FasterWhisperEngine

__all__ = [
    "ApertiumTranslator",
    "AudioChunker",
    "AudioLevel",
    "BiquadFilter",
    "Compressor",
    "Delay",
    "Echo",
    "EdgeDetect",
    "EnergyVAD",
    "FastResample",
    "FasterWhisperEngine",
    "ForegroundMask",
    "HibariTTS",
    "Gain",
    "MotionHeatmap",
    "NoiseGate",
    "Overlay",
    "PassThrough",
    "PhrasebookTranslator",
    "PitchShift",
    "PocketSphinxSTT",
    "ReplyOnPause",
    "SileroVAD",
    "SpeechGate",
    "SpeechToText",
    "SpeechToTextNode",
    "Spectrum",
    "TranslateNode",
    "TransportCodec",
    "Translator",
    "VideoFlip",
    "VideoFormatConverter",
    "VideoGrayscale",
    "VideoScaler",
    "VideoStats",
    "WebRTCVAD",
    "WhisperSTTAlias",
]
