"""Video as one still image per frame (JPEG or WebP), as the WebSocket media fallback carries it.

Used by both ends: the kernel's :class:`~.wsmedia.WebSocketMediaPeer` (decodes the browser's images,
encodes returned video) and the standalone :class:`~remotemedia_nbrtc.standalone.WebSocketMediaClient`.
PyAV does the coding (FFmpeg's ``mjpeg`` and ``libwebp``/``webp``).
"""

from __future__ import annotations

import fractions
from typing import Literal

import av
from av.video.codeccontext import VideoCodecContext

__all__ = ["ImageCodec", "StillImageDecoder", "StillImageEncoder"]

ImageCodec = Literal["jpeg", "webp"]

#: FFmpeg encoder, pixel format and options per codec (JPEG's qscale 8: about 30 KB at 640x480)
_ENCODERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "jpeg": ("mjpeg", "yuvj420p", {"qscale": "8"}),
    "webp": ("libwebp", "yuv420p", {"quality": "60"}),
}
_DECODERS = {"jpeg": "mjpeg", "webp": "webp"}


class StillImageEncoder:
    """Frames to image files; the codec context is made again when the frame size changes.

    Odd sizes are scaled to the even size below (4:2:0 chroma needs even width and height).
    """

    def __init__(self, codec: ImageCodec = "jpeg") -> None:
        if codec not in _ENCODERS:
            raise ValueError(f"unknown image codec {codec!r} (known: {sorted(_ENCODERS)})")
        self.codec = codec
        self._ctx: VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None

    def encode(self, frame: av.VideoFrame) -> bytes:
        name, pix_fmt, options = _ENCODERS[self.codec]
        size = (frame.width - frame.width % 2, frame.height - frame.height % 2)
        if self._ctx is None or self._size != size:
            ctx = av.CodecContext.create(name, "w")
            assert isinstance(ctx, VideoCodecContext)
            ctx.width, ctx.height = size
            ctx.pix_fmt = pix_fmt
            ctx.time_base = fractions.Fraction(1, 90000)
            ctx.options = dict(options)
            self._ctx, self._size = ctx, size
        image = frame.reformat(width=size[0], height=size[1], format=pix_fmt)
        image.pts = None
        return b"".join(bytes(p) for p in self._ctx.encode(image))


class StillImageDecoder:
    """Image files to frames."""

    def __init__(self, codec: ImageCodec = "jpeg") -> None:
        if codec not in _DECODERS:
            raise ValueError(f"unknown image codec {codec!r} (known: {sorted(_DECODERS)})")
        ctx = av.CodecContext.create(_DECODERS[codec], "r")
        assert isinstance(ctx, VideoCodecContext)
        self._ctx = ctx

    def decode(self, payload: bytes) -> list[av.VideoFrame]:
        return list(self._ctx.decode(av.Packet(payload)))
