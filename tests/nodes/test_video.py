import numpy as np
import pytest

from remotemedia_nbrtc import JsonData, VideoData
from remotemedia_nbrtc.nodes import VideoFlip, VideoFormatConverter, VideoGrayscale, VideoScaler, VideoStats


def gradient(width=64, height=48):
    x = np.linspace(0, 255, width, dtype=np.uint8)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = x
    frame[..., 1] = 200
    frame[..., 2] = 30
    return VideoData(frame, "rgb24", frame_number=3, timestamp_us=99)


def test_scaler_resizes_and_keeps_aspect():
    out = VideoScaler(target_width=32, target_height=24).process(gradient())
    assert (out.width, out.height, out.frame.shape) == (32, 24, (24, 32, 3))
    assert out.frame_number == 3 and out.timestamp_us == 99
    assert VideoScaler(target_width=32).process(gradient()).height == 24
    with pytest.raises(ValueError):
        VideoScaler(target_width=33)


def test_format_converter_to_yuv_and_back_stays_close():
    yuv = VideoFormatConverter(target_format="yuv420p").process(gradient())
    assert yuv.pixel_format == "yuv420p" and yuv.frame.shape == (72, 64)
    back = VideoFormatConverter(target_format="rgb24").process(yuv)
    assert np.abs(back.frame.astype(int) - gradient().frame.astype(int)).mean() < 6
    with pytest.raises(ValueError):
        VideoFormatConverter(target_format="nonsense")


def test_grayscale_makes_channels_equal():
    out = VideoGrayscale().process(gradient())
    assert out.pixel_format == "rgb24"
    assert np.abs(out.frame[..., 0].astype(int) - out.frame[..., 2]).max() <= 1
    gray = VideoGrayscale(keep_format=False).process(gradient())
    assert gray.pixel_format == "gray" and gray.frame.ndim == 2


def test_flip_horizontal_mirrors_columns():
    out = VideoFlip(direction="horizontal").process(gradient())
    assert np.array_equal(out.frame, gradient().frame[:, ::-1])


def test_stats_report_size_and_means():
    out = VideoStats().process(gradient())
    assert isinstance(out, JsonData)
    v = out.value
    assert (v["width"], v["height"], v["frame_number"]) == (64, 48, 3)
    assert abs(v["channel_means"][1] - 200) < 0.01 and abs(v["channel_means"][0] - 127.5) < 1
