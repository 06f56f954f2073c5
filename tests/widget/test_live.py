"""LiveText / LivePlot: what they take from outputs, and that updates are rate limited."""

from __future__ import annotations

import pytest

from remotemedia_nbrtc.display.live import LivePlot, LiveText, Throttle, drive, json_value, text_of
from remotemedia_nbrtc.runtime import AudioData, JsonData, TextData

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_throttle_allows_one_event_per_interval() -> None:
    clock = FakeClock()
    throttle = Throttle(10, clock)
    assert throttle.ready()
    assert not throttle.ready()
    clock.t += 0.05
    assert not throttle.ready()
    clock.t += 0.051
    assert throttle.ready()
    with pytest.raises(ValueError):
        Throttle(0)


def test_text_of_and_json_value_accept_runtime_data_pairs_and_datachannel_messages() -> None:
    assert text_of(TextData("hello")) == ("hello", True)
    assert text_of(TextData("hel", channel="partial")) == ("hel", False)
    assert text_of(("asr", TextData("x"))) == ("x", True)
    assert text_of(JsonData({"text": "so far", "is_final": False})) == ("so far", False)
    assert text_of({"type": "text", "text": "dc", "channel": "tts"}) == ("dc", True)
    assert text_of(JsonData({"rms_dbfs": -3})) is None
    assert json_value({"type": "json", "value": {"a": 1}}) == {"a": 1}
    assert json_value(("level", JsonData({"a": 2}))) == {"a": 2}
    assert json_value(TextData("no")) is None


def test_live_text_partial_then_final_and_rate_limited_pushes() -> None:
    clock = FakeClock()
    pushed: list[tuple[list[str], str]] = []
    text = LiveText(max_lines=3, max_fps=10, sink=lambda lines, partial: pushed.append((lines, partial)), clock=clock)
    assert text.feed(TextData("hel", channel="partial"))
    assert pushed == [([], "hel")]
    assert text.feed(TextData("hello world"))  # held back: 0 s since the last push
    assert len(pushed) == 1
    clock.t += 0.2
    assert text.tick()
    assert pushed[-1] == (["hello world"], "")
    for i in range(5):
        text.feed(TextData(f"line {i}"))
    text.flush()
    assert pushed[-1] == (["line 2", "line 3", "line 4"], "")
    assert not text.feed(AudioData.__new__(AudioData))  # not text
    assert text.text == "line 2\nline 3\nline 4"


def test_live_text_default_widget_escapes_html() -> None:
    text = LiveText()
    widget = text.widget
    text.feed(TextData("<b>x</b>"))
    assert "&lt;b&gt;x&lt;/b&gt;" in widget.value
    assert "<b>x</b>" not in widget.value


def test_live_plot_picks_fields_and_flags() -> None:
    plot = LivePlot(("rms_dbfs",), flags=("has_speech",), sink=lambda png: None)
    assert plot.feed(JsonData({"kind": "level", "rms_dbfs": -20.5, "peak_dbfs": -3.0}))
    assert plot.feed(("vad", JsonData({"kind": "vad", "has_speech": True})))
    assert not plot.feed(JsonData({"other": 1}))
    assert not plot.feed(TextData("hi"))
    assert plot.latest("rms_dbfs") == -20.5
    assert plot.latest("has_speech") is True
    assert "peak_dbfs" not in plot.series


def test_live_plot_auto_fields_skip_bookkeeping() -> None:
    plot = LivePlot(None, sink=lambda png: None)
    plot.feed(JsonData({"rms_dbfs": -20, "peak_dbfs": -6, "timestamp_us": 123, "samples": 960, "ok": True,
                        "nan": float("nan"), "name": "x"}))
    assert set(plot.series) == {"rms_dbfs", "peak_dbfs"}


def test_live_plot_renders_png_at_most_max_fps_under_a_burst() -> None:
    clock = FakeClock()
    frames: list[bytes] = []
    plot = LivePlot(("rms_dbfs",), max_fps=10, sink=frames.append, clock=clock)
    for i in range(1000):  # 1000 outputs within 1 s of (fake) time
        clock.t += 0.001
        plot.feed(JsonData({"rms_dbfs": -40 + i % 20, "has_speech": i % 300 > 150}))
    assert 9 <= len(frames) <= 11, len(frames)
    assert all(f.startswith(PNG_MAGIC) for f in frames)
    clock.t += 0.001
    plot.feed(JsonData({"rms_dbfs": -1}))
    n = len(frames)
    plot.flush()  # the held-back update goes out now
    assert len(frames) == n + 1
    plot.flush()  # nothing new: nothing pushed
    assert len(frames) == n + 1
    assert plot.frames == len(frames)


def test_live_plot_default_widget_gets_png_bytes() -> None:
    plot = LivePlot(("rms_dbfs",))
    widget = plot.widget
    plot.feed(JsonData({"rms_dbfs": -12}))
    assert bytes(widget.value).startswith(PNG_MAGIC)
    assert widget.format == "png"


def test_drive_feeds_every_view_and_flushes() -> None:
    pushed: list[bytes] = []
    text_pushed: list[tuple[list[str], str]] = []
    plot = LivePlot(("rms_dbfs",), sink=pushed.append)
    text = LiveText(sink=lambda lines, partial: text_pushed.append((lines, partial)))
    outputs = [JsonData({"rms_dbfs": -10.0 - i}) for i in range(20)] + [TextData("done")]
    assert drive(outputs, plot, text) == 21
    assert plot.latest("rms_dbfs") == -29.0
    assert text_pushed[-1] == (["done"], "")
    assert pushed and pushed[-1].startswith(PNG_MAGIC)


def test_render_data_sends_the_window_as_float32_points_and_spans() -> None:
    import numpy as np

    now = [100.0]
    sent: list[tuple[dict, list[bytes]]] = []
    plot = LivePlot(("rms_dbfs",), flags=("has_speech",), ylim=(-90, 0), title="t",
                    data_sink=lambda m, b: sent.append((m, b)), clock=lambda: now[0])
    for i in range(20):
        now[0] = 100.0 + i * 0.1
        plot.feed({"rms_dbfs": -40.0 + i, "has_speech": 5 <= i < 10, "timestamp_us": i})
    plot.flush()
    message, buffers = sent[-1]
    assert message == {"window_s": 10.0, "ylim": [-90, 0], "title": "t", "series": ["rms_dbfs"],
                       "flags": ["has_speech"]}
    xy = np.frombuffer(buffers[0], np.float32).reshape(-1, 2)
    assert len(xy) == 20 and xy[-1, 0] == 0 and abs(xy[0, 0] + 1.9) < 1e-5 and xy[-1, 1] == -21
    spans = np.frombuffer(buffers[1], np.float32).reshape(-1, 2)
    assert spans.shape == (1, 2) and abs(spans[0, 0] + 1.4) < 1e-5 and abs(spans[0, 1] + 0.9) < 1e-5
    assert plot.frames == len(sent) and plot.last_png is None  # nothing rendered in the kernel
