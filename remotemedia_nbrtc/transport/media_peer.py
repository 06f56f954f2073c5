"""MediaPeer: what a signaling endpoint needs from the kernel-side peer of one connection.

Two classes implement it: :class:`~.peer.ServerPeer` (media over WebRTC) and
:class:`~.wsmedia.WebSocketMediaPeer` (media over the signaling WebSocket). Both live on the RTC
loop and own one :class:`StreamSession` on the pipeline loop. Importing this module does not import
aiortc.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypeGuard

from ..runtime import StreamSession

__all__ = ["MediaPeer", "WebRTCPeer", "is_webrtc_peer"]


class MediaPeer(Protocol):
    """The kernel side of one media connection, bound to one pipeline session. Call on the RTC loop."""

    session_id: str

    @property
    def transport_path(self) -> Literal["webrtc", "websocket"]:
        """Which media path this peer serves."""
        ...

    @property
    def session(self) -> StreamSession:
        """The pipeline session (lives on the pipeline loop)."""
        ...

    @property
    def connection_state(self) -> str:
        """``"connected"``, ``"closed"``, ... (the WebRTC connection state for a WebRTC peer)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and latency figures (cheap)."""
        ...

    def flush_audio(self) -> int:
        """Drop queued outbound audio (barge-in); the number of 20 ms frames dropped."""
        ...

    async def close(self) -> None:
        """Close the media path and the session. Idempotent."""
        ...


class WebRTCPeer(MediaPeer, Protocol):
    """A :class:`MediaPeer` negotiated by SDP offer/answer and trickled ICE (:class:`~.peer.ServerPeer`)."""

    @property
    def transport_path(self) -> Literal["webrtc"]:
        ...

    async def handle_offer(self, sdp: str) -> str:
        """Apply the client's offer; our answer SDP."""
        ...

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Add a remote candidate; None ends them."""
        ...


def is_webrtc_peer(peer: MediaPeer) -> TypeGuard[WebRTCPeer]:
    """Whether ``peer`` negotiates WebRTC (SDP and ICE), told by its ``transport_path``."""
    return peer.transport_path == "webrtc"
