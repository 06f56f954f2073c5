"""Audio effects measured on real signals, streamed in 20 ms frames (state must carry across frames)."""

import numpy as np
import pytest

from remotemedia_nbrtc import AudioData, Pipeline, PipelineRunner
from remotemedia_nbrtc.nodes.effects import BiquadFilter, Compressor, Delay, NoiseGate, PitchShift

pytestmark = pytest.mark.timeout(60)

RATE = 48000


def sine(freq, seconds, amp=0.5, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stream(node, x, size=960, rate=RATE):
    outs = [node.process(AudioData(x[i:i + size], rate)) for i in range(0, len(x), size)]
    assert all(o.num_samples == min(size, len(x) - i) for o, i in zip(outs, range(0, len(x), size)))
    return np.concatenate([o.samples for o in outs])[:, 0]


def rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def gain_db(node_factory, freq):
    x = sine(freq, 0.3)
    y = stream(node_factory(), x)
    return rms_db(y[RATE // 10:]) - rms_db(x[RATE // 10:])


def peak_hz(x, rate=RATE):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=4 * len(x)))
    return np.fft.rfftfreq(4 * len(x), 1 / rate)[np.argmax(spectrum)]


def test_lowpass_response_minus_3db_at_cutoff():
    lp = lambda: BiquadFilter(filter_type="lowpass", freq=1000, q=0.7071)
    assert abs(gain_db(lp, 1000) - (-3.01)) < 0.1
    assert gain_db(lp, 8000) < -20
    assert abs(gain_db(lp, 100)) < 0.1


def test_highpass_bandpass_and_peaking_responses():
    hp = lambda: BiquadFilter(filter_type="highpass", freq=1000)
    assert gain_db(hp, 100) < -35 and abs(gain_db(hp, 1000) + 3.01) < 0.1 and abs(gain_db(hp, 10000)) < 0.2
    bp = lambda: BiquadFilter(filter_type="bandpass", freq=2000, q=4)
    assert abs(gain_db(bp, 2000)) < 0.2 and gain_db(bp, 500) < -20
    peak = lambda: BiquadFilter(filter_type="peaking", freq=3000, q=1, gain_db=6)
    assert abs(gain_db(peak, 3000) - 6) < 0.1 and abs(gain_db(peak, 100)) < 0.3
    shelf = lambda: BiquadFilter(filter_type="lowshelf", freq=300, gain_db=-12)
    assert abs(gain_db(shelf, 50) + 12) < 0.5 and abs(gain_db(shelf, 8000)) < 0.3


def test_filter_state_carries_across_frames_and_params_change_live():
    x = sine(440, 0.5)
    node = BiquadFilter(filter_type="lowpass", freq=2000)
    framed = stream(node, x, size=160)
    from scipy.signal import lfilter

    from remotemedia_nbrtc.nodes.effects import biquad_coefficients

    whole = lfilter(*biquad_coefficients("lowpass", 2000, 0.7071, 0, RATE), x)
    assert np.max(np.abs(framed - whole)) < 1e-5  # identical to filtering in one go
    node.freq = 200  # live: 440 Hz is now above the cutoff
    later = stream(node, sine(440, 0.3))
    assert rms_db(later[RATE // 10:]) - rms_db(x) < -6


def test_delay_offset_by_cross_correlation():
    noise = (np.random.default_rng(1).standard_normal(RATE) * 0.2).astype(np.float32)
    y = stream(Delay(delay_ms=123, feedback=0.0, mix=1.0), noise)
    corr = np.correlate(y, noise[: RATE // 2], mode="valid")
    assert int(np.argmax(corr)) == round(0.123 * RATE)
    # with feedback: echoes at 1x and 2x the delay, the second `feedback` times the first
    impulse = np.zeros(RATE // 2, np.float32)
    impulse[0] = 1.0
    y = stream(Delay(delay_ms=50, feedback=0.5, mix=1.0), impulse)
    assert y[2400] == pytest.approx(1.0) and y[4800] == pytest.approx(0.5) and y[7200] == pytest.approx(0.25)
    assert np.count_nonzero(np.abs(y) > 1e-9) == 9  # 50 ms .. 450 ms


def test_delay_mix_and_live_delay_change():
    node = Delay(delay_ms=10, feedback=0.0, mix=0.0)
    x = sine(300, 0.1)
    assert np.allclose(stream(node, x), x, atol=1e-6)  # dry only
    node.mix, node.delay_ms = 1.0, 20
    impulse = np.zeros(4800, np.float32)
    impulse[0] = 1
    y = stream(node, impulse)
    assert int(np.argmax(y)) == 960


def test_noise_gate_attenuates_below_threshold_and_passes_above():
    quiet = sine(1000, 0.5, amp=0.003)  # about -53 dBFS RMS
    loud = sine(1000, 0.5, amp=0.3)
    gate = NoiseGate(threshold_db=-40, release_ms=20)
    y = stream(gate, np.concatenate([loud, quiet, loud]))
    half = RATE // 2
    assert abs(rms_db(y[RATE // 10:half]) - rms_db(loud)) < 0.1
    assert rms_db(y[half + RATE // 5:2 * half]) - rms_db(quiet) < -60
    assert abs(rms_db(y[2 * half + RATE // 10:]) - rms_db(loud)) < 0.1
    gate.threshold_db = -70  # live: the quiet tone now opens the gate
    y2 = stream(gate, quiet)
    assert abs(rms_db(y2[RATE // 5:]) - rms_db(quiet)) < 0.5


def test_compressor_gain_reduction_at_minus_10_dbfs():
    x = sine(1000, 1.0, amp=np.sqrt(2) * 10 ** (-10 / 20))  # -10 dBFS RMS
    comp = Compressor(threshold_db=-20, ratio=4, attack_ms=5, release_ms=50)
    y = stream(comp, x)
    assert abs(rms_db(y[RATE // 2:]) - (-17.5)) < 0.3  # -20 + 10 / 4
    assert comp.static_gain_db(-10) == pytest.approx(-7.5)
    comp.makeup_db = 7.5  # live
    y = stream(comp, x)
    assert abs(rms_db(y[RATE // 2:]) - (-10.0)) < 0.3
    below = stream(Compressor(threshold_db=-20, ratio=4), sine(1000, 0.5, amp=0.05))
    assert abs(rms_db(below[RATE // 10:]) - rms_db(sine(1000, 0.5, amp=0.05))) < 0.05


def test_pitch_shift_moves_440_to_554_and_keeps_length():
    for semitones, expected in ((4, 554.37), (-5, 329.63), (12, 880.0)):
        y = stream(PitchShift(semitones=semitones), sine(440, 1.5))
        assert len(y) == int(1.5 * RATE)
        assert abs(peak_hz(y[RATE // 2:]) - expected) < 3, semitones
        assert abs(rms_db(y[RATE // 2:]) - rms_db(sine(440, 1.0))) < 1.0


def test_pitch_shift_live_change_and_no_clicks():
    node = PitchShift(semitones=4)
    x = sine(440, 2.0)
    first = stream(node, x[:RATE])
    node.semitones = 7
    second = stream(node, x[RATE:])
    y = np.concatenate([first, second])
    assert abs(peak_hz(second[RATE // 4:]) - 440 * 2 ** (7 / 12)) < 3
    # a click would be a jump far above the steepest slope of the (shifted) sine
    steepest = 2 * np.pi * 659.3 / RATE * 0.5
    assert np.max(np.abs(np.diff(y[RATE // 10:]))) < 1.5 * steepest


def test_effects_stream_without_clicks_at_frame_boundaries():
    x = sine(220, 0.5, amp=0.4)
    steepest = 2 * np.pi * 220 / RATE * 0.4
    for node in (BiquadFilter(filter_type="peaking", freq=220, gain_db=3), Delay(delay_ms=7, mix=0.5, feedback=0.3),
                 NoiseGate(threshold_db=-60), Compressor(threshold_db=-30, ratio=3)):
        y = stream(node, x, size=333)
        assert np.max(np.abs(np.diff(y))) < 3 * steepest, type(node).__name__


async def test_effects_chain_in_a_session_from_a_manifest():
    manifest = {
        "version": "v1", "metadata": {"name": "fx"},
        "nodes": [
            {"id": "eq", "node_type": "BiquadFilterNode", "params": {"filterType": "highpass", "freq": 100}},
            {"id": "comp", "node_type": "CompressorNode", "params": {"thresholdDb": -20, "ratio": 4}},
            {"id": "pitch", "node_type": "PitchShiftNode", "params": {"semitones": 4}},
        ],
        "connections": [{"from": "eq", "to": "comp"}, {"from": "comp", "to": "pitch"}],
    }
    session = await PipelineRunner().create_stream_session(manifest)
    x = sine(440, 1.0, amp=0.1)
    for i in range(0, len(x), 960):
        await session.send_input(AudioData(x[i:i + 960], RATE))
    await session.end_input()
    y = np.concatenate([o.samples[:, 0] async for o in session])
    await session.close()
    assert len(y) == len(x)
    assert abs(peak_hz(y[RATE // 2:]) - 554.37) < 3
    assert isinstance(Pipeline.from_manifest(manifest).node("pitch"), PitchShift)


def test_bad_params_are_rejected():
    with pytest.raises(ValueError):
        BiquadFilter(filter_type="allpass-ish")
    with pytest.raises(ValueError):
        Delay(delay_ms=5000)
    with pytest.raises(ValueError):
        Compressor(ratio=0.5)
    with pytest.raises(ValueError):
        PitchShift(semitones=30)


def test_effects_import_scipy_and_warm_up_in_start_not_in_the_first_frame():
    """PitchShift used to import scipy.signal in its first process call: 2 s on a cold machine, which became a
    2 s standing backlog of returned audio. In a fresh interpreter, start() must import it and the first frame
    must import nothing."""
    import subprocess
    import sys

    code = """
import asyncio, sys
import numpy as np
from remotemedia_nbrtc import AudioData
from remotemedia_nbrtc.nodes.effects import BiquadFilter, PitchShift
assert "scipy.signal" not in sys.modules
for node in (PitchShift(semitones=4), BiquadFilter()):
    asyncio.run(node.start())
    assert "scipy.signal" in sys.modules
    before = set(sys.modules)
    node.process(AudioData(np.zeros((960, 1), np.float32), 48000))
    assert set(sys.modules) == before, sorted(set(sys.modules) - before)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
