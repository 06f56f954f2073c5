"""Live views of pipeline outputs: :class:`LiveText` (partial + final lines) and :class:`LivePlot`.

Both take outputs one at a time with ``feed(output)`` from any source (a stream's kernel-side tap, a
local session fed from a WAV file, a list) and push updates to a *sink* at a human rate: at most
``max_fps`` per second, however fast outputs arrive, so the kernel's iopub channel is never flooded.
An update that the rate limit holds back is sent by the next ``feed``/``tick`` or by ``flush()``.

A stream's widget draws its plot itself, on a canvas in the browser: :class:`LivePlot` sends it only the
window's points as float32 buffers (``data_sink``), which costs the kernel 25-40 times less CPU than rendering
a matplotlib PNG (``bench/plot_cpu.py``). Elsewhere (a plain notebook output, a file) plots are rendered
with matplotlib's Agg canvas (no pyplot, no global state, safe off the main thread) to PNG bytes. The
default sinks are ipywidgets (``HTML`` for text, ``Image`` for plots).
"""

from __future__ import annotations

import html
import io
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..runtime.data import JsonData, TextData

__all__ = ["LivePlot", "LiveText", "Throttle", "drive", "json_value", "text_of"]

Clock = Callable[[], float]

#: JSON fields that are bookkeeping, not measurements (skipped when ``fields=None``).
_NOT_MEASUREMENTS = frozenset({"timestamp_us", "samples", "sample_rate", "id", "ts", "ts_us", "frame_number"})


class Throttle:
    """Allows one event per ``1 / max_hz`` seconds."""

    def __init__(self, max_hz: float, clock: Clock = time.monotonic) -> None:
        if max_hz <= 0:
            raise ValueError("max_hz must be > 0")
        self.interval = 1.0 / max_hz
        self._clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        """True (and the slot is taken) if an event may happen now."""
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


def _unwrap(item: Any) -> Any:
    # (node_id, data) pairs from ``receive_output_from`` / taps
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[1]
    return item


def json_value(item: Any) -> dict[str, Any] | None:
    """The JSON object carried by an output (``JsonData``, a dict, or a data-channel message), else None."""
    item = _unwrap(item)
    if isinstance(item, JsonData):
        item = item.value
    if isinstance(item, dict) and item.get("type") == "json" and isinstance(item.get("value"), dict):
        item = item["value"]  # a data-channel message
    return item if isinstance(item, dict) else None


def text_of(item: Any) -> tuple[str, bool] | None:
    """``(text, final)`` for a text-like output, else None.

    ``TextData`` on channel ``partial`` is a partial line; JSON ``{"text", "final"|"is_final"}`` too.
    """
    item = _unwrap(item)
    if isinstance(item, TextData):
        return item.text, item.channel != "partial"
    if isinstance(item, str):
        return item, True
    value = json_value(item)
    if value is None and isinstance(item, dict) and item.get("type") == "text":
        value = {"text": item.get("text"), "final": item.get("channel") != "partial"}
    if value is not None and isinstance(value.get("text"), str):
        final = value.get("final", value.get("is_final", True))
        return value["text"], bool(final)
    return None


class _ThrottledView:
    """A view that marks itself dirty on new data and pushes at most ``max_fps`` updates a second."""

    _throttle: Throttle
    _dirty: bool

    def tick(self) -> bool:
        """Push a pending update if the rate limit allows; True if one was pushed."""
        if not self._dirty or not self._throttle.ready():
            return False
        self._push()
        return True

    def flush(self) -> None:
        """Push a pending update now."""
        if self._dirty:
            self._push()

    def _push(self) -> None:
        raise NotImplementedError


class LiveText(_ThrottledView):
    """Recent text lines plus the current partial line, shown live.

    ``sink(lines, partial)`` receives the state (default: an ``ipywidgets.HTML`` in :attr:`widget`).
    """

    def __init__(self, max_lines: int = 50, *, max_fps: float = 20.0,
                 sink: Callable[[list[str], str], None] | None = None, clock: Clock = time.monotonic) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.partial = ""
        self.updates = 0
        self._sink = sink
        self._widget: Any = None
        self._throttle = Throttle(max_fps, clock)
        self._dirty = False
        self._lock = threading.Lock()

    def feed(self, item: Any) -> bool:
        """Take one output; True if it was text."""
        got = text_of(item)
        if got is None:
            return False
        text, final = got
        with self._lock:
            if final:
                self.lines.append(text)
                self.partial = ""
            else:
                self.partial = text
            self._dirty = True
        self.tick()
        return True

    @property
    def text(self) -> str:
        """Every final line, newline-separated."""
        with self._lock:
            return "\n".join(self.lines)

    def _push(self) -> None:
        with self._lock:
            lines, partial, self._dirty = list(self.lines), self.partial, False
        self.updates += 1
        if self._sink is not None:
            self._sink(lines, partial)
        elif self._widget is not None:
            self._widget.value = render_text_html(lines, partial)

    @property
    def widget(self) -> Any:
        """An ``ipywidgets.HTML`` showing the text (made on first use)."""
        if self._widget is None:
            import ipywidgets

            self._widget = ipywidgets.HTML(render_text_html(list(self.lines), self.partial))
            self._widget.add_class("rm-live-text")
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def render_text_html(lines: Sequence[str], partial: str) -> str:
    """The HTML of a LiveText state (escaped)."""
    body = "".join(f"<div class='rm-line'>{html.escape(line)}</div>" for line in lines)
    if partial:
        body += f"<div class='rm-line rm-partial' style='opacity:.6;font-style:italic'>{html.escape(partial)}</div>"
    return f"<div class='rm-live-text' style='font-family:monospace'>{body}</div>"


