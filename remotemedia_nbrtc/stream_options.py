"""``StreamOptions``: the rarely changed settings of :func:`~remotemedia_nbrtc.stream` (network, transport, widget).

``rm.stream(p, options=rm.StreamOptions(transport="websocket"))``; the defaults are what ``rm.stream(p)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transport.config import PeerConfig

__all__ = ["StreamOptions"]


@dataclass(frozen=True)
class StreamOptions:
    """Settings of one :func:`~remotemedia_nbrtc.stream` call beyond its common keywords."""

    #: STUN/TURN servers for the kernel's peer and the browser, e.g.
    #: ``[{"urls": "turns:turn.example.org:443?transport=tcp", "username": ..., "credential": ...}]``
    ice_servers: list[dict[str, Any]] | None = None
    #: servers for the browser only (default: ``ice_servers``)
    browser_ice_servers: list[dict[str, Any]] | None = None
    #: a full ``PeerConfig`` (e.g. with short-lived TURN ``credentials``); replaces ``ice_servers``,
    #: ``browser_ice_servers``, ``transport`` and ``webrtc_timeout_s``
    peer_config: PeerConfig | None = None
    #: ``"auto"`` tries WebRTC and falls back to WebSocket media (over the extension's authenticated
    #: signaling socket) when it has not connected within ``webrtc_timeout_s``; ``"webrtc"`` or
    #: ``"websocket"`` force one path (from ``peer_config.transport`` when a ``peer_config`` is given)
    transport: str = "auto"
    webrtc_timeout_s: float = 5.0
    #: ``"relay"``: the browser uses TURN relays only
    ice_transport_policy: str = "all"
    #: ``"rtp"`` sends the mic and the returned audio as Opus media tracks (the browser's encoder and
    #: jitter buffer: robust on any network); ``"datachannel"`` sends 16-bit PCM on an unreliable data
    #: channel and plays the returned audio from the widget's own adaptive buffer (about 6 ms less on the
    #: way in and 40 ms less on the way back; 768 kbit/s each way, no loss concealment: for loopback and
    #: LANs, see :mod:`~remotemedia_nbrtc.transport.dcaudio`); ``"auto"`` picks the data channel when the
    #: kernel is on the browser's machine (``loopback_only``, or Jupyter opened via localhost) and RTP
    #: otherwise. Pass ``"rtp"`` when localhost is an SSH tunnel to a distant server. Video stays on RTP.
    audio_transport: str = "auto"
    #: the browser receivers' ``jitterBufferTarget`` (how long returned audio/video is held before
    #: playing); ``None`` keeps the browser's adaptive default, ``"auto"`` is
    #: ``LOOPBACK_JITTER_BUFFER_MS`` with ``loopback_only`` and the browser default otherwise
    jitter_buffer_ms: float | str | None = "auto"
    #: extra ``getUserMedia`` constraints for the mic, e.g. ``{"sampleRate": 16000, "channelCount": 1}``
    #: (a device picked in the widget wins)
    audio_constraints: dict[str, Any] | None = None
    #: extra ``getUserMedia`` constraints for the camera, e.g. ``{"width": 640, "height": 480, "frameRate": 15}``
    video_constraints: dict[str, Any] | None = None
    #: the widget starts streaming as soon as it is shown (else on its start button)
    autostart: bool = True
    #: add a tiny node that echoes the widget's pings (end-to-end latency in the stats)
    latency_probe: bool = True
    #: redraws per second of the live plot
    plot_fps: float = 10.0
    #: how many outputs ``handle.outputs`` keeps
    max_outputs: int = 500
