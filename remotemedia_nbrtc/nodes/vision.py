"""Video analysis with visual feedback: edges, motion heat map, foreground mask, drawn overlays.

Frames of any pixel format are converted to ``rgb24`` (PyAV) and the output frames are ``rgb24``.
The analysis is plain numpy; :class:`Overlay` draws with Pillow. Parameters are attributes that
can be changed while streaming.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from ..runtime.data import JsonData, RuntimeData, VideoData
from ..runtime.node import Node

__all__ = ["EdgeDetect", "ForegroundMask", "MotionHeatmap", "Overlay", "sobel_magnitude"]

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _rgb(data: VideoData) -> np.ndarray:
    if data.pixel_format == "rgb24":
        return data.frame
    if data.pixel_format == "gray":
        return np.repeat(data.frame[:, :, None], 3, axis=2)
    return data.to_av_frame().to_ndarray(format="rgb24")


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a 2-D image (edge-replicated borders), same shape, float32."""
    p = np.pad(gray.astype(np.float32), 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy)


def _heat_colors(heat: np.ndarray) -> np.ndarray:
    """Black-red-yellow-white ("hot") colours for values in [0, 1]; (h, w, 3) uint8."""
    h = np.clip(heat, 0.0, 1.0)[..., None]
    rgb = np.concatenate([np.clip(3 * h, 0, 1), np.clip(3 * h - 1, 0, 1), np.clip(3 * h - 2, 0, 1)], axis=2)
    return (rgb * 255).astype(np.uint8)


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _out(data: VideoData, frame: np.ndarray, **meta: Any) -> VideoData:
    return data.replace(frame=np.ascontiguousarray(frame, dtype=np.uint8), pixel_format="rgb24",
                        metadata={**data.metadata, **meta})


class EdgeDetect(Node):
    """Sobel edges: pixels whose gradient magnitude exceeds ``threshold`` (0-1020 scale).

    ``mode``: ``edges`` (white edges on black), ``magnitude`` (gradient as gray levels) or
    ``overlay`` (edges painted in ``color`` over the picture). ``threshold`` can change live.
    """

    node_type = "EdgeDetectNode"
    threaded = True

    def __init__(self, *, threshold: float = 100.0, mode: str = "edges", color: list[int] | None = None) -> None:
        if mode not in ("edges", "magnitude", "overlay"):
            raise ValueError("mode must be edges, magnitude or overlay")
        self.threshold = threshold
        self.mode = mode
        self.color = color or [0, 255, 0]

    def process(self, data: RuntimeData) -> RuntimeData:
        if not isinstance(data, VideoData):
            return data
        rgb = _rgb(data)
        magnitude = sobel_magnitude(_gray(rgb))
        edges = magnitude > self.threshold
        if self.mode == "magnitude":
            level = np.clip(magnitude / 4.0, 0, 255).astype(np.uint8)
            frame = np.repeat(level[:, :, None], 3, axis=2)
        elif self.mode == "overlay":
            frame = rgb.copy()
            frame[edges] = np.asarray(self.color, np.uint8)
        else:
            frame = np.where(edges[:, :, None], np.uint8(255), np.uint8(0)).repeat(3, axis=2)
        return _out(data, frame, edge_fraction=round(float(edges.mean()), 5))


class MotionHeatmap(Node):
    """Frame differencing with a decaying heat map.

    A pixel moves when its luma changes by more than ``diff_threshold``; the heat map keeps
    ``decay`` of its value per frame and is drawn over the picture with ``opacity``. Emits
    ``{"kind": "motion", "score", "bbox", "frame_number", "timestamp_us"}`` (``score``: the fraction
    of pixels that moved; ``bbox``: ``[x, y, w, h]`` of them) and then the heat-map frame.
    """

    node_type = "MotionHeatmapNode"
    threaded = True

    def __init__(self, *, diff_threshold: float = 25.0, decay: float = 0.85, opacity: float = 0.6,
                 emit_frame: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError("decay must be in [0, 1)")
        self.diff_threshold = diff_threshold
        self.decay = decay
        self.opacity = opacity
        self.emit_frame = emit_frame
        self._prev: np.ndarray | None = None
        self._heat: np.ndarray | None = None

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, VideoData):
            return data
        rgb = _rgb(data)
        gray = _gray(rgb)
        if self._prev is None or self._prev.shape != gray.shape:
            self._prev, self._heat = gray, np.zeros_like(gray)
        moved = np.abs(gray - self._prev) > self.diff_threshold
        self._prev = gray
        assert self._heat is not None
        self._heat = np.maximum(self._heat * self.decay, moved.astype(np.float32))
        event = JsonData(
            {"kind": "motion", "score": round(float(moved.mean()), 5), "bbox": _bbox(moved),
             "frame_number": data.frame_number, "timestamp_us": data.timestamp_us},
            timestamp_us=data.timestamp_us, stream_id=data.stream_id,
        )
        if not self.emit_frame:
            return event
        alpha = (np.clip(self.opacity, 0, 1) * self._heat)[:, :, None]
        frame = rgb * (1 - alpha) + _heat_colors(self._heat) * alpha
        return [event, _out(data, frame, motion_score=event.value["score"])]

    def flush(self) -> None:
        self._prev = self._heat = None


