"""Video nodes: scale, convert pixel format, grayscale, flip, per-frame statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime.data import JsonData, RuntimeData, VideoData
from ..runtime.node import Node


def _reformat(data: VideoData, *, width: int | None = None, height: int | None = None,
              pixel_format: str | None = None) -> VideoData:
    frame = data.to_av_frame().reformat(width=width, height=height, format=pixel_format or data.pixel_format)
    return data.replace(frame=frame.to_ndarray(), pixel_format=pixel_format or data.pixel_format,
                        metadata=dict(data.metadata))


class VideoScaler(Node):
    """Resizes frames to ``target_width`` x ``target_height`` (either may be omitted to keep the aspect ratio)."""

    node_type = "VideoScaler"
    threaded = True

    def __init__(self, *, target_width: int | None = None, target_height: int | None = None) -> None:
        if target_width is None and target_height is None:
            raise ValueError("give target_width and/or target_height")
        for name, value in (("target_width", target_width), ("target_height", target_height)):
            if value is not None and (value <= 0 or value % 2):
                raise ValueError(f"{name} must be a positive even number")
        self.target_width = target_width
        self.target_height = target_height

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, VideoData):
            return data
        width, height = self.target_width, self.target_height
        if width is None:
            width = int(round(data.width * height / data.height / 2)) * 2  # type: ignore[operator]
        if height is None:
            height = int(round(data.height * width / data.width / 2)) * 2
        return _reformat(data, width=width, height=height)


class VideoFormatConverter(Node):
    """Converts frames to ``target_format`` (an FFmpeg pixel format such as ``rgb24``, ``yuv420p``, ``gray``)."""

    node_type = "VideoFormatConverter"
    threaded = True

    def __init__(self, *, target_format: str = "rgb24") -> None:
        import av

        try:
            av.VideoFormat(target_format)
        except Exception as exc:
            raise ValueError(f"unknown pixel format {target_format!r}") from exc
        self.target_format = target_format

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, VideoData) or data.pixel_format == self.target_format:
            return data
        return _reformat(data, pixel_format=self.target_format)


class VideoGrayscale(Node):
    """Converts frames to 8-bit grayscale (``gray``), or keeps the input format with equal channels."""

    node_type = "VideoGrayscale"

    def __init__(self, *, keep_format: bool = True) -> None:
        self.keep_format = keep_format

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, VideoData):
            return data
        if data.pixel_format in ("yuv420p", "yuvj420p") and self.keep_format:
            frame = data.frame.copy()
            frame[data.height:] = 128  # neutral chroma
            return data.replace(frame=frame, metadata=dict(data.metadata))
        gray = _reformat(data, pixel_format="gray")
        if not self.keep_format or data.pixel_format == "gray":
            return gray
        return _reformat(gray, pixel_format=data.pixel_format)


class VideoFlip(Node):
    """Flips frames ``horizontal``, ``vertical`` (upstream default) or ``both``."""

    node_type = "VideoFlip"

    def __init__(self, *, direction: str = "vertical") -> None:
        if direction not in ("horizontal", "vertical", "both"):
            raise ValueError("direction must be horizontal, vertical or both")
        self.direction = direction

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, VideoData):
            return data
        rgb = data if data.pixel_format in ("rgb24", "bgr24", "rgba", "gray") else _reformat(data, pixel_format="rgb24")
        frame = rgb.frame
        if self.direction in ("horizontal", "both"):
            frame = frame[:, ::-1]
        if self.direction in ("vertical", "both"):
            frame = frame[::-1]
        out = rgb.replace(frame=np.ascontiguousarray(frame), metadata=dict(data.metadata))
        return out if out.pixel_format == data.pixel_format else _reformat(out, pixel_format=data.pixel_format)


class VideoStats(Node):
    """Emits per-frame statistics: size, mean luma, mean of each channel, frame number, timestamps."""

    node_type = "VideoStatsNode"

    def __init__(self, *, passthrough: bool = False) -> None:
        self.passthrough = passthrough

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, VideoData):
            return data
        if data.pixel_format in ("yuv420p", "yuvj420p", "nv12", "gray"):
            luma = data.frame[: data.height]
            means: list[float] = []
        else:
            rgb = data if data.pixel_format == "rgb24" else _reformat(data, pixel_format="rgb24")
            means = [round(float(v), 2) for v in rgb.frame.reshape(-1, 3).mean(axis=0)]
            luma = rgb.frame @ np.array([0.299, 0.587, 0.114])
        stats = JsonData(
            {"kind": "video_stats", "frame_number": data.frame_number, "width": data.width, "height": data.height,
             "mean_luma": round(float(np.mean(luma)), 2), "channel_means": means, "timestamp_us": data.timestamp_us,
             "arrival_ts_us": data.arrival_ts_us},
            timestamp_us=data.timestamp_us, stream_id=data.stream_id,
        )
        return [stats, data] if self.passthrough else stats
