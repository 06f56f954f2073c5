"""Each video transform on real frames through the transport: a moving bright square, sent by ClientPeer as
VP8 to a standalone WebRTCServer (loopback ICE), processed, and returned as VP8 video (plus JSON events on the
data channel). Assertions are on properties that survive two lossy VP8 legs: where bright pixels are, channel
balance, frame size, mirrored positions, event scores and boxes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.nodes import VideoFlip, VideoGrayscale, VideoScaler
from remotemedia_nbrtc.nodes.vision import EdgeDetect, ForegroundMask, MotionHeatmap, Overlay
from remotemedia_nbrtc.runtime import Node, Pipeline, VideoData
from remotemedia_nbrtc.standalone.server import ServerConfig, WebRTCServer
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
from remotemedia_nbrtc.transport.sources import SyntheticVideoSource

pytestmark = pytest.mark.timeout(30)

ICE = IceConfig(loopback_only=True)
W, H, FPS = 320, 240, 15
SIDE, TOP, MARGIN = 48, 96, 16  # the square: side, top row, distance kept from the left/right borders
BG_YUV, SQUARE_Y, MARKER_Y = (60, 90, 170), 220, 250  # a reddish background (unequal RGB), a white square


class MovingSquare(SyntheticVideoSource):
    """A white square moving left and right (ping-pong, ``speed`` px per frame) on a flat reddish background.

    ``appear_at``: frames before it show the background only. ``still``: frames (from ``appear_at``) in which
    the square stands at its first position. ``marker``: a bright block in the top-left corner (asymmetric,
    for flips).
    """

    def __init__(self, *, speed: int = 6, appear_at: int = 0, still: int = 0, marker: bool = False) -> None:
        super().__init__(W, H, FPS)
        self.speed, self.appear_at, self.still, self.marker = speed, appear_at, still, marker

    def square_x(self, number: int) -> int | None:
        if number < self.appear_at:
            return None
        span = W - SIDE - 2 * MARGIN
        p = max(0, number - self.appear_at - self.still) * self.speed % (2 * span)
        return MARGIN + (p if p < span else 2 * span - p)

    def make_frame(self, number: int) -> np.ndarray:
        yuv = np.empty((H * 3 // 2, W), np.uint8)
        y = yuv[:H]
        u = yuv[H : H + H // 4].reshape(H // 2, W // 2)
        v = yuv[H + H // 4 :].reshape(H // 2, W // 2)
        y[:], u[:], v[:] = BG_YUV
        x = self.square_x(number)
        if x is not None:
            y[TOP : TOP + SIDE, x : x + SIDE] = SQUARE_Y
            u[TOP // 2 : (TOP + SIDE) // 2, x // 2 : (x + SIDE) // 2] = 128
            v[TOP // 2 : (TOP + SIDE) // 2, x // 2 : (x + SIDE) // 2] = 128
        if self.marker:
            y[8:40, 8:56] = MARKER_Y
        return yuv


def rgb(frame: VideoData) -> np.ndarray:
    return frame.frame if frame.pixel_format == "rgb24" else frame.to_av_frame().to_ndarray(format="rgb24")


def luma(frame: VideoData) -> np.ndarray:
    return rgb(frame).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def near(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


async def run_transform(
    *nodes: Node, source: MovingSquare, frames: int = 25, skip: int = 5
) -> tuple[list[VideoData], list[dict[str, Any]]]:
    """Stream ``source`` through a server running ``nodes`` in a chain; returns the processed frames that
    came back (after the first ``skip``, while VP8 ramps up) and the JSON values from the data channel."""
    pipeline = Pipeline("video-transform")
    for i, node in enumerate(nodes):
        pipeline.add(f"n{i}", node)
    if len(nodes) > 1:
        pipeline.chain(*(f"n{i}" for i in range(len(nodes))))
    peer = PeerConfig(ice=ICE, send_audio=False, send_video=True)
    server = WebRTCServer(ServerConfig(port=0, peer=peer), pipeline)
    await server.start()
    try:
        client = await ClientPeer.connect(server.url, video=source, ice=ICE)
        try:
            deadline = time.monotonic() + 15
            while client.video_frames_received < frames + skip:
                assert time.monotonic() < deadline, f"only {client.video_frames_received} frames came back"
                await asyncio.sleep(0.05)
            received = list(client.received_video)[skip:]
            values = []
            while True:
                try:
                    msg = await client.next_output(timeout=0.01)
                except TimeoutError:
                    break
                if msg is None:
                    break
                assert msg["type"] == "json", msg  # an "error" message would mean a node failed
                values.append(msg["value"])
        finally:
            await client.close()
    finally:
        await server.stop()
    assert all(f.width == received[0].width and f.height == received[0].height for f in received)
    return received, values


def square_positions(source: MovingSquare) -> set[int]:
    return {x for n in range(source.frames_sent) if (x := source.square_x(n)) is not None}


def mostly(flags: list[bool], share: float = 0.8) -> bool:
    return bool(flags) and sum(flags) >= share * len(flags)


# -- basic transforms ----------------------------------------------------------------------------------


async def test_grayscale_returns_equal_channels_and_keeps_the_square() -> None:
    source = MovingSquare()
    sent = VideoData(source.make_frame(0), "yuv420p")
    sent_rgb = rgb(sent).astype(int)
    assert np.abs(sent_rgb[..., 0] - sent_rgb[..., 2]).mean() > 60  # the input is clearly coloured
    frames, _ = await run_transform(VideoGrayscale(), source=source)
    checks = []
    for f in frames:
        px = rgb(f).astype(int)
        spread = (px.max(axis=2) - px.min(axis=2)).mean()
        box = bbox(luma(f) > 150)
        checks.append(spread < 6 and box is not None and near(box[2], SIDE, 6) and near(box[1], TOP, 4))
    assert mostly(checks), [
        ((rgb(f).astype(int).max(axis=2) - rgb(f).astype(int).min(axis=2)).mean(), bbox(luma(f) > 150)) for f in frames
    ]


@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
async def test_flip_mirrors_the_corner_marker_and_the_square(direction: str) -> None:
    source = MovingSquare(marker=True)
    frames, _ = await run_transform(VideoFlip(direction=direction), source=source)
    mirrored_x = {W - SIDE - x for x in square_positions(source)}
    checks = []
    for f in frames:
        y = luma(f)
        if direction == "horizontal":
            marker, old = y[10:38, W - 54 : W - 10], y[10:38, 10:54]
            band = y[TOP + 6 : TOP + SIDE - 6]
        else:
            marker, old = y[H - 38 : H - 10, 10:54], y[10:38, 10:54]
            band = y[H - TOP - SIDE + 6 : H - TOP - 6]
        columns = np.nonzero(band.mean(axis=0) > 150)[0]
        square_ok = len(columns) > 0 and near(len(columns), SIDE, 6)
        if square_ok and direction == "horizontal":
            square_ok = min(abs(int(columns[0]) - x) for x in mirrored_x) <= 4
        checks.append(marker.mean() > 200 and old.mean() < 100 and square_ok)
    assert mostly(checks), direction


async def test_scaler_halves_the_frame_and_the_square() -> None:
    frames, _ = await run_transform(VideoScaler(target_width=160, target_height=120), source=MovingSquare())
    assert (frames[0].width, frames[0].height) == (160, 120)
    boxes = [bbox(luma(f) > 150) for f in frames]
    assert mostly(
        [
            b is not None and near(b[2], SIDE / 2, 4) and near(b[3], SIDE / 2, 4) and near(b[1], TOP / 2, 3)
            for b in boxes
        ]
    ), boxes


# -- analysis nodes ---------------------------------------------------------------------------------------


async def test_edges_are_bright_on_the_square_border_and_dark_elsewhere() -> None:
    frames, _ = await run_transform(EdgeDetect(threshold=150), source=MovingSquare())
    checks = []
    for f in frames:
        y = luma(f)
        edges = y > 128
        box = bbox(edges)
        if box is None:
            checks.append(False)
            continue
        x0, y0, w, h = box
        inside = y[y0 + 10 : y0 + h - 10, x0 + 10 : x0 + w - 10]
        checks.append(
            near(w, SIDE, 8)
            and near(h, SIDE, 8)
            and near(y0, TOP, 5)
            and 0.003 < edges.mean() < 0.05  # a thin outline, not a filled square (2304 px = 3 %)
            and inside.mean() < 40
            and y[: TOP - 10].max() < 100  # flat inside and background: no edges
            and edges[y0 + 2 : y0 + h - 2, x0 : x0 + 4].any(axis=1).mean() > 0.9  # left side lit all along
            and edges[y0 + 2 : y0 + h - 2, x0 + w - 4 : x0 + w].any(axis=1).mean() > 0.9  # and the right
        )
    assert mostly(checks), [bbox(luma(f) > 128) for f in frames]


async def test_motion_score_rises_when_the_square_moves_and_its_box_follows_it() -> None:
    source = MovingSquare(still=40, speed=6)  # about 2.7 s standing, then moving
    frames, events = await run_transform(MotionHeatmap(diff_threshold=25, decay=0.8), source=source, frames=55)
    motion = [e for e in events if e.get("kind") == "motion"]
    assert len(motion) >= 50
    scores = [e["score"] for e in motion]
    still, moving = scores[5:25], scores[-15:]
    assert max(still) < 0.002, still  # VP8 noise on the standing square stays under the threshold
    assert min(moving) > 0.004, moving  # 2 x 6 x 48 px changed per frame: 0.75 % of the picture
    for e in motion[-15:]:
        _, y, w, h = e["bbox"]
        assert near(y, TOP, 6) and near(h, SIDE, 10) and w <= 4 * SIDE, e
    # the returned heat map is coloured where the square moved and nowhere else
    last = rgb(frames[-1]).astype(int)
    plain = rgb(VideoData(source.make_frame(0), "yuv420p")).astype(int)
    changed = np.abs(last - plain).max(axis=2) > 60
    assert changed[TOP - 4 : TOP + SIDE + 4].mean() > 0.1
    assert changed[: TOP - 12].mean() < 0.005 and changed[TOP + SIDE + 12 :].mean() < 0.005


async def test_foreground_mask_covers_the_square_once_the_background_is_learnt() -> None:
    source = MovingSquare(appear_at=15, speed=4)  # 1 s of empty background first
    frames, events = await run_transform(
        ForegroundMask(threshold=40, learning_rate=0.2, warmup_frames=5), source=source, frames=35
    )
    fg = [e for e in events if e.get("kind") == "foreground"]
    assert fg and all(e["ratio"] < 0.002 for e in fg[2:10]), [e["ratio"] for e in fg[:12]]  # nothing yet
    late = fg[-10:]
    assert all(
        e["bbox"] and near(e["bbox"][2], SIDE, 8) and near(e["bbox"][3], SIDE, 8) and near(e["bbox"][1], TOP, 5)
        for e in late
    ), late
    assert all(near(e["ratio"], SIDE * SIDE / (W * H), 0.01) for e in late), late
    checks = []
    for f in frames[-10:]:
        mask = luma(f) > 128
        box = bbox(mask)
        checks.append(
            box is not None
            and near(box[2], SIDE, 8)
            and near(box[3], SIDE, 8)
            and near(mask.sum(), SIDE * SIDE, 0.3 * SIDE * SIDE)
        )
    assert mostly(checks), [bbox(luma(f) > 128) for f in frames[-10:]]


async def test_overlay_draws_text_and_box_into_returned_frames() -> None:
    box = {"x": 200, "y": 20, "w": 100, "h": 56, "color": [0, 255, 0]}
    overlay = Overlay(text="FRAME {frame_number}", boxes=[box], font_size=22, line_width=4)
    source = MovingSquare()
    frames, _ = await run_transform(overlay, source=source)
    plain = luma(VideoData(source.make_frame(0), "yuv420p"))
    checks = []
    for f in frames:
        y = luma(f)
        diff = np.abs(y - plain)
        outline = np.concatenate([y[21, 204:296], y[73, 204:296], y[24:72, 201], y[24:72, 298]])
        checks.append(
            outline.mean() > 110  # green (luma ~150) over the background (luma ~50)
            and diff[30:66, 210:290].mean() < 8  # the box's inside is untouched
            and (diff[6:36, 6:160] > 60).mean() > 0.05  # text pixels in the text area
            and diff[TOP + SIDE + 10 :].mean() < 8  # the rest of the picture is unchanged
        )
    assert mostly(checks)
