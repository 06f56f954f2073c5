"""``stream(pipeline)``: the one-line entry point — browser mic/camera -> WebRTC -> pipeline -> live results.

::

    import remotemedia_nbrtc as rm
    h = rm.stream(pipeline, audio=True, video=False, plot=["rms_dbfs"])
    h                      # the widget: device pickers, start/stop, live text, live plot, stats
    h.outputs[-5:]         # recent pipeline outputs, tapped in the kernel
    h.metrics()            # per-node counters, peer stats, browser stats (RTT, loss, end-to-end latency)
    h.close()

The pipeline runs in this kernel (its session is created when the browser connects, on the pipeline
loop); its outputs are tapped right there and handed to a per-stream display thread, which feeds the
live plot / callbacks and throttles what goes to the browser. Re-running the cell that made a stream
closes the previous one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import TransportError
from .recent import RecentOutputs
from .runtime import (
    JsonData,
    Node,
    Pipeline,
    PipelineRunner,
    PipelineSource,
    RuntimeData,
    StreamSession,
    load_manifest,
)
from .runtime.queues import DropOldest
from .stream_options import StreamOptions

if TYPE_CHECKING:  # the widget, the kernel link and the views load when stream() is first called
    from .callbacks import FrameCallback
    from .display.live import LivePlot, LiveText
    from .display.stats import StatsReport
    from .kernel.serve import KernelSession
    from .widget import StreamWidget

__all__ = ["LatencyProbe", "StreamHandle", "live_handles", "stream"]

log = logging.getLogger(__name__)

#: Node id of the latency probe added to streamed pipelines (see :class:`LatencyProbe`).
PROBE_NODE_ID = "_rm_latency_probe"
PING_KIND = "rm.ping"
#: The browser's ``jitterBufferTarget`` (ms) when ``loopback_only`` and ``StreamOptions.jitter_buffer_ms="auto"``:
#: packets arrive evenly on one host, so the browser need not hold audio for network jitter.
LOOPBACK_JITTER_BUFFER_MS = 0.0

#: :class:`~.transport.config.PeerConfig` audio settings of the widget's peer (when no ``peer_config`` is
#: given): the browser sends 10 ms Opus packets (half the wait for a packet to fill), and the returned
#: audio goes out as 10 ms packets on a regular grid locked to the arrivals, which keeps Chrome's
#: adaptive receive buffer short (irregularly spaced packets made it hold 40-55 ms instead of ~20).
BROWSER_AUDIO: dict[str, Any] = {"audio_ptime_ms": 10, "audio_out_frame_ms": 10, "audio_out_pacing": "smooth"}

#: ``StreamOptions.audio_transport`` values
AUDIO_TRANSPORTS = ("auto", "rtp", "datachannel")

OutputCallback = Callable[[RuntimeData], Any]
#: What :func:`stream` takes as its pipeline: a pipeline or manifest, one node, or a function called with every frame
PipelineLike: TypeAlias = "PipelineSource | Node | FrameCallback"
#: node id of the WAV recorder ``stream(record=...)`` adds (remotemedia_nbrtc.recording.RECORDER_NODE_ID)
RECORDER_NODE_ID = "_rm_recorder"
#: node id of a single node given to ``stream(node)`` as the pipeline
SINGLE_NODE_ID = "node"

_live: dict[str, StreamHandle] = {}
_live_lock = threading.Lock()


class LatencyProbe(Node):
    """Echoes the widget's ``{"kind": "rm.ping"}`` data-channel messages; drops every other input.

    Added as an extra source (and sink) of a streamed pipeline, so a ping travels browser -> data
    channel -> RTC loop -> pipeline loop -> back, and its round trip is the end-to-end latency. The
    session's input router (:func:`probe_router`) sends pings to the probe only and every other input
    to the user's sources only.
    """

    def process(self, data: RuntimeData) -> RuntimeData | None:
        if is_ping(data):
            return data
        return None


def is_ping(data: object) -> bool:
    """True for the widget's latency pings (which never reach views or callbacks)."""
    return isinstance(data, JsonData) and isinstance(data.value, dict) and data.value.get("kind") == PING_KIND