class LivePlot(_ThrottledView):
    """A scrolling plot of numeric JSON fields over the last ``window_s`` seconds.

    ``fields``: the numeric fields to draw as lines (``None``: every numeric field seen, e.g. a level
    meter's ``rms_dbfs``/``peak_dbfs``). ``flags``: boolean fields drawn as shaded spans (a VAD timeline,
    e.g. ``has_speech``). ``sink(png_bytes)`` receives each rendered frame (default: an
    ``ipywidgets.Image`` in :attr:`widget`). ``data_sink(message, buffers)``, when given, receives the
    data instead of a PNG (see :meth:`render_data`; a stream's widget draws it on a canvas) and nothing
    is rendered in the kernel. Frames are made on the thread that calls ``feed``/``tick``/``flush``, at
    most ``max_fps`` times per second (clamped to 1..30).
    """

    def __init__(
        self,
        fields: Sequence[str] | None = ("rms_dbfs",),
        *,
        flags: Sequence[str] = ("has_speech",),
        window_s: float = 10.0,
        max_fps: float = 10.0,
        ylim: tuple[float, float] | None = None,
        title: str | None = None,
        size: tuple[float, float] = (6.4, 2.0),
        dpi: int = 80,
        max_points: int = 5000,
        sink: Callable[[bytes], None] | None = None,
        data_sink: Callable[[dict[str, Any], list[bytes]], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.fields = None if fields is None else list(fields)
        self.flags = list(flags)
        self.window_s = window_s
        self.ylim = ylim
        self.title = title
        self._size = size
        self._dpi = dpi
        self._clock = clock
        self._sink = sink
        self._data_sink = data_sink
        self._widget: Any = None
        self._throttle = Throttle(min(max(max_fps, 1.0), 30.0), clock)
        self.series: dict[str, deque[tuple[float, float]]] = {}
        self.flag_series: dict[str, deque[tuple[float, bool]]] = {}
        self._max_points = max_points
        self._dirty = False
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._figure: tuple[Any, Any] | None = None  # (matplotlib Figure, Axes), made on first render
        self._lines: dict[str, Any] = {}
        self._spans: dict[str, Any] = {}
        self._flag_labels: set[str] = set()
        self.frames = 0
        self.last_png: bytes | None = None

    # -- data ------------------------------------------------------------------------------
    def feed(self, item: Any) -> bool:
        """Take one output; True if it carried a plotted field. Renders if the rate limit allows."""
        value = json_value(item)
        if value is None:
            return False
        now = self._clock()
        used = False
        with self._lock:
            for key, v in value.items():
                if key in self.flags and isinstance(v, bool):
                    self.flag_series.setdefault(key, deque(maxlen=self._max_points)).append((now, v))
                    used = True
                elif self._wanted(key, v):
                    self.series.setdefault(key, deque(maxlen=self._max_points)).append((now, float(v)))
                    used = True
            if used:
                self._dirty = True
        if used:
            self.tick()
        return used

    def _wanted(self, key: str, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.fields is None:
            return key not in _NOT_MEASUREMENTS and key not in self.flags
        return key in self.fields

    def latest(self, field: str) -> float | bool | None:
        """The most recent value of ``field`` (a line or a flag), or None."""
        with self._lock:
            points = self.series.get(field) or self.flag_series.get(field)
            return points[-1][1] if points else None

    # -- rendering -------------------------------------------------------------------------
    def _push(self) -> None:
        if self._data_sink is not None:
            message, buffers = self.render_data()
            self.frames += 1
            self._data_sink(message, buffers)
            return
        png = self.render_png()
        self.frames += 1
        self.last_png = png
        if self._sink is not None:
            self._sink(png)
        elif self._widget is not None:
            self._widget.value = png

    def _snapshot(self) -> tuple[float, dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, bool]]]]:
        with self._lock:
            self._dirty = False
            now = self._clock()
            lo = now - self.window_s
            for line in self.series.values():
                _drop_before(line, lo - 1.0)
            for flag in self.flag_series.values():
                _drop_before(flag, lo - 1.0)
            lines = {k: list(v) for k, v in self.series.items()}
            flags = {k: list(v) for k, v in self.flag_series.items()}
        return now, lines, flags

    def render_data(self) -> tuple[dict[str, Any], list[bytes]]:
        """The current window as data for a front end to draw: ``(message, buffers)``.

        ``message``: ``window_s``, ``ylim`` (or None: fit the data), ``title``, ``series`` (line names) and
        ``flags`` (flag names). ``buffers``: one float32 array per series, interleaved ``(t, value)`` with
        ``t`` in seconds relative to now (<= 0), then one per flag, ``(start, end)`` pairs of its spans.
        """
        import numpy as np

        now, lines, flags = self._snapshot()
        buffers = []
        for points in lines.values():
            xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            xy[:, 0] -= now
            buffers.append(xy.astype(np.float32).tobytes())
        for flag_points in flags.values():
            spans = np.asarray(_spans(flag_points, now), dtype=np.float64).reshape(-1, 2) - now
            buffers.append(spans.astype(np.float32).tobytes())
        message = {"window_s": self.window_s, "ylim": list(self.ylim) if self.ylim is not None else None,
                   "title": self.title, "series": list(lines), "flags": list(flags)}
        return message, buffers

    def render_png(self) -> bytes:
        """The current plot as PNG bytes."""
        now, lines, flags = self._snapshot()
        with self._render_lock:
            fig, ax = self._get_figure()
            legend_changed = False
            for name, points in lines.items():
                line = self._lines.get(name)
                if line is None:
                    (line,) = ax.plot([], [], label=name, linewidth=1.4)
                    self._lines[name] = line
                    legend_changed = True
                line.set_data([t - now for t, _ in points], [v for _, v in points])
            for i, (name, flag_points) in enumerate(flags.items()):
                old = self._spans.pop(name, None)
                if old is not None:
                    old.remove()
                color = ("tab:green", "tab:orange", "tab:purple")[i % 3]
                xs: list[float] = []
                for start, end in _spans(flag_points, now):
                    xs += [start - now, start - now, end - now, end - now]
                ys = [0.0, 1.0, 1.0, 0.0] * (len(xs) // 4)
                (self._spans[name],) = ax.fill(xs or [0.0], ys or [0.0], color=color, alpha=0.25, lw=0,
                                               transform=ax.get_xaxis_transform(), label=name)
                if name not in self._flag_labels:
                    self._flag_labels.add(name)
                    legend_changed = True
            if self.ylim is not None:
                ax.set_ylim(*self.ylim)
            elif lines:
                ax.relim(visible_only=True)
                ax.autoscale_view(scalex=False)
            if legend_changed:
                ax.legend(loc="upper left", fontsize=8, frameon=False)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=self._dpi)
        return buf.getvalue()

    def _get_figure(self) -> tuple[Any, Any]:
        if self._figure is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            fig = Figure(figsize=self._size, dpi=self._dpi)
            fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.22)
            FigureCanvasAgg(fig)
            ax = fig.add_subplot(1, 1, 1)
            ax.set_xlim(-self.window_s, 0)
            ax.set_xlabel("seconds ago", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if self.title:
                ax.set_title(self.title, fontsize=9)
            self._figure = (fig, ax)
        return self._figure

    @property
    def widget(self) -> Any:
        """An ``ipywidgets.Image`` showing the plot (made on first use)."""
        if self._widget is None:
            import ipywidgets

            self._widget = ipywidgets.Image(format="png", value=self.last_png or b"")
            self._widget.add_class("rm-live-plot")
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _drop_before(points: deque[tuple[float, Any]], t: float) -> None:
    """Drop the points older than ``t``, keeping at least one (the line enters the window from it)."""
    while len(points) > 1 and points[0][0] < t:
        points.popleft()


def _spans(points: list[tuple[float, bool]], now: float) -> list[tuple[float, float]]:
    """Time spans where a boolean series is True (an open span ends at ``now``)."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for t, on in points:
        if on and start is None:
            start = t
        elif not on and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, now))
    return spans


def drive(outputs: Iterable[Any], *views: Any, realtime: float | None = None) -> int:
    """Feed every output to every view (``LiveText``, ``LivePlot``, any ``feed``-able), then flush them.

    ``realtime``: seconds to sleep between outputs (None: as fast as they come). Returns the count fed.
    """
    count = 0
    for item in outputs:
        for view in views:
            view.feed(item)
        count += 1
        if realtime:
            time.sleep(realtime)
    for view in views:
        flush = getattr(view, "flush", None)
        if flush is not None:
            flush()
    return count
