"""Settings of the kernel-side peers, as plain dataclasses: importing this module does not import aiortc.

:class:`IceConfig` (ICE servers and gathering limits; :func:`.ice.rtc_configuration` turns it into
aiortc's ``RTCConfiguration``) and :class:`PeerConfig` (one server peer). What aiortc can and cannot
do with these settings is described in :mod:`.ice`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .stagetrace import trace_from_env

__all__ = ["PACING_MODES", "CredentialsFn", "IceConfig", "PeerConfig"]

PACING_MODES = ("immediate", "smooth")
"""``PeerConfig.audio_out_pacing`` values (see :class:`~.tracks.PipelineAudioTrack`)."""

CredentialsFn = Callable[[], dict[str, Any]]


@dataclass
class IceConfig:
    """ICE servers for our peer and for browsers, and gathering limits.

    ``ice_servers`` / ``browser_ice_servers`` use the browser's ``RTCIceServer`` shape:
    ``{"urls": str | list[str], "username"?: str, "credential"?: str}``, for example
    ``{"urls": "turns:turn.example.org:443?transport=tcp", "username": "u", "credential": "p"}``.
    ``browser_ice_servers=None`` sends browsers the same list. ``credentials`` (optional) returns fresh
    TURN credentials ``{"username": ..., "credential": ...}``; they are applied to every TURN entry
    each time a configuration is built. ``transport_policy``: ``"all"`` or ``"relay"`` (TURN relay
    candidates only, for our own peer; the browser's policy is the widget's ``ice_transport_policy``).
    """

    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    browser_ice_servers: list[dict[str, Any]] | None = None
    credentials: CredentialsFn | None = None
    loopback_only: bool = False
    gather_timeout_s: float = 2.0
    transport_policy: str = "all"

    def __post_init__(self) -> None:
        if self.transport_policy not in ("all", "relay"):
            raise ValueError(f"transport_policy must be 'all' or 'relay', not {self.transport_policy!r}")

    def _with_credentials(self, servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.credentials is None:
            return [dict(s) for s in servers]
        creds = self.credentials()
        out = []
        for server in servers:
            server = dict(server)
            urls = server.get("urls", [])
            urls = [urls] if isinstance(urls, str) else list(urls)
            if any(u.startswith(("turn:", "turns:")) for u in urls):
                server["username"] = creds.get("username", server.get("username"))
                server["credential"] = creds.get("credential", server.get("credential"))
            out.append(server)
        return out

    def server_ice_servers(self) -> list[dict[str, Any]]:
        """The list our own peer uses (empty in loopback-only mode)."""
        if self.loopback_only:
            return []
        return self._with_credentials(self.ice_servers)

    def browser_servers(self) -> list[dict[str, Any]]:
        """The ``iceServers`` list to hand to a browser's ``RTCPeerConnection``."""
        if self.loopback_only:
            return []
        servers = self.ice_servers if self.browser_ice_servers is None else self.browser_ice_servers
        return self._with_credentials(servers)


@dataclass
class PeerConfig:
    """Settings of one server peer.

    ``jitter_target_ms``: reorder wait of the audio receive buffer (None: low-latency default, adaptive).
    ``send_audio`` / ``send_video``: answer with our outgoing track on the first audio / video line the
    client can receive on. ``audio_out_rate``: sample rate of the outgoing audio track.
    ``audio_out_target_ms``: standing backlog the outgoing audio track keeps; audio that arrives late
    (after silence was sent in its place) and stays queued beyond it is trimmed and counted
    (``stats()["audio_out"]["trimmed_frames"]``); None never trims (see :class:`~.tracks.PipelineAudioTrack`).
    ``connect_timeout_s``: after the answer, close the peer if it is not connected by then.
    ``video_format``: pixel format of received video frames given to the pipeline (None: as decoded,
    normally ``yuv420p``). ``low_latency_receive=False`` keeps aiortc's own jitter buffer (about 80 ms
    more audio latency; for comparison or if the low-latency buffer misbehaves).
    ``transport``: ``"auto"`` (clients try WebRTC, then fall back to WebSocket media after
    ``webrtc_timeout_s``), ``"webrtc"`` (``media.open`` is refused) or ``"websocket"`` (``peer.offer``
    is refused, so clients go straight to WebSocket media; see :mod:`.wsmedia`).
    ``audio_ptime_ms``: add ``a=ptime:N`` to the answer's audio sections, asking the client to send N ms
    Opus packets (None: the client's default, 20 ms). 10 halves the time the browser spends filling a
    packet before it sends it (an onset waits 0-10 ms instead of 0-20 ms), for twice the packets.
    ``audio_out_frame_ms`` (20 or 10): duration of the frames and Opus packets of our outgoing audio.
    ``audio_out_pacing``: ``"immediate"`` sends each outgoing frame as soon as the pipeline has delivered
    it (lowest latency; the frames leave as irregularly as they arrive), ``"smooth"`` on a regular grid
    locked to the audio's arrival (a browser's adaptive jitter buffer then stays short; costs the client
    the wait for the slot, about 1-3 ms on loopback); see :class:`~.tracks.PipelineAudioTrack`.
    :func:`remotemedia_nbrtc.stream` (the browser widget) uses 10 / 10 / ``"smooth"``.
    ``stage_trace``: stamp audio onsets at every stage of the path (profiling; ``stats()["trace"]``, see
    :mod:`.stagetrace`); defaults to the ``REMOTEMEDIA_STAGE_TRACE`` environment variable.
    """

    ice: IceConfig = field(default_factory=IceConfig)
    jitter_target_ms: float | None = None
    send_audio: bool = True
    send_video: bool = True
    audio_out_rate: int = 48000
    audio_out_target_ms: float | None = 0.0
    connect_timeout_s: float = 15
    video_format: str | None = None
    low_latency_receive: bool = True
    transport: str = "auto"
    webrtc_timeout_s: float = 5.0
    stage_trace: bool = field(default_factory=trace_from_env)
    audio_ptime_ms: int | None = None
    audio_out_frame_ms: int = 20
    audio_out_pacing: str = "immediate"

    def __post_init__(self) -> None:
        if self.audio_out_frame_ms not in (10, 20):
            raise ValueError(f"audio_out_frame_ms must be 10 or 20, not {self.audio_out_frame_ms!r}")
        if self.audio_out_pacing not in PACING_MODES:
            raise ValueError(f"audio_out_pacing must be one of {PACING_MODES}, not {self.audio_out_pacing!r}")
        if self.audio_ptime_ms is not None and not 10 <= self.audio_ptime_ms <= 120:
            raise ValueError(f"audio_ptime_ms must be 10-120 or None, not {self.audio_ptime_ms!r}")
        if self.transport not in ("auto", "webrtc", "websocket"):
            raise ValueError(f"transport must be 'auto', 'webrtc' or 'websocket', not {self.transport!r}")