def probe_router(pipeline: Pipeline) -> Callable[[RuntimeData], list[str]] | None:
    """The input router of a pipeline with a probe: pings to the probe, the rest to the other sources."""
    if PROBE_NODE_ID not in pipeline.nodes:
        return None
    probe = [PROBE_NODE_ID]
    user_sources = [nid for nid in pipeline.sources if nid != PROBE_NODE_ID]
    return lambda data: probe if is_ping(data) else user_sources


def with_latency_probe(pipeline: PipelineSource) -> Pipeline:
    """A copy of ``pipeline`` with a :class:`LatencyProbe` source added (the original is not changed)."""
    src = load_manifest(pipeline)
    if PROBE_NODE_ID in src.nodes:
        return src
    out = src.copy()
    out.add(PROBE_NODE_ID, LatencyProbe())
    return out.validate()


class _TappingRunner(PipelineRunner):
    """Creates sessions like PipelineRunner and hands each new one to ``on_session`` (pipeline loop)."""

    def __init__(self, on_session: Callable[[StreamSession], None]) -> None:
        super().__init__()
        self._on_session = on_session

    async def create_stream_session(self, pipeline: PipelineSource) -> StreamSession:
        session = await super().create_stream_session(pipeline)
        try:
            self._on_session(session)
        except Exception:
            log.exception("stream: tapping the new session failed")
        return session


class _Dispatcher:
    """One daemon thread per stream: delivers tapped outputs to views/callbacks and ticks the views.

    Taps run on the pipeline loop and only append to a bounded buffer (drop-oldest, counted in
    ``drops``): a slow plot or callback never stalls the pipeline.
    """

    def __init__(self, name: str, deliver: Callable[[str, RuntimeData], None], tick: Callable[[], None],
                 *, capacity: int = 4096, tick_s: float = 0.05) -> None:
        self._deliver = deliver
        self._tick = tick
        self._tick_s = tick_s
        self._items: DropOldest[tuple[str, RuntimeData]] = DropOldest(capacity)
        self._cond = threading.Condition()
        self._stopping = False
        self.delivered = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def put(self, node_id: str, data: RuntimeData) -> None:
        """Queue one output (any thread, never blocks)."""
        with self._cond:
            if self._stopping:
                return
            self._items.push((node_id, data))
            self._cond.notify()

    @property
    def drops(self) -> int:
        """Outputs dropped because the buffer was full."""
        return self._items.drops

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items) or self._stopping, timeout=self._tick_s)
                batch = self._items.drain()
                stopping = self._stopping
            for node_id, data in batch:
                try:
                    self._deliver(node_id, data)
                except Exception:
                    log.exception("stream: delivering an output failed")
                self.delivered += 1
            try:
                self._tick()
            except Exception:
                log.exception("stream: updating a live view failed")
            if stopping:
                return

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


def _apply_params(session: StreamSession, params: dict[str, dict[str, Any]]) -> None:
    for node_id, values in params.items():
        if node_id not in session.node_ids:
            log.warning("set_params: no node %r in this session", node_id)
            continue
        node = session.node(node_id)
        for name, value in values.items():
            setattr(node, name, value)


