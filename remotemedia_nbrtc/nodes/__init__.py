"""Built-in nodes, registered under RemoteMedia's ``node_type`` names where upstream has the node.

Importing is cheap: pocketsphinx, scipy, Pillow, webrtcvad and silero load when a node first needs them.
"""

from .audio import AudioChunker, AudioLevel, EnergyVAD, FastResample, Gain, Spectrum
from .basic import Echo, PassThrough
from .effects import BiquadFilter, Compressor, Delay, NoiseGate, PitchShift
from .speech import PocketSphinxSTT, SileroVAD, SpeechGate, SpeechToText, SpeechToTextNode, WebRTCVAD
from .text import PhrasebookTranslator, TranslateNode
from .tts import HibariTTS
from .turns import ReplyOnPause
from .upstream import TransportCodec, WhisperSTTAlias
from .video import VideoFlip, VideoFormatConverter, VideoGrayscale, VideoScaler, VideoStats
from .vision import EdgeDetect, ForegroundMask, MotionHeatmap, Overlay

__all__ = [
    "AudioChunker",
    "AudioLevel",
    "BiquadFilter",
    "Compressor",
    "Delay",
    "Echo",
    "EdgeDetect",
    "EnergyVAD",
    "FastResample",
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
    "VideoFlip",
    "VideoFormatConverter",
    "VideoGrayscale",
    "VideoScaler",
    "VideoStats",
    "WebRTCVAD",
    "WhisperSTTAlias",
]