class ForegroundMask(Node):
    """Running-average background model; pixels farther than ``threshold`` from it are foreground.

    The background learns at ``learning_rate`` per frame (only where the pixel is background,
    after the first ``warmup_frames``). ``output``: ``mask`` (white foreground), ``cutout``
    (picture where foreground, black elsewhere) or ``overlay`` (foreground tinted). Emits
    ``{"kind": "foreground", "ratio", "bbox", ...}`` and then the frame.
    """

    node_type = "ForegroundMaskNode"
    threaded = True

    def __init__(self, *, threshold: float = 30.0, learning_rate: float = 0.05, warmup_frames: int = 5,
                 output: str = "mask") -> None:
        if output not in ("mask", "cutout", "overlay"):
            raise ValueError("output must be mask, cutout or overlay")
        if not 0.0 < learning_rate <= 1.0:
            raise ValueError("learning_rate must be in (0, 1]")
        self.threshold = threshold
        self.learning_rate = learning_rate
        self.warmup_frames = warmup_frames
        self.output = output
        self._background: np.ndarray | None = None
        self._frames = 0

    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, VideoData):
            return data
        rgb = _rgb(data)
        pixels = rgb.astype(np.float32)
        if self._background is None or self._background.shape != pixels.shape:
            self._background, self._frames = pixels.copy(), 0
        distance = np.abs(pixels - self._background).max(axis=2)
        mask = distance > self.threshold
        rate = self.learning_rate
        if self._frames < self.warmup_frames:
            self._background += rate * (pixels - self._background)
        else:
            learn = ~mask[:, :, None]
            self._background += np.where(learn, rate * (pixels - self._background), 0.0)
        self._frames += 1
        event = JsonData(
            {"kind": "foreground", "ratio": round(float(mask.mean()), 5), "bbox": _bbox(mask),
             "frame_number": data.frame_number, "timestamp_us": data.timestamp_us},
            timestamp_us=data.timestamp_us, stream_id=data.stream_id,
        )
        if self.output == "mask":
            frame = np.where(mask[:, :, None], np.uint8(255), np.uint8(0)).repeat(3, axis=2)
        elif self.output == "cutout":
            frame = np.where(mask[:, :, None], rgb, np.uint8(0))
        else:
            frame = np.where(mask[:, :, None], (rgb * 0.5 + np.array([0, 127, 255]) * 0.5), rgb)
        return [event, _out(data, frame, foreground_ratio=event.value["ratio"])]

    def flush(self) -> None:
        self._background = None


class _Fields(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Overlay(Node):
    """Draws text and boxes into frames (Pillow).

    ``text`` may use ``{frame_number}``, ``{timestamp_ms}``, ``{width}``, ``{height}``, ``{label}``.
    ``boxes`` is a list of ``{"x", "y", "w", "h", "label"?, "color"?}``. JSON inputs update what
    is drawn: ``{"kind": "overlay", "text"?, "boxes"?}`` replaces them, and any event with a
    ``bbox`` (motion, foreground) is drawn as a box labelled with its ``kind`` until the next one.
    ``text``, ``boxes``, ``color`` and ``font_size`` can be changed while streaming.
    """

    node_type = "OverlayNode"
    threaded = True

    def __init__(self, *, text: str = "", boxes: list[dict[str, Any]] | None = None, color: list[int] | None = None,
                 font_size: int = 16, position: list[int] | None = None, line_width: int = 2) -> None:
        self.text = text
        self.boxes = list(boxes or [])
        self.color = color or [255, 255, 0]
        self.font_size = font_size
        self.position = position or [8, 8]
        self.line_width = line_width
        self.label = ""
        self._event_boxes: dict[str, dict[str, Any]] = {}
        self._font: Any = None
        self._font_size = -1

    async def start(self) -> None:
        # Pillow's drawing modules and the scalable default font load in tens to hundreds of ms on a cold disk
        await asyncio.to_thread(self._get_font)

    def _get_font(self) -> Any:
        from PIL import ImageDraw, ImageFont  # noqa: F401 - ImageDraw: loaded before the first frame too

        if self._font is None or self._font_size != self.font_size:
            try:
                self._font = ImageFont.load_default(size=self.font_size)
            except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
                self._font = ImageFont.load_default()
            self._font_size = self.font_size
        return self._font

    def _update(self, value: dict[str, Any]) -> None:
        if value.get("kind") == "overlay":
            if "text" in value:
                self.text = str(value["text"])
            if "boxes" in value:
                self.boxes = list(value["boxes"] or [])
            if "label" in value:
                self.label = str(value["label"])
        elif "bbox" in value:
            kind = str(value.get("kind", "event"))
            box = value["bbox"]
            if box:
                self._event_boxes[kind] = {"x": box[0], "y": box[1], "w": box[2], "h": box[3], "label": kind}
            else:
                self._event_boxes.pop(kind, None)

    def process(self, data: RuntimeData) -> RuntimeData | None:
        if isinstance(data, JsonData) and isinstance(data.value, dict):
            self._update(data.value)
            return None
        if not isinstance(data, VideoData):
            return data
        from PIL import Image, ImageDraw

        image = Image.fromarray(np.ascontiguousarray(_rgb(data)))
        draw = ImageDraw.Draw(image)
        font = self._get_font()
        for box in [*self.boxes, *self._event_boxes.values()]:
            x, y, w, h = (int(box[k]) for k in ("x", "y", "w", "h"))
            color = tuple(box.get("color") or self.color)
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=color, width=self.line_width)
            if box.get("label"):
                draw.text((x + 2, max(0, y - self.font_size - 2)), str(box["label"]), fill=color, font=font)
        if self.text:
            fields = _Fields(frame_number=data.frame_number, width=data.width, height=data.height, label=self.label,
                             timestamp_ms=None if data.timestamp_us is None else data.timestamp_us // 1000)
            try:
                text = self.text.format_map(fields)
            except (ValueError, IndexError, AttributeError):
                text = self.text  # not a template: draw it as it is
            draw.text((self.position[0], self.position[1]), text, fill=tuple(self.color), font=font)
        return _out(data, np.asarray(image))
