"""``StreamWidget``: the anywidget that runs the browser side of a stream (ES modules in ``js/``, no build).

The kernel side gives it a session id, the extension WebSocket path and the browser ICE servers; the
browser opens the WebSocket, speaks RemoteMedia's JSON-RPC signaling and shows the media, text and
stats. The kernel pushes plots with custom messages: ``{"kind": "plot-data"}`` + float32 buffers drawn
on a canvas in the browser (:meth:`LivePlot.render_data`), or ``{"kind": "plot"}`` + one PNG buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .assemble import assemble

_HERE = Path(__file__).parent


class StreamWidget(anywidget.AnyWidget):
    """Browser half of a stream; usually made by :func:`remotemedia_nbrtc.stream`."""

    #: the front end's modules joined into one ESM string (anywidget takes one module; see assemble.py)
    _esm = assemble(_HERE / "js")
    _css = _HERE / "widget.css"

    # kernel -> browser
    session_id = traitlets.Unicode("").tag(sync=True)
    ws_path = traitlets.Unicode("").tag(sync=True)
    ice_servers = traitlets.List(traitlets.Dict()).tag(sync=True)
    audio = traitlets.Bool(True).tag(sync=True)
    video = traitlets.Bool(False).tag(sync=True)
    loopback_only = traitlets.Bool(False).tag(sync=True)
    autostart = traitlets.Bool(True).tag(sync=True)
    latency_probe = traitlets.Bool(False).tag(sync=True)
    show_stats = traitlets.Bool(False).tag(sync=True)
    #: media path: "auto" (WebRTC, then the WebSocket fallback after ``webrtc_timeout_s``), "webrtc", "websocket"
    transport = traitlets.Enum(["auto", "webrtc", "websocket"], "auto").tag(sync=True)
    webrtc_timeout_s = traitlets.Float(5.0).tag(sync=True)
    #: how WebRTC carries the mic and the returned audio: "rtp" (Opus media tracks), "datachannel" (pcm16 on the
    #: unreliable ``rm-audio`` data channel, played from the widget's own buffer: lowest latency on loopback/LAN)
    #: or "auto" (the data channel when the kernel is on the browser's machine: ``loopback_only`` or a page
    #: served from localhost; RTP otherwise)
    audio_transport = traitlets.Enum(["auto", "rtp", "datachannel"], "auto").tag(sync=True)
    #: the browser's RTCPeerConnection ``iceTransportPolicy``: "all", or "relay" (TURN only)
    ice_transport_policy = traitlets.Enum(["all", "relay"], "all").tag(sync=True)
    #: WebSocket media formats: audio "auto" (Opus via WebCodecs if the browser has it, else pcm16), "opus",
    #: "pcm16" (at ``ws_pcm_rate`` Hz, 16000..48000); video "jpeg" or "webp" at most ``ws_max_fps``
    ws_audio_codec = traitlets.Enum(["auto", "opus", "pcm16"], "auto").tag(sync=True)
    ws_pcm_rate = traitlets.Int(48000).tag(sync=True)
    ws_video_codec = traitlets.Enum(["jpeg", "webp"], "jpeg").tag(sync=True)
    ws_max_fps = traitlets.Float(10.0).tag(sync=True)
    #: ``jitterBufferTarget`` (ms) set on the browser's receivers; None keeps the browser's adaptive default.
    #: With ``audio_transport="datachannel"``: the starting margin of the widget's playout buffer (None: 0)
    jitter_buffer_ms = traitlets.Float(None, allow_none=True).tag(sync=True)
    #: extra getUserMedia constraints (MediaTrackConstraints), e.g. ``{"sampleRate": 16000}``,
    #: ``{"width": 640, "height": 480, "frameRate": 15}``, ``{"deviceId": "..."}``
    audio_constraints = traitlets.Dict().tag(sync=True)
    #: a media file (its bytes, sent once as a binary buffer) the browser plays and streams instead of the
    #: mic/camera; ``media_file_type`` is its MIME type (``audio/wav``, ``video/mp4``...)
    media_file = traitlets.Bytes(b"").tag(sync=True)
    media_file_type = traitlets.Unicode("").tag(sync=True)
    video_constraints = traitlets.Dict().tag(sync=True)
    #: an actionable error found on the kernel side (e.g. the server extension is not loaded)
    error = traitlets.Unicode("").tag(sync=True)
    closed = traitlets.Bool(False).tag(sync=True)

    # browser -> kernel
    state = traitlets.Unicode("idle").tag(sync=True)
    browser_error = traitlets.Unicode("").tag(sync=True)
    browser_stats = traitlets.Dict().tag(sync=True)
    host = traitlets.Unicode("").tag(sync=True)
    #: the media path in use ("webrtc" | "websocket", "" before media flows) and why
    path = traitlets.Unicode("").tag(sync=True)
    path_reason = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._close_hooks: list[Callable[[], None]] = []
        #: Called for every browser (re)connect to get fresh ICE servers (short-lived TURN credentials);
        #: None: the browser uses the ``ice_servers`` trait as set.
        self.ice_servers_fn: Callable[[], list[dict[str, Any]]] | None = None
        self.on_msg(self._on_browser_msg)

    def _on_browser_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("kind") != "ice_request":
            return
        servers = list(self.ice_servers)
        if self.ice_servers_fn is not None:
            try:
                servers = self.ice_servers_fn()
            except Exception as exc:  # noqa: BLE001 - the browser falls back to the servers it has
                self.send({"kind": "ice_servers", "id": content.get("id"), "servers": servers, "error": repr(exc)})
                return
            self.ice_servers = servers
        self.send({"kind": "ice_servers", "id": content.get("id"), "servers": servers})

    def on_close(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` once when the widget is closed (``widget.close()``)."""
        self._close_hooks.append(hook)

    def send_plot(self, png: bytes, **info: Any) -> None:
        """Show ``png`` in the widget's plot area (a binary buffer, not base64)."""
        self.send({"kind": "plot", **info}, buffers=[png])

    def send_plot_data(self, message: dict[str, Any], buffers: list[bytes]) -> None:
        """Draw a plot from data in the widget (:meth:`~remotemedia_nbrtc.display.live.LivePlot.render_data`)."""
        self.send({"kind": "plot-data", **message}, buffers=buffers)

    def close(self) -> None:
        hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            hook()
        super().close()
