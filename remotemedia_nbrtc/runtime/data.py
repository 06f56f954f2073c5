"""RuntimeData: the typed values that flow between pipeline nodes.

Field names follow RemoteMedia's ``RuntimeData`` (``sample_rate``, ``channels``, ``timestamp_us``,
``stream_id``, ``arrival_ts_us``, ``frame_number``...). Audio samples are float32 and interleaved,
held as a numpy array of shape ``(samples, channels)`` (C order == interleaved).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np

if TYPE_CHECKING:  # PyAV loads only when a frame is converted
    import av

__all__ = [
    "AudioData",
    "BinaryData",
    "ControlData",
    "ErrorData",
    "JsonData",
    "RuntimeData",
    "TextData",
    "VideoData",
    "now_us",
]

_AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}
_S16_SCALE = 32768.0


def _timestamp_us(frame: Any) -> int | None:
    """A PyAV frame's presentation time in microseconds, if it has one."""
    if frame.pts is None or frame.time_base is None:
        return None
    return int(frame.pts * frame.time_base * 1_000_000)


def now_us() -> int:
    """Monotonic clock in microseconds, the clock of every ``arrival_ts_us``."""
    return time.monotonic_ns() // 1000


@dataclass(eq=False)
class RuntimeData:
    """Base of every value that flows between nodes."""

    data_type: ClassVar[str] = "runtime"

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@dataclass(eq=False)
class AudioData(RuntimeData):
    """PCM audio: float32 samples in [-1, 1], shape ``(samples, channels)``."""

    samples: np.ndarray
    sample_rate: int
    timestamp_us: int | None = None
    stream_id: str | None = None
    arrival_ts_us: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "audio"

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        if samples.ndim == 1:
            samples = samples.reshape(-1, 1)
        if samples.ndim != 2:
            raise ValueError(f"audio samples must be 1-D or (samples, channels), got shape {samples.shape}")
        if samples.dtype != np.float32:
            samples = samples.astype(np.float32)
        self.samples = samples
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def layout(self) -> str:
        """PyAV/FFmpeg channel layout name (``mono``, ``stereo`` or ``<n>c``)."""
        return _AUDIO_LAYOUTS.get(self.channels, f"{self.channels}c")

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def to_av_frame(self, format: Literal["flt", "s16"] = "flt") -> av.AudioFrame:
        """A PyAV ``AudioFrame`` (packed ``flt`` by default; ``s16`` rounds to 16 bits)."""
        import av

        if format == "flt":
            data = np.ascontiguousarray(self.samples).reshape(1, -1)
        elif format == "s16":
            scaled = np.clip(np.rint(self.samples * _S16_SCALE), -32768, 32767)
            data = scaled.astype(np.int16).reshape(1, -1)
        else:
            raise ValueError(f"unsupported audio format {format!r} (use 'flt' or 's16')")
        frame = av.AudioFrame.from_ndarray(data, format=format, layout=self.layout)
        frame.sample_rate = self.sample_rate
        if self.timestamp_us is not None:
            from fractions import Fraction

            frame.time_base = Fraction(1, self.sample_rate)
            frame.pts = self.timestamp_us * self.sample_rate // 1_000_000
        return frame

    @classmethod
    def from_av_frame(cls, frame: Any, *, stream_id: str | None = None) -> AudioData:
        """Convert a PyAV ``AudioFrame`` of any sample format; s16 and float survive a round trip."""
        fmt = frame.format.name
        array = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            samples = array.T  # (channels, n) -> (n, channels)
        else:
            samples = array.reshape(-1, channels)
        if fmt.startswith("s16"):
            samples = samples.astype(np.float32) / _S16_SCALE
        elif fmt.startswith("s32"):
            samples = (samples.astype(np.float64) / 2147483648.0).astype(np.float32)
        elif fmt.startswith("u8"):
            samples = (samples.astype(np.float32) - 128.0) / 128.0
        return cls(
            samples=np.ascontiguousarray(samples, dtype=np.float32),
            sample_rate=frame.sample_rate,
            timestamp_us=_timestamp_us(frame),
            stream_id=stream_id,
            arrival_ts_us=now_us(),
        )


@dataclass(eq=False)
class VideoData(RuntimeData):
    """A raw video frame as a numpy array in ``pixel_format`` (PyAV/FFmpeg names).

    ``rgb24``/``bgr24`` frames have shape (h, w, 3), ``rgba`` (h, w, 4), ``gray`` (h, w) and
    ``yuv420p`` (h * 3 // 2, w), the layouts of ``av.VideoFrame.to_ndarray``.
    """

    frame: np.ndarray
    pixel_format: str = "rgb24"
    timestamp_us: int | None = None
    frame_number: int = 0
    stream_id: str | None = None
    arrival_ts_us: int | None = None
    is_keyframe: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "video"

    @property
    def height(self) -> int:
        rows = int(self.frame.shape[0])
        return rows * 2 // 3 if self.pixel_format in ("yuv420p", "yuvj420p", "nv12") else rows

    @property
    def width(self) -> int:
        return int(self.frame.shape[1])

    def to_av_frame(self) -> av.VideoFrame:
        """A PyAV ``VideoFrame`` with the same pixels and timestamp (lossless)."""
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(self.frame), format=self.pixel_format)
        if self.timestamp_us is not None:
            from fractions import Fraction

            vf.time_base = Fraction(1, 90_000)
            vf.pts = self.timestamp_us * 90_000 // 1_000_000
        return vf

    @classmethod
    def from_av_frame(
        cls, frame: Any, *, pixel_format: str | None = None, stream_id: str | None = None, frame_number: int = 0
    ) -> VideoData:
        """Convert a PyAV ``VideoFrame``; keeps its pixel format unless ``pixel_format`` asks for another."""
        fmt = pixel_format or frame.format.name
        return cls(
            frame=frame.to_ndarray(format=fmt),
            pixel_format=fmt,
            timestamp_us=_timestamp_us(frame),
            frame_number=frame_number,
            stream_id=stream_id,
            arrival_ts_us=now_us(),
            is_keyframe=bool(getattr(frame, "key_frame", True)),
        )


@dataclass(eq=False)
class TextData(RuntimeData):
    """Text. ``channel`` routes it (RemoteMedia: ``tts`` speakable, ``ui`` display only)."""

    text: str
    channel: str = "tts"
    timestamp_us: int | None = None
    stream_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "text"


@dataclass(eq=False)
class JsonData(RuntimeData):
    """Any JSON-serialisable value."""

    value: Any
    timestamp_us: int | None = None
    stream_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "json"


@dataclass(eq=False)
class BinaryData(RuntimeData):
    """Opaque bytes with a MIME type."""

    data: bytes
    mime_type: str = "application/octet-stream"
    stream_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "binary"


ControlKind = Literal["end_of_stream", "flush", "cancel"]


@dataclass(eq=False)
class ControlData(RuntimeData):
    """A control message: ``end_of_stream``, ``flush`` or ``cancel`` (of in-flight work)."""

    message_type: ControlKind
    segment_id: str | None = None
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "control_message"

    def __post_init__(self) -> None:
        if self.message_type not in ("end_of_stream", "flush", "cancel"):
            raise ValueError(f"unknown control message_type {self.message_type!r}")


@dataclass(eq=False)
class ErrorData(RuntimeData):
    """An error output: ``node_id`` raised ``error_type`` with ``message`` while processing."""

    node_id: str
    message: str
    error_type: str = "Exception"
    metadata: dict[str, Any] = field(default_factory=dict)

    data_type: ClassVar[str] = "error"