class StreamHandle:
    """A live stream: the widget, the kernel session, recent outputs, metrics. Made by :func:`stream`."""

    def __init__(self, widget: StreamWidget, *, max_outputs: int = 500, key: str | None = None) -> None:
        self.widget = widget
        self.key = key
        self.error: Exception | None = None
        #: The newest ``max_outputs`` outputs (``h.outputs[-5:]`` is a list snapshot).
        self.outputs: RecentOutputs[RuntimeData] = RecentOutputs(max_outputs)
        self.plot: LivePlot | None = None
        self.text: LiveText | None = None
        self._kernel_session: KernelSession | None = None
        self._callbacks: list[OutputCallback] = []
        self._sessions: list[StreamSession] = []
        self._removers: list[Callable[[], None]] = []
        self._params: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._dispatcher: _Dispatcher | None = None
        self.runner = _TappingRunner(self._on_session)

    # -- public ----------------------------------------------------------------------------
    @property
    def session_id(self) -> str | None:
        """The id the browser connects with (None if serving failed)."""
        return None if self._kernel_session is None else self._kernel_session.session_id

    @property
    def closed(self) -> bool:
        return self._closed

    def on_output(self, callback: OutputCallback) -> OutputCallback:
        """Call ``callback(output)`` for every pipeline output (on the stream's display thread).

        Usable as a decorator. Keep it quick: outputs wait while it runs (and are dropped, counted,
        if the backlog exceeds the buffer).
        """
        self._callbacks.append(callback)
        return callback

    def sessions(self) -> list[StreamSession]:
        """The live pipeline sessions of this stream (one per connected browser view)."""
        with self._lock:
            self._sessions = [s for s in self._sessions if s.is_active]
            return list(self._sessions)

    def set_params(self, node_id: str, **values: Any) -> None:
        """Change parameters of a node while streaming, e.g. ``h.set_params("gain", gain_db=-12)``.

        Applied to every live session at once (on the pipeline loop, between two inputs) and kept for
        sessions created later (a reconnecting browser).
        """
        from .transport.loop_thread import pipeline_loop

        sessions = self.sessions()
        if sessions:
            if node_id not in sessions[-1].node_ids:
                raise KeyError(f"no node {node_id!r} in this pipeline (nodes: {sessions[-1].node_ids})")
            node = sessions[-1].node(node_id)
            for name in values:
                if not hasattr(node, name):
                    raise AttributeError(f"node {node_id!r} ({type(node).__name__}) has no parameter {name!r}")
        with self._lock:
            self._params.setdefault(node_id, {}).update(values)

        async def apply() -> None:
            for session in sessions:
                _apply_params(session, {node_id: values})

        if sessions:
            pipeline_loop().run(apply(), 5.0)

    def metrics(self, timeout: float = 5.0) -> dict[str, Any]:
        """Per-node counters of the newest session, server-peer stats, browser stats, display counters.

        ``transport``: the media path settings and what the browser chose (``path``: webrtc / websocket,
        ``audio``: rtp / datachannel / websocket, with the reason for a fallback); each entry of ``peers``
        has the kernel peer's counters (``dc_audio`` for data-channel audio), ``browser`` the widget's
        (``dc_audio.playout``: buffer level, margin, underruns, skipped audio).
        """
        from .transport.loop_thread import pipeline_loop, rtc_loop

        sessions = self.sessions()
        nodes: dict[str, Any] = {}
        if sessions:
            session = sessions[-1]

            async def node_metrics() -> dict[str, Any]:
                return session.metrics()

            nodes = pipeline_loop().run(node_metrics(), timeout)
            nodes.pop(PROBE_NODE_ID, None)
        peers: list[dict[str, Any]] = []
        ks = self._kernel_session
        if ks is not None and not ks.closed:
            endpoints = ks.endpoints(timeout)

            async def peer_stats() -> list[dict[str, Any]]:
                peers = [e.server_peer for e in endpoints]
                return [{"path": p.transport_path, **p.stats()} for p in peers if p is not None]

            peers = rtc_loop().run(peer_stats(), timeout)
        d = self._dispatcher
        display = {
            "outputs": d.delivered if d else 0,
            "dropped": d.drops if d else 0,
            "plot_frames": self.plot.frames if self.plot is not None else 0,
        }
        w = self.widget
        transport = {
            "setting": w.transport,
            "webrtc_timeout_s": w.webrtc_timeout_s,
            "path": (peers[-1]["path"] if peers else None) or w.path or None,
            "reason": w.path_reason or None,
            "audio_setting": w.audio_transport,
            "audio": (w.browser_stats or {}).get("audio_transport"),
        }
        return {
            "session_id": self.session_id,
            "sessions": len(sessions),
            "path": transport["path"],
            "transport": transport,
            "nodes": nodes,
            "peers": peers,
            "browser": dict(w.browser_stats or {}),
            "display": display,
        }

    def stats(self) -> StatsReport:
        """The metrics as HTML tables, with the kernel's doctor checks."""
        from .display.stats import stats_report

        return stats_report(self.metrics())

    def close(self, timeout: float = 10.0) -> None:
        """End the stream: the browser disconnects, the kernel session and its pipeline close. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            removers, self._removers = self._removers, []
        with _live_lock:
            if self.key is not None and _live.get(self.key) is self:
                del _live[self.key]
        try:
            self.widget.closed = True
        except Exception:  # the comm may already be gone (kernel shutting down)
            log.debug("stream: cannot mark the widget closed", exc_info=True)
        ks, self._kernel_session = self._kernel_session, None
        if ks is not None:
            try:
                ks.close(timeout)
            except Exception:
                log.warning("stream: closing the kernel session failed", exc_info=True)
        if removers:
            self._remove_taps(removers, timeout)
        if self._dispatcher is not None:
            self._dispatcher.stop(timeout)
        if self.plot is not None:
            self.plot.flush()

    def __enter__(self) -> StreamHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        if self.error is not None:
            return f"<StreamHandle error: {self.error}>"
        state = "closed" if self._closed else "live"
        return f"<StreamHandle {str(self.session_id)[:8]}… {state}>"

    # -- internals -------------------------------------------------------------------------
    def _start_dispatcher(self) -> None:
        name = f"remotemedia-display-{(self.session_id or 'x')[:8]}"
        self._dispatcher = _Dispatcher(name, self._deliver, self._tick)

    def _on_session(self, session: StreamSession) -> None:
        """A browser connected and its session was created (on the pipeline loop): tap its outputs."""
        session.set_input_router(probe_router(session.pipeline))
        if self._closed or self._dispatcher is None:
            return
        dispatcher = self._dispatcher
        pipeline = session.pipeline
        removers = []
        for nid in session.node_ids:
            if nid in (PROBE_NODE_ID, RECORDER_NODE_ID) or not (nid in pipeline.sinks or pipeline.is_output_node(nid)):
                continue

            def tap(data: RuntimeData, _nid: str = nid) -> None:
                dispatcher.put(_nid, data)

            removers.append(session.add_tap(nid, tap))
        with self._lock:
            self._sessions = [s for s in self._sessions if s.is_active] + [session]
            self._removers.extend(removers)
            params = {nid: dict(values) for nid, values in self._params.items()}
        _apply_params(session, params)

    def _remove_taps(self, removers: list[Callable[[], None]], timeout: float) -> None:
        from .transport.loop_thread import pipeline_loop

        async def remove() -> None:
            for remover in removers:
                remover()

        try:
            pipeline_loop().run(remove(), timeout)
        except Exception:
            log.debug("stream: removing taps failed", exc_info=True)

    def _deliver(self, node_id: str, data: RuntimeData) -> None:
        if is_ping(data):
            return
        self.outputs.append(data)
        if self.plot is not None:
            self.plot.feed(data)
        if self.text is not None:
            self.text.feed(data)
        for callback in list(self._callbacks):
            try:
                callback(data)
            except Exception:
                log.exception("stream: on_output callback %r failed", callback)

    def _tick(self) -> None:
        if self.plot is not None:
            self.plot.tick()
        if self.text is not None:
            self.text.tick()


def live_handles() -> list[StreamHandle]:
    """The streams of this kernel that are still open (one per notebook cell at most)."""
    with _live_lock:
        return [h for h in _live.values() if not h.closed]


def _cell_key() -> str | None:
    """The id of the notebook cell being run (JupyterLab / Notebook 7 send it), if any."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        parent = kernel.get_parent() if kernel is not None else None
        cell_id = ((parent or {}).get("metadata") or {}).get("cellId")
        return f"cell:{cell_id}" if cell_id else None
    except Exception:  # noqa: BLE001 - not in IPython, or an older kernel: no cell id, no replacing
        return None


