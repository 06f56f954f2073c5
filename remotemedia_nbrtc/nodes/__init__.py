"""Built-in nodes, registered under RemoteMedia's ``node_type`` names where upstream has the node."""

from .audio import AudioChunker, AudioLevel, EnergyVAD, FastResample, Gain, Spectrum
from .basic import Echo, PassThrough
from .video import VideoFlip, VideoFormatConverter, VideoGrayscale, VideoScaler, VideoStats

__all__ = [
    "AudioChunker",
    "AudioLevel",
    "Echo",
    "EnergyVAD",
    "FastResample",
    "Gain",
    "PassThrough",
    "Spectrum",
    "VideoFlip",
    "VideoFormatConverter",
    "VideoGrayscale",
    "VideoScaler",
    "VideoStats",
]
