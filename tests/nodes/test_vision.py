"""Video analysis nodes on synthetic frames: a bright square moving over a textured background."""

import numpy as np
import pytest

from remotemedia_nbrtc import JsonData, PipelineRunner, VideoData
from remotemedia_nbrtc.nodes.vision import EdgeDetect, ForegroundMask, MotionHeatmap, Overlay, sobel_magnitude

pytestmark = pytest.mark.timeout(60)

W, H, SIDE = 160, 120, 20


def background(seed=0):
    rng = np.random.default_rng(seed)
    base = np.full((H, W, 3), (40, 90, 60), np.uint8)
    return np.clip(base + rng.integers(-4, 5, (H, W, 3)), 0, 255).astype(np.uint8)  # sensor-like noise


def square_frame(x, y, n=0, seed=None):
    frame = background(n if seed is None else seed)
    frame[y:y + SIDE, x:x + SIDE] = (230, 230, 230)
    return VideoData(frame, "rgb24", frame_number=n, timestamp_us=n * 66_666)


def split(outs):
    return [o.value for o in outs if isinstance(o, JsonData)], [o for o in outs if isinstance(o, VideoData)]


def test_edges_are_found_on_the_square_border_only():
    out = EdgeDetect(threshold=200).process(square_frame(60, 40))
    edges = out.frame[..., 0] > 0
    assert out.pixel_format == "rgb24" and out.frame.shape == (H, W, 3)
    border = np.zeros((H, W), bool)
    border[39:62, 59:82] = True
    border[42:58, 62:78] = False  # inside the square is flat
    assert edges[40, 60:80].all() and edges[40:60, 60].all()  # the square's top and left sides
    assert not (edges & ~border).any()  # nothing off the border (the noise stays below threshold)
    assert 0 < out.metadata["edge_fraction"] < 0.05
    assert sobel_magnitude(np.full((5, 5), 7.0)).max() == 0


def test_edge_overlay_mode_and_yuv_input():
    frame = square_frame(60, 40)
    yuv = VideoData(frame.to_av_frame().reformat(format="yuv420p").to_ndarray(), "yuv420p")
    node = EdgeDetect(threshold=200, mode="overlay", color=[255, 0, 0])
    out = node.process(yuv)
    assert out.pixel_format == "rgb24" and out.frame.shape == (H, W, 3)
    red = (out.frame[..., 0] == 255) & (out.frame[..., 1] == 0)
    assert red[40, 62:78].all() and not red[5:30, 5:30].any()
    node.threshold = 5000  # live: nothing exceeds it
    assert not ((node.process(yuv).frame[..., 0] == 255) & (node.process(yuv).frame[..., 1] == 0)).any()


def test_motion_score_rises_where_the_square_moves():
    node = MotionHeatmap(diff_threshold=30, decay=0.8)
    outs = []
    positions = [(20, 50)] * 3 + [(20 + 8 * i, 50) for i in range(1, 8)] + [(76, 50)] * 4
    for n, (x, y) in enumerate(positions):
        outs += node.process(square_frame(x, y, n))
    events, frames = split(outs)
    scores = [e["score"] for e in events]
    assert len(frames) == len(events) == len(positions)
    assert max(scores[:3]) == 0 and max(scores[-3:]) == 0  # still: no motion (noise below the threshold)
    assert min(scores[3:10]) > 0.01  # moving: 2 x 8 x 20 changed pixels = 1.7 % of the frame
    # square from x=36 to x=44: the uncovered strip 36..43 and the newly covered 56..63 changed
    assert events[5]["bbox"] == [36, 50, 28, SIDE]
    # the heat map stays warm right after the motion and colours the frame there
    after = frames[10].frame.astype(int)
    plain = square_frame(76, 50, 10).frame.astype(int)
    assert np.abs(after - plain)[50:70, 60:76].mean() > 20
    assert np.abs(after - plain)[:40].max() == 0  # no heat where nothing moved
    assert frames[10].metadata["motion_score"] == 0


def test_motion_without_frames_and_live_threshold():
    node = MotionHeatmap(diff_threshold=30, emit_frame=False)
    node.process(square_frame(20, 50, 0))
    out = node.process(square_frame(40, 50, 1))
    assert isinstance(out, JsonData) and out.value["score"] > 0.01
    node.diff_threshold = 255  # live
    assert node.process(square_frame(60, 50, 2)).value["score"] == 0


def test_foreground_mask_covers_the_square_after_learning_the_background():
    node = ForegroundMask(threshold=30, learning_rate=0.2, warmup_frames=5)
    for n in range(8):
        node.process(VideoData(background(n), "rgb24", frame_number=n))
    event, mask = node.process(square_frame(90, 30, 8))
    assert event.value["bbox"] == [90, 30, SIDE, SIDE]
    m = mask.frame[..., 0] > 0
    assert m[30:50, 90:110].all()
    assert m.sum() == SIDE * SIDE
    assert event.value["ratio"] == pytest.approx(SIDE * SIDE / (W * H), abs=1e-4)
    # a square that stays put is not learnt into the background (only background pixels learn)
    for n in range(9, 20):
        event, mask = node.process(square_frame(90, 30, n))
    assert event.value["bbox"] == [90, 30, SIDE, SIDE]


def test_overlay_draws_boxes_text_and_event_boxes():
    node = Overlay(text="frame {frame_number} {unknown}", boxes=[{"x": 10, "y": 60, "w": 30, "h": 20,
                                                                   "color": [255, 0, 0]}], font_size=12)
    plain = square_frame(100, 10, 7)
    out = node.process(plain)
    f = out.frame
    assert tuple(f[60, 20]) == (255, 0, 0) and tuple(f[79, 25]) == (255, 0, 0) and tuple(f[70, 10]) == (255, 0, 0)
    assert tuple(f[70, 25]) == tuple(plain.frame[70, 25])  # the inside is untouched
    text_area = np.abs(f[5:25, 5:120].astype(int) - plain.frame[5:25, 5:120]).sum(axis=2) > 0
    assert text_area.sum() > 30  # the text was drawn (yellow on green)
    assert node.process(JsonData({"kind": "motion", "score": 0.1, "bbox": [100, 90, 20, 20]})) is None
    node.text = ""  # live
    f2 = node.process(plain).frame
    assert tuple(f2[90, 110]) == (255, 255, 0)  # event box in the default colour
    assert np.abs(f2[5:25, 5:60].astype(int) - plain.frame[5:25, 5:60]).max() == 0  # no text any more
    node.process(JsonData({"kind": "overlay", "boxes": [], "text": "hi"}))
    assert node.boxes == [] and node.text == "hi"


async def test_motion_to_overlay_pipeline_in_a_session():
    manifest = {
        "version": "v1", "metadata": {"name": "motion"},
        "nodes": [{"id": "motion", "node_type": "MotionHeatmapNode", "params": {"diffThreshold": 30}},
                  {"id": "overlay", "node_type": "OverlayNode", "params": {"text": "#{frame_number}"}}],
        "connections": [{"from": "motion", "to": "overlay"}],
    }
    session = await PipelineRunner().create_stream_session(manifest)
    for n in range(6):
        await session.send_input(square_frame(20 + 10 * n, 50, n))
    await session.end_input()
    outs = [o async for o in session]
    await session.close()
    assert outs and all(isinstance(o, VideoData) for o in outs)
    last = outs[-1].frame
    assert (np.all(last == (255, 255, 0), axis=2)).sum() > 20  # the motion box drawn over the square's path
