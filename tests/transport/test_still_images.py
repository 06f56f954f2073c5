"""Still-image video coding (the WebSocket fallback's video): real FFmpeg codecs through PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest

from remotemedia_nbrtc.transport.still_images import StillImageDecoder, StillImageEncoder


def _frame(width: int, height: int) -> av.VideoFrame:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_an_image_round_trips_close_to_the_original(codec: str) -> None:
    original = _frame(64, 48)
    payload = StillImageEncoder(codec).encode(original)
    if codec == "jpeg":
        assert payload[:2] == b"\xff\xd8"  # start of image
    else:
        assert payload[:4] == b"RIFF" and payload[8:12] == b"WEBP"
    (decoded,) = StillImageDecoder(codec).decode(payload)
    assert (decoded.width, decoded.height) == (64, 48)
    error = np.abs(decoded.to_ndarray(format="rgb24").astype(int) - original.to_ndarray().astype(int)).mean()
    assert error < 12, error


def test_odd_sizes_become_even_and_a_new_size_gets_a_new_context() -> None:
    encoder, decoder = StillImageEncoder("jpeg"), StillImageDecoder("jpeg")
    sizes = []
    for width, height in [(63, 47), (64, 48), (32, 20)]:
        (decoded,) = decoder.decode(encoder.encode(_frame(width, height)))
        sizes.append((decoded.width, decoded.height))
    assert sizes == [(62, 46), (64, 48), (32, 20)]


def test_an_unknown_codec_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="h264"):
        StillImageEncoder("h264")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="h264"):
        StillImageDecoder("h264")  # type: ignore[arg-type]