def _pipeline_from_callbacks(pipeline: PipelineLike | None, audio_cb: FrameCallback | None,
                             video_cb: FrameCallback | None) -> PipelineSource:
    from .callbacks import callback_pipeline

    if audio_cb is not None or video_cb is not None:
        if pipeline is not None:
            raise TypeError(
                "give a pipeline or frame callbacks (audio_frame_callback / video_frame_callback), not both")
        return callback_pipeline(audio=audio_cb, video=video_cb)
    if pipeline is None:
        raise TypeError("stream() needs a pipeline, a function, or audio_frame_callback / video_frame_callback")
    if isinstance(pipeline, Node):  # one node is a pipeline of one, e.g. rm.stream(rm.ReplyOnPause(fn))
        single = Pipeline(type(pipeline).__name__)
        single.add(SINGLE_NODE_ID, pipeline)
        return single
    if isinstance(pipeline, type):  # e.g. rm.stream(rm.AudioLevel): it used to fail later as a bad manifest
        raise TypeError(f"stream() takes a node, not the node class {pipeline.__name__}: "
                        f"give it {pipeline.__name__}(...)")
    if callable(pipeline) and not isinstance(pipeline, Pipeline):
        return callback_pipeline(audio=pipeline, video=pipeline)
    return pipeline


