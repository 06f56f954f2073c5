"""Audio effects with state across frames: biquad filters, delay, noise gate, compressor, pitch shift.

Every parameter is a plain attribute read on each frame, so it can be changed while streaming.
State (filter memory, delay line, envelopes, phase) is kept per ``(stream_id, sample_rate,
channels)`` and starts afresh when that changes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np

from ..runtime.data import AudioData, RuntimeData
from ..runtime.node import Node

__all__ = [
    "BiquadFilter",
    "Compressor",
    "Delay",
    "NoiseGate",
    "PitchShift",
    "biquad_coefficients",
]

FILTER_TYPES = ("lowpass", "highpass", "bandpass", "notch", "peaking", "lowshelf", "highshelf")


def biquad_coefficients(kind: str, freq: float, q: float, gain_db: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``(b, a)`` of an RBJ Audio-EQ-Cookbook biquad (``bandpass``: 0 dB peak gain)."""
    if kind not in FILTER_TYPES:
        raise ValueError(f"filter_type must be one of {FILTER_TYPES}")
    if not 0 < freq < rate / 2:
        raise ValueError(f"freq must be in (0, {rate / 2}) Hz")
    if q <= 0:
        raise ValueError("q must be > 0")
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / rate
    cos_w0, sin_w0 = math.cos(w0), math.sin(w0)
    alpha = sin_w0 / (2.0 * q)
    if kind == "lowpass":
        b = [(1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2]
        a = [1 + alpha, -2 * cos_w0, 1 - alpha]
    elif kind == "highpass":
        b = [(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2]
        a = [1 + alpha, -2 * cos_w0, 1 - alpha]
    elif kind == "bandpass":
        b = [alpha, 0.0, -alpha]
        a = [1 + alpha, -2 * cos_w0, 1 - alpha]
    elif kind == "notch":
        b = [1.0, -2 * cos_w0, 1.0]
        a = [1 + alpha, -2 * cos_w0, 1 - alpha]
    elif kind == "peaking":
        b = [1 + alpha * amp, -2 * cos_w0, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos_w0, 1 - alpha / amp]
    else:
        sq = 2.0 * math.sqrt(amp) * alpha
        if kind == "lowshelf":
            b = [amp * ((amp + 1) - (amp - 1) * cos_w0 + sq), 2 * amp * ((amp - 1) - (amp + 1) * cos_w0),
                 amp * ((amp + 1) - (amp - 1) * cos_w0 - sq)]
            a = [(amp + 1) + (amp - 1) * cos_w0 + sq, -2 * ((amp - 1) + (amp + 1) * cos_w0),
                 (amp + 1) + (amp - 1) * cos_w0 - sq]
        else:
            b = [amp * ((amp + 1) + (amp - 1) * cos_w0 + sq), -2 * amp * ((amp - 1) + (amp + 1) * cos_w0),
                 amp * ((amp + 1) + (amp - 1) * cos_w0 - sq)]
            a = [(amp + 1) - (amp - 1) * cos_w0 + sq, 2 * ((amp - 1) - (amp + 1) * cos_w0),
                 (amp + 1) - (amp - 1) * cos_w0 - sq]
    b_arr, a_arr = np.array(b, np.float64), np.array(a, np.float64)
    return b_arr / a_arr[0], a_arr / a_arr[0]


class _StatefulEffect(Node):
    """Keeps one state object per stream format; subclasses implement ``_new_state`` and ``_apply``."""

    def __init__(self) -> None:
        self._states: dict[Any, Any] = {}

    async def start(self) -> None:
        # scipy.signal takes seconds to import on a cold machine; paid in the first process call, that stall
        # became a standing backlog of returned audio (trimmed). Off the event loop, before the first frame.
        await asyncio.to_thread(self._warm_up)

    def _warm_up(self) -> None:
        import scipy.signal  # noqa: F401

        probe = AudioData(np.zeros((960, 1), np.float32), 48000)
        self._apply(self._new_state(probe), probe)

    def _new_state(self, data: AudioData) -> Any:
        raise NotImplementedError

    def _apply(self, state: Any, data: AudioData) -> np.ndarray:
        raise NotImplementedError

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, AudioData):
            return data
        key = (data.stream_id, data.sample_rate, data.channels)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._new_state(data)
        out = self._apply(state, data)
        return data.replace(samples=np.ascontiguousarray(out, dtype=np.float32), metadata=dict(data.metadata))

    def flush(self) -> None:
        self._states.clear()


class BiquadFilter(_StatefulEffect):
    """RBJ biquad: ``filter_type`` lowpass/highpass/bandpass/notch/peaking/lowshelf/highshelf.

    ``freq`` (Hz), ``q`` and ``gain_db`` (peaking and shelves) can change while streaming; the
    filter memory (``zi`` of ``scipy.signal.lfilter``) is kept across frames and changes.
    """

    node_type = "BiquadFilterNode"
    threaded = False

    def __init__(self, *, filter_type: str = "lowpass", freq: float = 1000.0, q: float = 0.7071,
                 gain_db: float = 0.0) -> None:
        super().__init__()
        if filter_type not in FILTER_TYPES:
            raise ValueError(f"filter_type must be one of {FILTER_TYPES}")
        if freq <= 0 or q <= 0:
            raise ValueError("freq and q must be > 0")
        self.filter_type = filter_type
        self.freq = freq
        self.q = q
        self.gain_db = gain_db

    def _new_state(self, data: AudioData) -> dict[str, Any]:
        return {"zi": np.zeros((2, data.channels)), "key": None, "ba": None}

    def _apply(self, state: dict[str, Any], data: AudioData) -> np.ndarray:
        from scipy.signal import lfilter

        key = (self.filter_type, float(self.freq), float(self.q), float(self.gain_db), data.sample_rate)
        if state["key"] != key:
            state["ba"] = biquad_coefficients(self.filter_type, self.freq, self.q, self.gain_db, data.sample_rate)
            state["key"] = key
        b, a = state["ba"]
        out: np.ndarray
        out, state["zi"] = lfilter(b, a, data.samples.astype(np.float64), axis=0, zi=state["zi"])
        return out


class Delay(_StatefulEffect):
    """Feedback delay (echo): ``delay_ms`` (up to ``max_delay_ms``), ``feedback`` [0, 0.95], ``mix`` [0, 1].

    ``out = (1 - mix) * dry + mix * delayed``; the delay line holds ``dry + feedback * delayed``.
    """

    node_type = "DelayNode"

    def __init__(self, *, delay_ms: float = 250.0, feedback: float = 0.3, mix: float = 0.5,
                 max_delay_ms: float = 2000.0) -> None:
        super().__init__()
        if not 0 < delay_ms <= max_delay_ms:
            raise ValueError("need 0 < delay_ms <= max_delay_ms")
        self.delay_ms = delay_ms
        self.feedback = feedback
        self.mix = mix
        self.max_delay_ms = max_delay_ms

    def _new_state(self, data: AudioData) -> dict[str, Any]:
        size = int(self.max_delay_ms * data.sample_rate / 1000) + 1
        return {"line": np.zeros((size, data.channels), np.float64), "pos": 0}

    def _apply(self, state: dict[str, Any], data: AudioData) -> np.ndarray:
        line: np.ndarray = state["line"]
        size = len(line)
        delay = round(min(max(self.delay_ms, 0.0), self.max_delay_ms) * data.sample_rate / 1000)
        delay = min(max(delay, 1), size - 1)
        feedback = float(np.clip(self.feedback, 0.0, 0.95))
        mix = float(np.clip(self.mix, 0.0, 1.0))
        x = data.samples.astype(np.float64)
        out = np.empty_like(x)
        pos = state["pos"]
        i = 0
        while i < len(x):
            # a block no longer than the delay reads only samples written before it
            n = min(delay, len(x) - i)
            read = (pos - delay + np.arange(n)) % size
            write = (pos + np.arange(n)) % size
            delayed = line[read]
            line[write] = x[i:i + n] + feedback * delayed
            out[i:i + n] = (1 - mix) * x[i:i + n] + mix * delayed
            pos = (pos + n) % size
            i += n
        state["pos"] = pos
        return out


def _smoothing(ms: float, step_s: float) -> float:
    """One-pole coefficient reaching 1 - 1/e of a step in ``ms``."""
    return 0.0 if ms <= 0 else math.exp(-step_s / (ms / 1000.0))


class _Dynamics(_StatefulEffect):
    """Level detection (RMS over ``window_ms``) and gain smoothing in ``block_ms`` steps.

    The gain is interpolated linearly inside each block, so changes never step (no clicks).
    """

    block_ms = 1.0

    def __init__(self, *, window_ms: float) -> None:
        super().__init__()
        if window_ms <= 0:
            raise ValueError("window_ms must be > 0")
        self.window_ms = window_ms

    def _new_state(self, data: AudioData) -> dict[str, Any]:
        window = max(1, int(self.window_ms * data.sample_rate / 1000))
        return {"history": np.zeros(window, np.float64), "gain_db": 0.0, "pending": 0,
                "hold_left": 0.0, "block": max(1, int(self.block_ms * data.sample_rate / 1000))}

    def _target_gain_db(self, level_db: float, state: dict[str, Any], block_s: float) -> float:
        raise NotImplementedError

    def _coefficient(self, target: float, current: float, block_s: float) -> float:
        raise NotImplementedError

    def _apply(self, state: dict[str, Any], data: AudioData) -> np.ndarray:
        x = data.samples.astype(np.float64)
        power = np.mean(np.square(x), axis=1)  # all channels share one gain (keeps the stereo image)
        window = len(state["history"])
        padded = np.concatenate([state["history"], power])
        csum = np.concatenate([[0.0], np.cumsum(padded)])
        state["history"] = padded[-window:]
        block = state["block"]
        block_s = block / data.sample_rate
        gains = np.empty(len(x))
        prev = state["gain_db"]
        for start in range(0, len(x), block):
            end = min(start + block, len(x))
            hi = window + end
            mean_sq = max((csum[hi] - csum[hi - window]) / window, 0.0)
            level_db = 10.0 * math.log10(mean_sq + 1e-20)
            target = self._target_gain_db(level_db, state, (end - start) / data.sample_rate)
            coef = self._coefficient(target, prev, block_s) ** ((end - start) / block)
            new = target + (prev - target) * coef
            gains[start:end] = np.linspace(prev, new, end - start + 1)[1:]
            prev = new
        state["gain_db"] = prev
        return x * (10.0 ** (gains / 20.0))[:, None]


class NoiseGate(_Dynamics):
    """Mutes audio whose RMS level is below ``threshold_db`` (down to ``range_db``).

    Opens in ``attack_ms``, stays open ``hold_ms`` after the level drops, closes in ``release_ms``.
    """

    node_type = "NoiseGateNode"

    def __init__(self, *, threshold_db: float = -45.0, attack_ms: float = 1.0, hold_ms: float = 50.0,
                 release_ms: float = 80.0, range_db: float = -80.0, window_ms: float = 10.0) -> None:
        super().__init__(window_ms=window_ms)
        self.threshold_db = threshold_db
        self.attack_ms = attack_ms
        self.hold_ms = hold_ms
        self.release_ms = release_ms
        self.range_db = range_db

    def _target_gain_db(self, level_db: float, state: dict[str, Any], block_s: float) -> float:
        if level_db >= self.threshold_db:
            state["hold_left"] = self.hold_ms / 1000.0
            return 0.0
        if state["hold_left"] > 0:
            state["hold_left"] -= block_s
            return 0.0
        return min(0.0, float(self.range_db))

    def _coefficient(self, target: float, current: float, block_s: float) -> float:
        return _smoothing(self.attack_ms if target > current else self.release_ms, block_s)


class Compressor(_Dynamics):
    """Downward compressor: above ``threshold_db`` the level rises ``1/ratio`` as fast.

    Gain reduction follows in ``attack_ms`` and recovers in ``release_ms``; ``makeup_db`` is
    added after. Levels are RMS over ``window_ms`` (a sine at -10 dBFS RMS has a 0.447 peak).
    """

    node_type = "CompressorNode"

    def __init__(self, *, threshold_db: float = -20.0, ratio: float = 4.0, attack_ms: float = 5.0,
                 release_ms: float = 100.0, makeup_db: float = 0.0, knee_db: float = 0.0,
                 window_ms: float = 10.0) -> None:
        super().__init__(window_ms=window_ms)
        if ratio < 1:
            raise ValueError("ratio must be >= 1")
        self.threshold_db = threshold_db
        self.ratio = ratio
        self.attack_ms = attack_ms
        self.release_ms = release_ms
        self.makeup_db = makeup_db
        self.knee_db = knee_db

    def static_gain_db(self, level_db: float) -> float:
        """Gain (without makeup) the compressor settles at for a steady ``level_db`` input."""
        over = level_db - self.threshold_db
        slope = 1.0 / max(self.ratio, 1.0) - 1.0
        knee = max(self.knee_db, 0.0)
        if knee and abs(over) <= knee / 2:
            return slope * (over + knee / 2) ** 2 / (2 * knee)
        return slope * over if over > 0 else 0.0

    def _target_gain_db(self, level_db: float, state: dict[str, Any], block_s: float) -> float:
        return self.static_gain_db(level_db)

    def _coefficient(self, target: float, current: float, block_s: float) -> float:
        return _smoothing(self.attack_ms if target < current else self.release_ms, block_s)

    def _apply(self, state: dict[str, Any], data: AudioData) -> np.ndarray:
        made_up: np.ndarray = super()._apply(state, data) * (10.0 ** (self.makeup_db / 20.0))
        return made_up


class PitchShift(_StatefulEffect):
    """Shifts pitch by ``semitones`` keeping the duration: WSOLA time-stretch, then resampling.

    The stream is time-stretched by ``r = 2 ** (semitones / 12)`` with WSOLA (waveform-similarity
    overlap-add: Hann windows of ``window_ms`` at 50 % overlap, each spliced where it best matches
    the natural continuation within ``tolerance_ms``), then read back ``r`` times faster with
    linear interpolation. Each output frame has exactly as many samples as its input; all state
    carries across frames, and ``semitones`` can change while streaming. Latency is constant,
    about ``1.5 * window_ms + 2 * tolerance_ms``. Formants move with the pitch (no correction).
    """

    node_type = "PitchShiftNode"

    def __init__(self, *, semitones: float = 0.0, window_ms: float = 30.0, tolerance_ms: float = 10.0) -> None:
        super().__init__()
        if not -24 <= semitones <= 24:
            raise ValueError("semitones must be within [-24, 24]")
        if not 5 <= window_ms <= 200:
            raise ValueError("window_ms must be within [5, 200]")
        if not 0 <= tolerance_ms <= window_ms:
            raise ValueError("tolerance_ms must be within [0, window_ms]")
        self.semitones = semitones
        self.window_ms = window_ms
        self.tolerance_ms = tolerance_ms

    def _new_state(self, data: AudioData) -> dict[str, Any]:
        rate, ch = data.sample_rate, data.channels
        size = max(4, int(self.window_ms * rate / 1000) // 2 * 2)
        hop = size // 2
        tol = int(self.tolerance_ms * rate / 1000)
        latency = size + hop + 2 * tol
        return {
            "size": size, "hop": hop, "tol": tol,
            "window": 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size),  # periodic Hann: sums to 1
            "input": np.zeros((tol, ch)), "in_base": -tol,  # absolute index of input[0]; zeros before 0
            "ana": 0.0, "prev": None,
            "acc": np.zeros((size, ch)),
            "stretched": np.zeros((0, ch)), "rs_pos": 0.0,
            "out": np.zeros((latency, ch)),
        }

    def _apply(self, state: dict[str, Any], data: AudioData) -> np.ndarray:
        from scipy.signal import correlate

        ratio = 2.0 ** (float(self.semitones) / 12.0)
        size, hop, tol, window = state["size"], state["hop"], state["tol"], state["window"]
        x = data.samples.astype(np.float64)
        buf = np.concatenate([state["input"], x])
        base = state["in_base"]
        end = base + len(buf)
        produced = []
        while True:
            ana = round(state["ana"])
            prev = state["prev"]
            natural = None if prev is None else prev + hop
            need = max(ana + tol + size, (natural or 0) + size)
            if need > end:
                break
            if natural is None:
                pos = ana
            else:
                template = buf[natural - base:natural - base + size].mean(axis=1)
                lo = max(ana - tol, base)
                region = buf[lo - base:ana + tol + size - base].mean(axis=1)
                scores = correlate(region, template, mode="valid", method="fft")
                pos = lo + int(np.argmax(scores))
            acc = state["acc"]
            acc += buf[pos - base:pos - base + size] * window[:, None]
            produced.append(acc[:hop].copy())
            state["acc"] = np.concatenate([acc[hop:], np.zeros((hop, acc.shape[1]))])
            state["prev"] = pos
            state["ana"] += hop / ratio
        # keep the input that later segments can still reach
        keep_from = min(round(state["ana"]) - tol, (state["prev"] + hop) if state["prev"] is not None else end)
        keep_from = max(min(keep_from, end), base)
        state["input"] = buf[keep_from - base:]
        state["in_base"] = keep_from
        stretched = np.concatenate([state["stretched"], *produced]) if produced else state["stretched"]
        # read the stretched stream `ratio` times faster (linear interpolation)
        pos0 = state["rs_pos"]
        count = max(0, int(np.ceil((len(stretched) - 1 - pos0) / ratio)))
        if count:
            positions = pos0 + ratio * np.arange(count)
            i0 = np.floor(positions).astype(np.int64)
            frac = (positions - i0)[:, None]
            resampled = stretched[i0] * (1 - frac) + stretched[np.minimum(i0 + 1, len(stretched) - 1)] * frac
            pos0 += ratio * count
        else:
            resampled = np.zeros((0, x.shape[1]))
        drop = int(np.floor(pos0))
        state["stretched"] = stretched[drop:]
        state["rs_pos"] = pos0 - drop
        out = np.concatenate([state["out"], resampled])
        n = len(x)
        if len(out) < n:  # only after a large live change of ``semitones``
            out = np.concatenate([np.zeros((n - len(out), x.shape[1])), out])
        state["out"] = out[n:]
        return out[:n]
