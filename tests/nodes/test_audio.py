import numpy as np
import pytest

from remotemedia_nbrtc import AudioData, JsonData, PipelineRunner
from remotemedia_nbrtc.nodes import AudioChunker, AudioLevel, EnergyVAD, FastResample, Gain, Spectrum


def sine(freq, seconds, rate, amp=0.5, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1)


def frames(samples, rate, size):
    return [AudioData(samples[i:i + size], rate, timestamp_us=i * 1_000_000 // rate)
            for i in range(0, len(samples), size)]


async def run(node, inputs):
    from remotemedia_nbrtc import Pipeline

    p = Pipeline("t")
    p.add("n", node)
    session = await PipelineRunner().create_stream_session(p)
    for item in inputs:
        await session.send_input(item)
    await session.end_input()
    outs = [o async for o in session]
    await session.close()
    return outs


def dominant_hz(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples[:, 0]))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


async def test_resample_48k_stereo_to_16k_mono_keeps_pitch_length_and_level():
    src = sine(440, 1.0, 48000, channels=2)
    outs = await run(FastResample(target_rate=16000, channels=1), frames(src, 48000, 960))
    out = np.concatenate([o.samples for o in outs])
    assert all(o.sample_rate == 16000 and o.channels == 1 for o in outs)
    assert abs(len(out) - 16000) <= 32
    assert abs(dominant_hz(out, 16000) - 440) < 2
    rms = np.sqrt(np.mean(out[1000:-1000] ** 2))
    assert abs(20 * np.log10(rms) - 20 * np.log10(0.5 / np.sqrt(2))) < 0.2


async def test_resample_is_a_pass_through_when_formats_match():
    item = AudioData(sine(100, 0.02, 16000), 16000)
    outs = await run(FastResample(target_rate=16000, channels=1), [item])
    assert outs == [item]


async def test_chunker_emits_exact_chunks_and_the_rest_at_flush():
    src = sine(300, 0.1, 16000)  # 1600 samples in 7 uneven pieces
    pieces = [AudioData(p, 16000) for p in np.array_split(src, 7)]
    outs = await run(AudioChunker(chunk_size=512), pieces)
    assert [o.num_samples for o in outs] == [512, 512, 512, 64]
    assert np.array_equal(np.concatenate([o.samples for o in outs]), src)


async def test_gain_scales_by_decibels_and_can_change_live():
    node = Gain(gain_db=-6.0)
    out = node.process(AudioData(np.full(10, 0.5, np.float32), 8000))
    assert np.allclose(out.samples, 0.5 * 10 ** (-6 / 20))
    node.gain_db = 20.0
    assert np.allclose(node.process(AudioData(np.full(10, 0.5, np.float32), 8000)).samples, 1.0)  # clipped


async def test_level_meter_reports_rms_and_peak_dbfs():
    outs = await run(AudioLevel(), [AudioData(sine(1000, 0.02, 48000, amp=0.25), 48000)])
    value = outs[0].value
    assert abs(value["peak_dbfs"] - (-12.04)) < 0.1
    assert abs(value["rms_dbfs"] - (-15.05)) < 0.1
    silent = AudioLevel().process(AudioData(np.zeros(100, np.float32), 48000))
    assert silent.value["rms_dbfs"] <= -190


async def test_spectrum_peaks_in_the_band_of_the_tone():
    out = Spectrum(bands=12, min_hz=100, max_hz=8000).process(AudioData(sine(2000, 0.064, 16000), 16000))
    assert isinstance(out, JsonData)
    bands, db = out.value["bands_hz"], out.value["db"]
    peak = bands[int(np.argmax(db))]
    assert 1400 < peak < 2900
    assert max(db) - np.median(db) > 30


async def test_energy_vad_finds_the_burst_and_passes_audio_through():
    silence = np.zeros((4800, 1), np.float32)
    speechy = sine(300, 0.3, 16000, amp=0.3)
    src = np.concatenate([silence, speechy, silence, silence])
    outs = await run(EnergyVAD(threshold_db=-35, min_silence_ms=100), frames(src, 16000, 320))
    events = [o.value for o in outs if isinstance(o, JsonData)]
    audio = [o for o in outs if isinstance(o, AudioData)]
    assert len(audio) == len(events) == len(src) // 320
    starts = [i for i, e in enumerate(events) if e["is_speech_start"]]
    ends = [i for i, e in enumerate(events) if e["is_speech_end"]]
    assert starts == [15]  # 4800 / 320
    assert len(ends) == 1 and 29 <= ends[0] <= 31 + 5


def test_bad_params_are_rejected():
    with pytest.raises(ValueError):
        FastResample(channels=3)
    with pytest.raises(ValueError):
        Spectrum(min_hz=10, max_hz=5)
