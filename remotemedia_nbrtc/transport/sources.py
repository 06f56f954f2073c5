"""Browser-free media sources: aiortc ``MediaStreamTrack`` subclasses paced in real time.

Audio sources produce 20 ms s16 frames at 48 kHz by default (a mono signal on two equal channels); video
sources produce yuv420p frames. ``ToneBurstSource`` and ``SyntheticVideoSource`` record when each burst / frame left the
source (``now_us()``, the runtime's monotonic clock) so latency can be measured at the far end.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from remotemedia_nbrtc.runtime.data import VideoData, now_us

__all__ = [
    "FRAME_NUMBER_BITS",
    "SyntheticVideoSource",
    "ToneBurstSource",
    "ToneSource",
    "VideoFileSource",
    "WavFileSource",
    "decode_frame_number",
]

VIDEO_CLOCK_RATE = 90_000
FRAME_NUMBER_BITS = 16
_Y_ONE, _Y_ZERO = 235, 16


class _Pacer:
    """Sleeps until a frame's presentation time on the wall clock (started on the first frame)."""

    def __init__(self) -> None:
        self._start: float | None = None

    async def wait(self, at_s: float) -> None:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class _AudioSource(MediaStreamTrack):
    """Base: subclasses fill :meth:`_samples` with ``frame_samples`` float samples in [-1, 1]."""

    kind = "audio"

    def __init__(self, *, sample_rate: int = 48000, frame_ms: int = 20, duration_s: float | None = None) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.duration_s = duration_s
        self.frames_sent = 0
        self._pts = 0
        self._pacer = _Pacer()
        self._time_base = fractions.Fraction(1, sample_rate)

    def _samples(self, start: int, count: int) -> np.ndarray | None:
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._on_next()
        if self.duration_s is not None and self._pts >= self.duration_s * self.sample_rate:
            self.stop()
            raise MediaStreamError
        samples = self._samples(self._pts, self.frame_samples)
        if samples is None:
            self.stop()
            raise MediaStreamError
        await self._pacer.wait(self._pts / self.sample_rate)
        pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)
        # two equal channels, as a browser's mono mic arrives: aiortc's Opus encoder would upmix mono
        # with FFmpeg's -3 dB pan law and the far end would get the signal 3 dB low
        frame = av.AudioFrame.from_ndarray(np.repeat(pcm, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._on_sent(self._pts, self.frame_samples)
        self._pts += self.frame_samples
        self.frames_sent += 1
        return frame

    def _on_sent(self, start: int, count: int) -> None:
        """Hook called just before a frame is handed to the sender."""

    def _on_next(self) -> None:
        """Hook called when the sender asks for the next frame (the previous one is encoded and sent)."""


class ToneSource(_AudioSource):
    """A continuous sine tone (``duration_s=None``: endless)."""

    def __init__(
        self,
        freq: float = 440.0,
        duration_s: float | None = None,
        *,
        amplitude: float = 0.5,
        sample_rate: int = 48000,
        frame_ms: int = 20,
    ) -> None:
        super().__init__(sample_rate=sample_rate, frame_ms=frame_ms, duration_s=duration_s)
        self.freq = freq
        self.amplitude = amplitude

    def _samples(self, start: int, count: int) -> np.ndarray:
        t = (start + np.arange(count)) / self.sample_rate
        return (self.amplitude * np.sin(2 * np.pi * self.freq * t)).astype(np.float32)


class ToneBurstSource(_AudioSource):
    """Short tone bursts (``burst_ms`` long, every ``period_ms``) in silence.

    ``onsets`` lists ``(sample_index, sent_us)`` for each burst: the frame containing the onset was
    handed to the sender at ``sent_us`` (``now_us()`` clock). ``encoded`` lists ``(sample_index, us)``:
    when the sender asked for the frame after it, i.e. had encoded and sent the onset's frame.
    """

    def __init__(
        self,
        burst_ms: float = 20.0,
        period_ms: float = 500.0,
        *,
        freq: float = 880.0,
        amplitude: float = 0.5,
        duration_s: float | None = None,
        sample_rate: int = 48000,
        frame_ms: int = 20,
    ) -> None:
        super().__init__(sample_rate=sample_rate, frame_ms=frame_ms, duration_s=duration_s)
        self.freq = freq
        self.amplitude = amplitude
        self.burst_samples = int(sample_rate * burst_ms / 1000)
        self.period_samples = int(sample_rate * period_ms / 1000)
        self.onsets: list[tuple[int, int]] = []
        self.encoded: list[tuple[int, int]] = []
        self._pending: list[int] = []

    def _samples(self, start: int, count: int) -> np.ndarray:
        idx = start + np.arange(count)
        on = (idx % self.period_samples) < self.burst_samples
        t = idx / self.sample_rate
        return np.where(on, self.amplitude * np.sin(2 * np.pi * self.freq * t), 0.0).astype(np.float32)

    def _on_sent(self, start: int, count: int) -> None:
        first = -(-start // self.period_samples) * self.period_samples  # first onset >= start
        sent = now_us()
        for onset in range(first, start + count, self.period_samples):
            self.onsets.append((onset, sent))
            self._pending.append(onset)

    def _on_next(self) -> None:
        if self._pending:
            done = now_us()
            self.encoded.extend((onset, done) for onset in self._pending)
            self._pending.clear()


class WavFileSource(_AudioSource):
    """A sound file (any format FFmpeg reads) decoded up front, resampled to mono ``sample_rate``.

    ``loop=True`` repeats it; otherwise the track ends after the file (``pad_s`` of silence first).
    """

    def __init__(
        self, path: str | Path, *, loop: bool = False, pad_s: float = 0.0, sample_rate: int = 48000, frame_ms: int = 20
    ) -> None:
        super().__init__(sample_rate=sample_rate, frame_ms=frame_ms)
        self.path = Path(path)
        if not self.path.exists():  # a wrong path must not turn into silent audio
            raise FileNotFoundError(self.path)
        self.loop = loop
        audio = self._decode(self.path, sample_rate)
        self._audio = np.concatenate([audio, np.zeros(int(pad_s * sample_rate), np.float32)])

    @staticmethod
    def _decode(path: Path, rate: int) -> np.ndarray:
        chunks = []
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    @property
    def duration(self) -> float:
        return len(self._audio) / self.sample_rate

    def _samples(self, start: int, count: int) -> np.ndarray | None:
        n = len(self._audio)
        if n == 0:
            return None
        if self.loop:
            return self._audio[(start + np.arange(count)) % n]
        if start >= n:
            return None
        out = np.zeros(count, np.float32)
        chunk = self._audio[start : start + count]
        out[: len(chunk)] = chunk
        return out


def _draw_frame_number(y: np.ndarray, number: int) -> None:
    """Write ``number`` as FRAME_NUMBER_BITS black/white blocks across the top of a luma plane."""
    height, width = y.shape
    block_w = width // FRAME_NUMBER_BITS
    block_h = min(16, height // 4)
    for bit in range(FRAME_NUMBER_BITS):
        y[:block_h, bit * block_w : (bit + 1) * block_w] = _Y_ONE if (number >> bit) & 1 else _Y_ZERO


def decode_frame_number(frame: np.ndarray | VideoData) -> int:
    """Read the frame number a :class:`SyntheticVideoSource` drew (ndarray rgb/gray/yuv420p, or VideoData).

    Survives lossy coding and scaling: each bit is the mean of the centre of its block.
    """
    pixels, fmt = (frame.frame, frame.pixel_format) if isinstance(frame, VideoData) else (frame, None)
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 3:
        luma = arr[..., :3].mean(axis=2)
    elif fmt in ("yuv420p", "yuvj420p", "nv12"):
        luma = arr[: arr.shape[0] * 2 // 3]
    else:
        luma = arr
    height, width = luma.shape
    block_w = width // FRAME_NUMBER_BITS
    block_h = min(16, height // 4)
    number = 0
    for bit in range(FRAME_NUMBER_BITS):
        x0 = bit * block_w
        patch = luma[block_h // 4 : max(block_h * 3 // 4, 1), x0 + block_w // 4 : x0 + max(block_w * 3 // 4, 1)]
        if patch.mean() > (_Y_ONE + _Y_ZERO) / 2:
            number |= 1 << bit
    return number


class SyntheticVideoSource(MediaStreamTrack):
    """A moving test pattern whose frame number is drawn in the top rows (see :func:`decode_frame_number`).

    ``sent_us[n]`` is when frame ``n`` was handed to the sender (``now_us()`` clock).
    """

    kind = "video"

    def __init__(
        self, width: int = 320, height: int = 240, fps: float = 15.0, *, duration_s: float | None = None
    ) -> None:
        super().__init__()
        if width % 2 or height % 2:
            raise ValueError("yuv420p needs even width and height")
        self.width, self.height, self.fps = width, height, fps
        self.duration_s = duration_s
        self.frames_sent = 0
        self.sent_us: dict[int, int] = {}
        self._pacer = _Pacer()
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)

    def make_frame(self, number: int) -> np.ndarray:
        """The yuv420p array (h * 3 / 2, w) of frame ``number``."""
        w, h = self.width, self.height
        yuv = np.full((h * 3 // 2, w), 128, np.uint8)
        x = np.arange(w)
        y = yuv[:h]
        y[:] = (64 + (x + 4 * number) % 128).astype(np.uint8)  # a ramp that scrolls with time
        _draw_frame_number(y, number)
        return yuv

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        number = self.frames_sent
        if self.duration_s is not None and number >= self.duration_s * self.fps:
            self.stop()
            raise MediaStreamError
        await self._pacer.wait(number / self.fps)
        frame = av.VideoFrame.from_ndarray(self.make_frame(number), format="yuv420p")
        frame.pts = int(number * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = self._time_base
        self.sent_us[number] = now_us()
        self.frames_sent += 1
        return frame


class VideoFileSource(MediaStreamTrack):
    """Frames of a video file (any FFmpeg format, e.g. y4m), paced by their timestamps.

    Decodes on the calling loop one frame at a time (fine for small test clips); ``loop=True`` repeats.
    """

    kind = "video"

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        self.loop = loop
        self.frames_sent = 0
        self._container: Any = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._pacer = _Pacer()
        self._offset_s = 0.0
        self._last_s = 0.0
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)

    def _open(self) -> Iterator[av.VideoFrame]:
        self._container = av.open(str(self.path))
        self._frames = self._container.decode(video=0)
        return self._frames

    def _next(self) -> av.VideoFrame | None:
        frames = self._open() if self._container is None or self._frames is None else self._frames
        try:
            return next(frames)
        except (StopIteration, av.error.EOFError):
            self._close_container()
            return None

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = self._next()
        if frame is None and self.loop and self.frames_sent:
            self._offset_s = self._last_s + 1 / 30
            frame = self._next()
        if frame is None:
            self.stop()
            raise MediaStreamError
        rel = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else self.frames_sent / 30
        at_s = self._offset_s + rel
        self._last_s = at_s
        await self._pacer.wait(at_s)
        out = frame.reformat(format="yuv420p")
        out.pts = int(at_s * VIDEO_CLOCK_RATE)
        out.time_base = self._time_base
        self.frames_sent += 1
        return out

    def stop(self) -> None:
        super().stop()
        self._close_container()
