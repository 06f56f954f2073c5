"""Audio nodes: resample/remix, fixed-size chunks, gain, level meter, spectrum, energy VAD."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..runtime.data import AudioData, JsonData, RuntimeData
from ..runtime.node import Node

_EPS = 1e-10


def _dbfs(value: float) -> float:
    return 20.0 * math.log10(max(value, _EPS))


class FastResample(Node):
    """Resample and remix audio with PyAV's ``AudioResampler`` (one persistent resampler per stream).

    ``target_rate`` and ``channels`` default to pass-through. ``source_rate`` and ``quality`` are
    accepted for manifest compatibility with RemoteMedia; the source rate is read from each frame.
    """

    node_type = "FastResampleNode"

    def __init__(
        self,
        *,
        target_rate: int | None = None,
        channels: int | None = None,
        source_rate: int | str | None = None,
        quality: str = "Medium",
    ) -> None:
        if target_rate is not None and target_rate <= 0:
            raise ValueError("target_rate must be positive")
        if channels is not None and channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        if quality not in ("Low", "Medium", "High"):
            raise ValueError("quality must be Low, Medium or High")
        self.target_rate = target_rate
        self.channels = channels
        self._resamplers: dict[Any, Any] = {}

    def _resampler(self, data: AudioData) -> Any:
        import av

        key = (data.stream_id, data.sample_rate, data.channels)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = av.AudioResampler(format="flt", layout=data.layout, rate=self.target_rate or data.sample_rate)
            self._resamplers[key] = resampler
        return resampler

    def _remix(self, data: AudioData) -> AudioData:
        # swresample's stereo->mono matrix adds +3 dB to identical channels (what browsers send for a
        # mono mic); averaging keeps the level, so channels are mixed here and only rates go to PyAV.
        if self.channels in (None, data.channels):
            return data
        if self.channels == 1:
            mixed = data.samples.mean(axis=1, keepdims=True)
        else:
            mixed = np.repeat(data.samples[:, :1], self.channels, axis=1)
        return data.replace(samples=mixed, metadata=dict(data.metadata))

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        data = self._remix(data)
        if self.target_rate in (None, data.sample_rate):
            return data
        frames = self._resampler(data).resample(data.to_av_frame())
        return [self._convert(f, data) for f in frames if f.samples]

    def _convert(self, frame: Any, source: AudioData) -> AudioData:
        out = AudioData.from_av_frame(frame, stream_id=source.stream_id)
        return out.replace(timestamp_us=source.timestamp_us, arrival_ts_us=source.arrival_ts_us,
                           metadata=dict(source.metadata))

    def flush(self) -> list[AudioData]:
        outs = []
        for (stream_id, _, _), resampler in self._resamplers.items():
            for frame in resampler.resample(None):
                if frame.samples:
                    outs.append(AudioData.from_av_frame(frame, stream_id=stream_id))
        self._resamplers.clear()
        return outs


class AudioChunker(Node):
    """Re-chunks audio into frames of exactly ``chunk_size`` samples (per stream). The rest is sent at flush."""

    node_type = "AudioChunkerNode"

    def __init__(self, *, chunk_size: int = 512) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.chunk_size = chunk_size
        self._buffers: dict[Any, tuple[AudioData, np.ndarray, int]] = {}

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        key = (data.stream_id, data.sample_rate, data.channels)
        template, pending, emitted = self._buffers.get(key, (data, np.zeros((0, data.channels), np.float32), 0))
        if not len(pending):
            template = data
        samples = np.concatenate([pending, data.samples]) if len(pending) else data.samples
        outs = []
        start = 0
        while len(samples) - start >= self.chunk_size:
            chunk = samples[start:start + self.chunk_size]
            outs.append(self._chunk(template, chunk, start))
            start += self.chunk_size
        rest = samples[start:]
        if len(rest):
            # the next chunk starts inside this input: time it from this input's timestamp
            offset = len(data.samples) - len(rest)
            template = data.replace(timestamp_us=_shift(data.timestamp_us, offset, data.sample_rate))
            self._buffers[key] = (template, rest.copy(), emitted + len(outs))
        else:
            self._buffers.pop(key, None)
        return outs

    def _chunk(self, template: AudioData, chunk: np.ndarray, offset: int) -> AudioData:
        return template.replace(samples=np.ascontiguousarray(chunk),
                                timestamp_us=_shift(template.timestamp_us, offset, template.sample_rate),
                                metadata=dict(template.metadata))

    def flush(self) -> list[AudioData]:
        outs = [t.replace(samples=rest, metadata=dict(t.metadata))
                for t, rest, _ in self._buffers.values() if len(rest)]
        self._buffers.clear()
        return outs


def _shift(timestamp_us: int | None, samples: int, rate: int) -> int | None:
    return None if timestamp_us is None else timestamp_us + samples * 1_000_000 // rate


class Gain(Node):
    """Multiplies audio by ``gain_db`` (change ``node.gain_db`` while streaming). Clips to [-1, 1]."""

    node_type = "Gain"

    def __init__(self, *, gain_db: float = 0.0) -> None:
        self.gain_db = gain_db

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, AudioData):
            return data
        factor = np.float32(10.0 ** (self.gain_db / 20.0))
        return data.replace(samples=np.clip(data.samples * factor, -1.0, 1.0), metadata=dict(data.metadata))


class AudioLevel(Node):
    """Emits ``{"rms_dbfs", "peak_dbfs", "timestamp_us", "samples", "sample_rate"}`` per audio input."""

    node_type = "AudioLevelNode"

    def __init__(self, *, passthrough: bool = False) -> None:
        self.passthrough = passthrough

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        samples = data.samples
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        level = JsonData(
            {"kind": "level", "rms_dbfs": round(_dbfs(rms), 2), "peak_dbfs": round(_dbfs(peak), 2),
             "timestamp_us": data.timestamp_us, "samples": data.num_samples, "sample_rate": data.sample_rate},
            timestamp_us=data.timestamp_us, stream_id=data.stream_id,
            metadata={"arrival_ts_us": data.arrival_ts_us} if data.arrival_ts_us else {},
        )
        return [level, data] if self.passthrough else level


class Spectrum(Node):
    """Emits FFT band energies in dB: ``{"bands_hz": [...], "db": [...]}`` over ``bands`` log-spaced bands."""

    node_type = "SpectrumNode"

    def __init__(self, *, bands: int = 16, min_hz: float = 50.0, max_hz: float = 8000.0) -> None:
        if bands < 1:
            raise ValueError("bands must be >= 1")
        if not 0 < min_hz < max_hz:
            raise ValueError("need 0 < min_hz < max_hz")
        self.bands = bands
        self.min_hz = min_hz
        self.max_hz = max_hz

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        mono = data.samples.mean(axis=1)
        n = len(mono)
        if n == 0:
            return None
        window = np.hanning(n).astype(np.float32)
        power = np.abs(np.fft.rfft(mono * window)) ** 2 / max(np.sum(window**2), _EPS)
        freqs = np.fft.rfftfreq(n, 1.0 / data.sample_rate)
        top = min(self.max_hz, data.sample_rate / 2)
        edges = np.geomspace(self.min_hz, top, self.bands + 1)
        db = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            mask = (freqs >= lo) & (freqs < hi)
            energy = float(power[mask].sum()) if mask.any() else 0.0
            db.append(round(10.0 * math.log10(max(energy, _EPS)), 2))
        centres = [round(float(math.sqrt(lo * hi)), 1) for lo, hi in zip(edges[:-1], edges[1:])]
        return JsonData({"kind": "spectrum", "bands_hz": centres, "db": db, "timestamp_us": data.timestamp_us},
                        timestamp_us=data.timestamp_us, stream_id=data.stream_id)


class EnergyVAD(Node):
    """Energy-threshold voice activity: emits a JSON event per input, then the audio (like SileroVADNode).

    Speech starts when the RMS exceeds ``threshold_db`` and ends after ``min_silence_ms`` below it.
    ``threshold_db`` can be changed while streaming.
    """

    node_type = "EnergyVADNode"

    def __init__(self, *, threshold_db: float = -40.0, min_silence_ms: float = 200.0, passthrough: bool = True) -> None:
        self.threshold_db = threshold_db
        self.min_silence_ms = min_silence_ms
        self.passthrough = passthrough
        self._in_speech = False
        self._silence_ms = 0.0

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        rms = float(np.sqrt(np.mean(np.square(data.samples, dtype=np.float64)))) if data.samples.size else 0.0
        level = _dbfs(rms)
        voiced = level > self.threshold_db
        start = end = False
        if voiced:
            self._silence_ms = 0.0
            if not self._in_speech:
                self._in_speech = start = True
        elif self._in_speech:
            self._silence_ms += data.duration_s * 1000
            if self._silence_ms >= self.min_silence_ms:
                self._in_speech = False
                end = True
        event = JsonData(
            {"kind": "vad", "has_speech": self._in_speech, "is_speech_start": start, "is_speech_end": end,
             "rms_dbfs": round(level, 2), "timestamp_us": data.timestamp_us},
            timestamp_us=data.timestamp_us, stream_id=data.stream_id,
        )
        return [event, data] if self.passthrough else event
