import numpy as np
import pytest

from remotemedia_nbrtc.runtime import AudioData, ControlData, VideoData


def test_audio_s16_round_trip_is_lossless():
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32767, size=(960, 2), dtype=np.int16)
    audio = AudioData(pcm.astype(np.float32) / 32768.0, 48000, timestamp_us=20_000)
    frame = audio.to_av_frame("s16")
    assert frame.format.name == "s16" and frame.samples == 960 and frame.sample_rate == 48000
    back = AudioData.from_av_frame(frame)
    assert np.array_equal(np.rint(back.samples * 32768).astype(np.int16), pcm)
    assert back.timestamp_us == 20_000 and back.channels == 2 and back.layout == "stereo"


def test_audio_float_round_trip_is_exact_and_planar_frames_convert():
    samples = np.linspace(-1, 1, 480, dtype=np.float32).reshape(-1, 1)
    audio = AudioData(samples, 16000)
    assert np.array_equal(AudioData.from_av_frame(audio.to_av_frame()).samples, samples)
    import av

    planar = av.AudioFrame.from_ndarray(np.stack([samples[:, 0], -samples[:, 0]]), format="fltp", layout="stereo")
    planar.sample_rate = 16000
    converted = AudioData.from_av_frame(planar)
    assert converted.samples.shape == (480, 2)
    assert np.array_equal(converted.samples[:, 1], -samples[:, 0])


@pytest.mark.parametrize("fmt,shape", [("rgb24", (48, 64, 3)), ("yuv420p", (72, 64)), ("gray", (48, 64))])
def test_video_round_trip_is_lossless(fmt, shape):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 255, size=shape, dtype=np.uint8)
    video = VideoData(pixels, fmt, timestamp_us=1_000_000, frame_number=7)
    assert (video.width, video.height) == (64, 48)
    back = VideoData.from_av_frame(video.to_av_frame(), frame_number=7)
    assert back.pixel_format == fmt and np.array_equal(back.frame, pixels)
    assert back.timestamp_us == 1_000_000


def test_bad_values_are_rejected():
    with pytest.raises(ValueError):
        AudioData(np.zeros((2, 2, 2)), 48000)
    with pytest.raises(ValueError):
        AudioData(np.zeros(10), 0)
    with pytest.raises(ValueError):
        ControlData("pause")  # type: ignore[arg-type]