def _make_plot(plot: bool | str | Sequence[str] | LivePlot | None, widget: StreamWidget, fps: float) -> LivePlot | None:
    from .display.live import LivePlot

    if plot is None or plot is False:
        return None
    if isinstance(plot, LivePlot):
        if plot._sink is None and plot._data_sink is None:
            plot._data_sink = widget.send_plot_data
        return plot
    fields = None if plot is True else [plot] if isinstance(plot, str) else list(plot)
    # the data, drawn by the widget: a matplotlib PNG costs the kernel 25-40x more CPU (bench/plot_cpu.py)
    return LivePlot(fields, max_fps=fps, data_sink=widget.send_plot_data)


def stream(
    pipeline: PipelineLike | None = None,
    audio: bool = True,
    video: bool = False,
    *,
    audio_frame_callback: FrameCallback | None = None,
    video_frame_callback: FrameCallback | None = None,
    plot: bool | str | Sequence[str] | LivePlot | None = True,
    text: LiveText | None = None,
    on_output: OutputCallback | None = None,
    show_stats: bool = False,
    loopback_only: bool = False,
    media_file: str | Path | None = None,
    record: str | Path | None = None,
    key: str | None = None,
    options: StreamOptions | None = None,
) -> StreamHandle:
    """Stream this browser's mic (``audio``) and/or camera (``video``) into ``pipeline`` in this kernel.

    ``pipeline``: a :class:`Pipeline`, one :class:`Node` (e.g. ``rm.ReplyOnPause(fn)``), a manifest dict, or
    JSON/YAML path/text, or a plain function called with every frame (audio and video).
    ``audio_frame_callback`` / ``video_frame_callback`` (instead of a pipeline): functions called with each
    ``AudioData`` / ``VideoData`` frame on a worker thread; what they return is the output (a frame goes back
    to the browser, a dict is plotted, a str shown, None nothing;
    see :mod:`~remotemedia_nbrtc.callbacks`). ``plot``: ``True`` plots
    every numeric field of JSON outputs (a level meter's ``rms_dbfs``...) with ``has_speech`` as a VAD
    timeline; a field name or list picks fields; a :class:`~.display.live.LivePlot` is used as given;
    ``False`` disables it. ``text``: a :class:`~.display.live.LiveText` fed with text outputs (the widget
    shows text outputs by itself). ``on_output``: called with every output (see :meth:`StreamHandle.on_output`).
    ``show_stats``: open the widget's stats panel. ``loopback_only``: ICE on 127.0.0.1 only (tests,
    same-host use).
    ``media_file``: a path to an audio or video file (WAV, MP3, Ogg, MP4, WebM: what the browser plays): the
    widget plays it, looping, and streams it instead of the mic/camera (``HTMLMediaElement.captureStream``).
    ``record``: a ``.wav`` path: the audio the pipeline receives is written there as 16-bit PCM while it
    streams (a reconnecting browser writes ``<name>-2.wav``...; see :mod:`~remotemedia_nbrtc.recording`).
    ``options``: a :class:`StreamOptions` with everything else (ICE servers, the transport and its fallback,
    the audio transport, ``getUserMedia`` constraints, jitter buffer, plot rate...); the widget's stats panel
    and ``metrics()["transport"]`` say which transport is in use and why.

    Never raises for a missing server extension or kernel link: the widget shows what to do and
    ``handle.error`` holds the exception. Re-running the same cell (or the same ``key``) closes the
    stream it made before.
    """
    from .kernel.serve import serve
    from .widget import StreamWidget

    opts = options or StreamOptions()
    source = _pipeline_from_callbacks(pipeline, audio_frame_callback, video_frame_callback)
    if opts.audio_transport not in AUDIO_TRANSPORTS:
        raise ValueError(f"audio_transport must be one of {AUDIO_TRANSPORTS}, not {opts.audio_transport!r}")
    key = key or _cell_key()
    if key is not None:
        with _live_lock:
            previous = _live.pop(key, None)
        if previous is not None:
            previous.close()

    peer_config = opts.peer_config
    if peer_config is None:
        from .transport.config import IceConfig, PeerConfig

        ice = IceConfig(ice_servers=list(opts.ice_servers or []), browser_ice_servers=opts.browser_ice_servers,
                        loopback_only=loopback_only)
        peer_config = PeerConfig(ice=ice, send_video=video, transport=opts.transport,
                                 webrtc_timeout_s=opts.webrtc_timeout_s, **BROWSER_AUDIO)
    ice_cfg = peer_config.ice
    loopback = ice_cfg.loopback_only
    browser_servers = ice_cfg.browser_servers()

    jitter_buffer_ms = opts.jitter_buffer_ms
    if jitter_buffer_ms == "auto":
        jitter_buffer_ms = LOOPBACK_JITTER_BUFFER_MS if loopback else None
    widget = StreamWidget(audio=audio, video=video, loopback_only=loopback, autostart=opts.autostart,
                          latency_probe=opts.latency_probe, show_stats=show_stats, ice_servers=browser_servers,
                          jitter_buffer_ms=jitter_buffer_ms,
                          transport=peer_config.transport, webrtc_timeout_s=float(peer_config.webrtc_timeout_s),
                          ice_transport_policy=opts.ice_transport_policy, audio_transport=opts.audio_transport,
                          audio_constraints=dict(opts.audio_constraints or {}),
                          video_constraints=dict(opts.video_constraints or {}))
    if ice_cfg.credentials is not None:
        widget.ice_servers_fn = ice_cfg.browser_servers  # fresh TURN credentials for every browser (re)connect
    if media_file is not None:
        import mimetypes

        path = Path(media_file)
        if not path.is_file():  # a wrong path must not silently stream the mic instead
            raise FileNotFoundError(f"media_file: no such file {str(path)!r}")
        widget.media_file = path.read_bytes()
        widget.media_file_type = mimetypes.guess_type(path.name)[0] or ""
    handle = StreamHandle(widget, max_outputs=opts.max_outputs, key=key)
    handle.plot = _make_plot(plot, widget, opts.plot_fps)
    handle.text = text
    if on_output is not None:
        handle.on_output(on_output)
    widget.on_close(handle.close)

    try:
        served_pipeline = with_latency_probe(source) if opts.latency_probe else load_manifest(source)
        if record is not None:
            from .recording import with_recorder

            served_pipeline = with_recorder(served_pipeline, record)
        kernel_session = serve(served_pipeline, peer_config=peer_config, runner=handle.runner)
    except TransportError as exc:
        handle.error = exc
        widget.error = str(exc)
        handle._closed = True
        return handle
    handle._kernel_session = kernel_session
    handle._start_dispatcher()
    widget.session_id = kernel_session.session_id
    widget.ws_path = kernel_session.ws_path
    if key is not None:
        with _live_lock:
            _live[key] = handle
    return handle
