"""SignalingEndpoint: the server side of one signaling connection (one browser / client WebSocket).

Transport-agnostic: give it a ``send(text)`` callable and feed it each received text message with
``await handle_message(text)``. It runs on the RTC loop (the loop ServerPeer lives on); messages of
one connection are handled strictly in order, replies and notifications leave in order.

Implements RemoteMedia's server-processed mode (reference §4.1): ``peer.announce`` first, then
``peer.offer`` to ``remotemedia-server`` answered in the RPC result, trickle ICE both ways,
``peer.state_change`` notifications, ``control.*`` on the peer's pipeline session. Offers, answers,
candidates and disconnects addressed to other announced peers of the same :class:`PeerRegistry`
are relayed; unknown peers get -32000.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from remotemedia_nbrtc.errors import SignalingError
from remotemedia_nbrtc.protocol.jsonrpc import (
    DEFAULT_MAX_MESSAGE_BYTES,
    SERVER_PEER_ID,
    ErrorCode,
    Method,
    Notification,
    error_message,
    notification,
    result_message,
)
from remotemedia_nbrtc.runtime.data import (
    AudioData,
    BinaryData,
    ErrorData,
    JsonData,
    RuntimeData,
    TextData,
    VideoData,
)
from remotemedia_nbrtc.runtime.runner import PipelineRunner, PipelineSource
from remotemedia_nbrtc.runtime.session import StreamSession

from . import signaling as rpc
from .config import PeerConfig
from .loop_thread import pipeline_loop
from .media_peer import WebRTCPeer, is_webrtc_peer

if TYPE_CHECKING:  # wsmedia imports av and aiortc: loaded only when media.open is called
    from .wsmedia import WebSocketMediaPeer

__all__ = ["PeerRegistry", "SignalingEndpoint"]

log = logging.getLogger(__name__)

SendFn = Callable[[str], "Awaitable[None] | None"]
SendBinaryFn = Callable[[bytes], "Awaitable[None] | None"]
PeerFactory = Callable[..., Awaitable[WebRTCPeer]]

MAX_PENDING_CANDIDATES = 512
MAX_QUEUED_EVENTS = 256  # control.event notifications waiting for the socket; more are dropped (counted)
_SYSTEM_TOPIC = "__system__"


@dataclass
class _PeerEntry:
    peer_id: str
    capabilities: list[str]
    metadata: Any
    connected_at: float
    endpoint: SignalingEndpoint
    address: str | None = None


@dataclass
class PeerRegistry:
    """The announced peers of one server, shared by all its endpoints.

    ``max_sessions`` bounds the live pipeline sessions (-32001); an announced peer that has not
    offered yet does not take one. Peers without a session are bounded separately, so announcing
    alone cannot exhaust the server: at most ``max_idle_per_address`` per client address and
    ``max_idle`` in all (-32001 as well; ``None``: 4 x ``max_sessions``, at least 16).
    """

    max_sessions: int = 10
    max_idle_per_address: int = 8
    max_idle: int | None = None
    _peers: dict[str, _PeerEntry] = field(default_factory=dict)
    _sessions: set[str] = field(default_factory=set)

    def add(self, entry: _PeerEntry) -> None:
        if entry.peer_id in self._peers or entry.peer_id == SERVER_PEER_ID:
            raise rpc.RpcError(
                ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"peer id {entry.peer_id!r} is taken"}
            )
        idle = [e for pid, e in self._peers.items() if pid not in self._sessions]
        max_idle = self.max_idle if self.max_idle is not None else max(16, 4 * self.max_sessions)
        if len(idle) >= max_idle:
            raise rpc.RpcError(
                ErrorCode.SESSION_LIMIT, "Too many peers waiting to offer", {"max_idle": max_idle}
            )
        if entry.address is not None:
            same = sum(1 for e in idle if e.address == entry.address)
            if same >= self.max_idle_per_address:
                raise rpc.RpcError(
                    ErrorCode.SESSION_LIMIT,
                    "Too many peers waiting to offer from this address",
                    {"max_idle_per_address": self.max_idle_per_address},
                )
        self._peers[entry.peer_id] = entry

    def remove(self, peer_id: str) -> None:
        self._peers.pop(peer_id, None)
        self._sessions.discard(peer_id)

    def get(self, peer_id: str) -> _PeerEntry | None:
        return self._peers.get(peer_id)

    def others(self, peer_id: str | None) -> list[_PeerEntry]:
        return [e for pid, e in self._peers.items() if pid != peer_id]

    def __len__(self) -> int:
        return len(self._peers)

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def acquire_session(self, peer_id: str) -> None:
        if peer_id not in self._sessions and len(self._sessions) >= self.max_sessions:
            raise rpc.RpcError(ErrorCode.SESSION_LIMIT, "Session limit reached", {"max_sessions": self.max_sessions})
        self._sessions.add(peer_id)

    def release_session(self, peer_id: str) -> None:
        self._sessions.discard(peer_id)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "peer_id": e.peer_id,
                "capabilities": e.capabilities,
                "metadata": e.metadata,
                "connected_at": e.connected_at,
            }
            for e in self._peers.values()
        ]


async def _default_peer_factory(pipeline: PipelineSource, config: PeerConfig, **kwargs: Any) -> WebRTCPeer:
    from .peer import ServerPeer  # imported lazily: aiortc only when a peer is made

    return await ServerPeer.create(pipeline, config, **kwargs)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Subscription:
    topic: str
    node: str
    include_audio: bool
    removers: list[Callable[[], None]] = field(default_factory=list)


class SignalingEndpoint:
    """JSON-RPC signaling for one connection; owns at most one ServerPeer (one pipeline session).

    ``send`` delivers one text message to the client (plain function or coroutine function).
    ``pipeline``, ``peer_config`` (None: the defaults) and ``runner`` are handed to ``ServerPeer.create``
    on each offer.
    ``registry`` is shared by the endpoints of one server (a private one is made if omitted).
    ``on_close`` is called once when the endpoint closes (e.g. to close the WebSocket).
    ``offer_timeout_s`` (optional) closes the connection, after a -32006 notice, when it has no live
    session that long after it opened or its last session ended (a peer that announces and never offers).
    ``client_address`` feeds the registry's per-address limit; ``max_announces`` bounds the
    ``peer.announce`` attempts of one connection (more close it).
    """

    def __init__(
        self,
        send: SendFn,
        pipeline: PipelineSource,
        peer_config: PeerConfig | None,
        *,
        runner: PipelineRunner | None = None,
        server_peer_id: str = SERVER_PEER_ID,
        registry: PeerRegistry | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        server_info: dict[str, Any] | None = None,
        peer_factory: PeerFactory | None = None,
        on_close: Callable[[], Any] | None = None,
        offer_timeout_s: float | None = None,
        client_address: str | None = None,
        max_announces: int = 3,
    ) -> None:
        self._send = send
        self.offer_timeout_s = offer_timeout_s
        self.client_address = client_address
        self.max_announces = max_announces
        self._announces = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._pipeline = pipeline
        self._peer_config = peer_config if peer_config is not None else PeerConfig()
        self._runner = runner
        self.server_peer_id = server_peer_id
        self.registry = registry if registry is not None else PeerRegistry()
        self.max_message_bytes = max_message_bytes
        self._server_info = server_info
        self._peer_factory = peer_factory or _default_peer_factory
        self._on_close = on_close
        self._send_binary: SendBinaryFn | None = None
        self._binary_refusals = 0
        self.peer_id: str | None = None
        self.server_peer: WebRTCPeer | WebSocketMediaPeer | None = None
        self._generation = 0
        self._pending_candidates: list[dict[str, Any] | None] = []
        self._holding_notifications = False
        self._held: list[str] = []
        self._subscriptions: dict[str, _Subscription] = {}
        self._handle_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued_events = 0
        self.events_dropped = 0
        self.closed = False
        self._handlers: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]] = {
            Method.PEER_ANNOUNCE: self._announce,
            Method.PEER_OFFER: self._offer,
            Method.PEER_ANSWER: self._answer,
            Method.PEER_ICE_CANDIDATE: self._ice_candidate,
            Method.PEER_DISCONNECT: self._disconnect,
            Method.PEER_LIST: self._list,
            Method.LIST_PEERS: self._list,
            Method.SERVER_INFO: self._server_info_result,
            Method.SESSION_INFO: self._session_info,
            Method.CONTROL_SUBSCRIBE: self._subscribe,
            Method.CONTROL_UNSUBSCRIBE: self._unsubscribe,
            Method.CONTROL_PUBLISH: self._publish,
            Method.CONTROL_SET_NODE_STATE: self._set_node_state,
            Method.CONTROL_FLUSH_AUDIO: self._flush_audio,
            Method.MEDIA_OPEN: self._media_open,
            Method.MEDIA_CLOSE: self._media_close,
            Method.MEDIA_SEND: self._media_send,
            Method.MEDIA_STATS: self._media_stats,
        }
        self._arm_idle_timer()

    # -- public ----------------------------------------------------------------------------
    def set_binary_sender(self, send_binary: SendBinaryFn) -> None:
        """How to send a binary frame to this client (enables the WebSocket media fallback)."""
        self._send_binary = send_binary

    def handle_binary(self, frame: bytes) -> None:
        """One binary frame from the client: WebSocket media (see :mod:`.wsmedia`). Never blocks."""
        if self.closed:
            return
        peer = self.server_peer
        if peer is not None and peer.transport_path == "websocket":
            peer.on_frame(frame)
            return
        self._binary_refusals += 1
        if self._binary_refusals == 1:  # one error, not one per media frame
            reason = {"reason": "binary frames carry WebSocket media: call media.open first"}
            self._post(error_message(None, ErrorCode.INVALID_REQUEST, "Invalid Request", reason))

    @property
    def transport_path(self) -> str | None:
        """``"webrtc"`` or ``"websocket"`` while a peer serves this connection, else ``None``."""
        return None if self.server_peer is None else self.server_peer.transport_path

    @property
    def session(self) -> StreamSession | None:
        """The pipeline session of the current peer (lives on the pipeline loop), or None."""
        return None if self.server_peer is None else self.server_peer.session

    async def handle_message(self, text: str | bytes) -> None:
        """Handle one client message and send its reply (if any). Never raises for bad input."""
        self._loop = asyncio.get_running_loop()
        async with self._handle_lock:
            if self.closed:
                return
            reply = await self._process(text)
            if reply is not None:
                await self._emit(reply)
            if self._held:
                held, self._held = self._held, []
                for message in held:
                    await self._emit(message)

    async def close(self, reason: str = "closed") -> None:
        """Close the ServerPeer (and its session), leave the registry, call ``on_close``. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._cancel_idle_timer()
        await self._close_server_peer()
        self._leave_registry()
        current = asyncio.current_task()  # close() may run in one of our own tasks (idle timeout)
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._on_close is not None:
            try:
                result = self._on_close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.debug("on_close hook failed", exc_info=True)

    def notify(self, method: Notification, params: dict[str, Any]) -> None:
        """Queue a notification to this client (callable from the endpoint's loop only)."""
        self._post(notification(method, params))

    # -- plumbing --------------------------------------------------------------------------
    async def _process(self, text: str | bytes) -> str | None:
        request_id: Any = None
        try:
            request = rpc.parse_message(text, max_bytes=self.max_message_bytes)
            request_id = request.id
            if request.method != Method.PEER_ANNOUNCE and self.peer_id is None:
                raise rpc.RpcError(
                    ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "peer.announce must come first"}
                )
            result = await self._handlers[request.method](request.params)
        except rpc.RpcError as exc:
            if exc.request_id is None:
                exc.request_id = request_id
            return exc.to_message()
        except SignalingError as exc:
            return error_message(request_id, exc.code, exc.message, exc.data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("signaling request failed")
            return error_message(
                request_id, ErrorCode.INTERNAL_ERROR, "Internal error", {"reason": str(exc) or repr(exc)}
            )
        if request.is_notification:
            return None
        return result_message(request.id, result)

    async def _emit(self, text: str) -> None:
        async with self._send_lock:
            try:
                result = self._send(text)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - the socket went away; close() follows from the transport
                log.debug("signaling send failed: %r", exc)

    def _post(self, text: str) -> None:
        if self.closed:
            return
        if self._holding_notifications:
            self._held.append(text)
            return
        self._spawn(self._emit(text))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _leave_registry(self) -> None:
        if self.peer_id is None:
            return
        peer_id, self.peer_id = self.peer_id, None
        entry = self.registry.get(peer_id)
        if entry is not None and entry.endpoint is self:
            self.registry.remove(peer_id)
            for other in self.registry.others(peer_id):
                other.endpoint.notify(Notification.PEER_LEFT, {"peer_id": peer_id})

    def _arm_idle_timer(self) -> None:
        """Start the no-session countdown (needs a running loop; without one there is no timeout)."""
        if not self.offer_timeout_s or self.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._cancel_idle_timer()
        self._idle_timer = loop.call_later(self.offer_timeout_s, lambda: self._spawn(self._idle_timeout()))

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def _idle_timeout(self) -> None:
        if self.closed or self.server_peer is not None:
            return
        log.info("closing signaling connection of %r: no session within %.3g s", self.peer_id, self.offer_timeout_s)
        reason = {"reason": f"no peer.offer or media.open within {self.offer_timeout_s:g} s",
                  "timeout_s": self.offer_timeout_s}
        await self._emit(error_message(None, ErrorCode.CONNECTION_TIMEOUT, "Connection timeout", reason))
        await self.close("offer timeout")

    # -- peer.* ----------------------------------------------------------------------------
    async def _announce(self, params: dict[str, Any]) -> dict[str, Any]:
        self._announces += 1
        if self._announces > self.max_announces:
            self._spawn(self.close("too many announces"))
            raise rpc.RpcError(
                ErrorCode.INVALID_REQUEST,
                "Invalid Request",
                {"reason": f"more than {self.max_announces} peer.announce on one connection: closing it"},
            )
        if self.peer_id is not None:
            raise rpc.RpcError(
                ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"already announced as {self.peer_id!r}"}
            )
        peer_id = params["peer_id"]
        capabilities = list(params.get("capabilities") or [])
        metadata = params.get("user_data")
        self.registry.add(_PeerEntry(peer_id, capabilities, metadata, time.time(), self, self.client_address))
        self.peer_id = peer_id
        others = self.registry.others(peer_id)
        for other in others:
            other.endpoint.notify(
                Notification.PEER_JOINED, {"peer_id": peer_id, "capabilities": capabilities, "metadata": metadata}
            )
        return {
            "success": True,
            "peer_id": peer_id,
            "peers_count": len(self.registry),
            "other_peers": [e.peer_id for e in others],
        }

    def _relay_target(self, to: str) -> _PeerEntry:
        entry = self.registry.get(to)
        if entry is None or entry.endpoint is self:
            raise rpc.RpcError(ErrorCode.PEER_NOT_FOUND, "Peer not found", {"peer_id": to})
        return entry

    async def _offer(self, params: dict[str, Any]) -> dict[str, Any]:
        to, sdp = params["to"], params["sdp"]
        if to != self.server_peer_id:
            target = self._relay_target(to)
            rpc.validate_sdp(sdp, code=ErrorCode.OFFER_INVALID)
            target.endpoint.notify(Notification.PEER_OFFER, {"from": self.peer_id, "to": to, "sdp": sdp})
            return {"success": True, "to_peer_id": to}
        try:
            rpc.validate_sdp(sdp, code=ErrorCode.OFFER_INVALID)
            rpc.validate_dtls_fingerprints(sdp, code=ErrorCode.OFFER_INVALID)
        except rpc.RpcError as exc:
            log.warning("rejected offer from peer %r: %s", self.peer_id, (exc.data or {}).get("reason"))
            raise
        assert self.peer_id is not None
        if self._transport_setting() == "websocket":
            raise rpc.RpcError(
                ErrorCode.INVALID_REQUEST,
                "Invalid Request",
                {"reason": "this session is set to transport='websocket': use media.open", "transport": "websocket"},
            )
        await self._close_server_peer()  # a new offer replaces the existing ServerPeer (or WebSocket media)
        self.registry.acquire_session(self.peer_id)
        self._generation += 1
        generation = self._generation
        self._holding_notifications = True  # server candidates must not overtake the answer
        try:
            try:
                peer = await self._peer_factory(
                    self._pipeline,
                    self._peer_config,
                    on_ice_candidate=lambda c: self._on_local_candidate(generation, c),
                    on_state_change=lambda s: self._on_state_change(generation, s),
                    runner=self._runner,
                )
            except BaseException:
                self.registry.release_session(self.peer_id)
                raise
            self.server_peer = peer
            self._cancel_idle_timer()
            try:
                answer = await peer.handle_offer(sdp)
                pending, self._pending_candidates = self._pending_candidates, []
                for candidate in pending:
                    await self._apply_candidate(peer, candidate)
            except BaseException:
                self._held.clear()
                await self._close_server_peer()
                raise
            await self._install_taps()
        finally:
            self._holding_notifications = False
        return {"type": "answer", "sdp": answer, "from": self.server_peer_id, "to": self.peer_id}

    async def _answer(self, params: dict[str, Any]) -> dict[str, Any]:
        to = params["to"]
        if to == self.server_peer_id:
            raise rpc.RpcError(
                ErrorCode.ANSWER_INVALID, "Invalid SDP answer", {"reason": "the server never sends offers"}
            )
        target = self._relay_target(to)
        rpc.validate_sdp(params["sdp"], code=ErrorCode.ANSWER_INVALID)
        target.endpoint.notify(Notification.PEER_ANSWER, {"from": self.peer_id, "to": to, "sdp": params["sdp"]})
        return {"success": True, "to_peer_id": to}

    async def _ice_candidate(self, params: dict[str, Any]) -> dict[str, Any]:
        to = params["to"]
        candidate = rpc.normalize_candidate(params)
        if to != self.server_peer_id:
            target = self._relay_target(to)
            target.endpoint.notify(Notification.PEER_ICE_CANDIDATE, {**params, "from": self.peer_id})
            return {"success": True, "to_peer_id": to}
        if self.server_peer is None:
            if len(self._pending_candidates) >= MAX_PENDING_CANDIDATES:
                raise rpc.RpcError(
                    ErrorCode.ICE_INVALID,
                    "Too many ICE candidates before the offer",
                    {"reason": f"at most {MAX_PENDING_CANDIDATES} are queued"},
                )
            self._pending_candidates.append(candidate)
            return {"success": True, "to_peer_id": to, "buffered": True}
        await self._apply_candidate(self.server_peer, candidate)
        # upstream's answer for an applied candidate; it adds buffered=false only when it drops one
        return {"success": True, "to_peer_id": to}

    async def _apply_candidate(self, peer: WebRTCPeer | WebSocketMediaPeer, candidate: dict[str, Any] | None) -> None:
        if not is_webrtc_peer(peer):
            raise rpc.RpcError(
                ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": "this session uses WebSocket media"}
            )
        try:
            await peer.add_ice_candidate(candidate)
        except SignalingError:
            raise
        except Exception as exc:
            raise rpc.RpcError(
                ErrorCode.ICE_INVALID, "Invalid ICE candidate", {"reason": str(exc) or repr(exc)}
            ) from exc

    async def _disconnect(self, params: dict[str, Any]) -> dict[str, Any]:
        peer_id = params["peer_id"]
        if peer_id in (self.peer_id, self.server_peer_id):
            had_peer = self.server_peer is not None
            await self._close_server_peer()
            if had_peer:
                closed = {"peer_id": self.peer_id, "connection_state": "closed", "timestamp": _now_ms()}
                self.notify(Notification.PEER_STATE_CHANGE, closed)
            return {"success": True, "peer_id": peer_id}
        target = self._relay_target(peer_id)
        disconnected = {"peer_id": self.peer_id, "reason": params.get("reason")}
        target.endpoint.notify(Notification.PEER_DISCONNECTED, disconnected)
        return {"success": True, "peer_id": peer_id}

    async def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        peers = self.registry.describe()
        return {"peers": peers, "count": len(peers)}

    async def _server_info_result(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._server_info is not None:
            return dict(self._server_info)
        return {"addresses": [{"ip": "127.0.0.1", "is_default": True}], "hostname": socket.gethostname()}

    async def _session_info(self, params: dict[str, Any]) -> dict[str, Any]:
        browser_servers = self._peer_config.ice.browser_servers()
        session = self.session
        peer = self.server_peer
        from ..protocol.media_frames import HEADER_BYTES
        from .wsmedia import AUDIO_CODECS, VIDEO_CODECS

        transport = self._transport_setting()
        return {
            "peer_id": self.peer_id,
            "server_peer_id": self.server_peer_id,
            "session_id": None if peer is None else peer.session_id,
            "connection_state": None if peer is None else peer.connection_state,
            "transport": {
                "setting": transport,
                "active": self.transport_path,
                "webrtc_timeout_s": self._peer_config.webrtc_timeout_s,
                "websocket_media": None if transport == "webrtc" or self._send_binary is None else {
                    "version": 1,
                    "audio_codecs": list(AUDIO_CODECS),
                    "video_codecs": list(VIDEO_CODECS),
                    "header_bytes": HEADER_BYTES,
                    "max_frame_bytes": self.max_message_bytes,
                },
            },
            "nodes": [] if session is None else list(session.node_ids),
            "ice_servers": browser_servers,
            "limits": {
                "max_message_bytes": self.max_message_bytes,
                "max_sessions": self.registry.max_sessions,
                "max_pending_candidates": MAX_PENDING_CANDIDATES,
            },
        }

    # -- ServerPeer callbacks (on the RTC loop) ---------------------------------------------
    def _on_local_candidate(self, generation: int, candidate: dict[str, Any] | None) -> None:
        if generation != self._generation or self.peer_id is None:
            return
        params = rpc.ice_candidate_params(candidate, from_id=self.server_peer_id, to_id=self.peer_id)
        self._post(notification(Notification.PEER_ICE_CANDIDATE, params))

    def _on_state_change(self, generation: int, state: str) -> None:
        if generation != self._generation or self.peer_id is None:
            return
        changed = {"peer_id": self.peer_id, "connection_state": state, "timestamp": _now_ms()}
        self.notify(Notification.PEER_STATE_CHANGE, changed)
        if state in ("failed", "closed"):  # timed out or dropped: release the peer and its session
            self._spawn(self._close_server_peer(generation))
        if _SYSTEM_TOPIC in {s.node for s in self._subscriptions.values()}:
            event = {
                "topic": f"{_SYSTEM_TOPIC}.out",
                "kind": "json",
                "ts": _now_ms(),
                "payload": {"event": "connection_state", "state": state},
            }
            self.notify(Notification.CONTROL_EVENT, event)

    async def _close_server_peer(self, generation: int | None = None) -> None:
        if generation is not None and generation != self._generation:
            return
        peer, self.server_peer = self.server_peer, None
        self._generation += 1
        for sub in self._subscriptions.values():
            await self._remove_taps(sub)
        if self.peer_id is not None:
            self.registry.release_session(self.peer_id)
        if peer is not None and not self.closed:
            self._arm_idle_timer()  # idle again: the countdown restarts
        if peer is not None:
            try:
                await peer.close()
            except Exception:
                log.debug("ServerPeer.close failed", exc_info=True)

    # -- control.* -------------------------------------------------------------------------
    def _require_session(self) -> StreamSession:
        session = self.session
        if session is None:
            raise rpc.RpcError(
                ErrorCode.INVALID_REQUEST, "Invalid Request",
                {"reason": "no pipeline session yet: send peer.offer first"},
            )
        return session

    async def _on_pipeline(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return await asyncio.wrap_future(pipeline_loop().submit(coro))

    async def _subscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        topic = params["topic"]
        node, _, _port = rpc.parse_topic(topic)  # type: ignore[misc]
        session = self.session
        if session is not None and node not in ("*", _SYSTEM_TOPIC, "__perf__") and node not in session.node_ids:
            raise rpc.RpcError(
                ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"no node {node!r} in the pipeline"}
            )
        old = self._subscriptions.pop(topic, None)
        if old is not None:
            await self._remove_taps(old)
        sub = _Subscription(topic, node, bool(params.get("include_audio", False)))
        self._subscriptions[topic] = sub
        if session is not None:
            await self._add_taps(sub, session)
        return {"subscribed": True, "topic": topic}

    async def _unsubscribe(self, params: dict[str, Any]) -> dict[str, Any]:
        sub = self._subscriptions.pop(params["topic"], None)
        if sub is not None:
            await self._remove_taps(sub)
        return {"unsubscribed": sub is not None, "topic": params["topic"]}

    async def _install_taps(self) -> None:
        session = self.session
        if session is None:
            return
        for sub in self._subscriptions.values():
            await self._add_taps(sub, session)

    async def _add_taps(self, sub: _Subscription, session: StreamSession) -> None:
        if sub.node in (_SYSTEM_TOPIC, "__perf__"):
            return
        nodes = list(session.node_ids) if sub.node == "*" else [sub.node]
        if sub.node not in nodes and sub.node != "*":
            return
        loop = asyncio.get_running_loop()
        generation = self._generation

        def make_tap(node_id: str) -> Callable[[RuntimeData], None]:
            topic = f"{node_id}.out" if sub.node == "*" else sub.topic

            def tap(data: RuntimeData) -> None:  # on the pipeline loop
                event = output_event(topic, data, include_audio=sub.include_audio)
                if event is not None:
                    try:
                        loop.call_soon_threadsafe(self._deliver_event, generation, event)
                    except RuntimeError:  # endpoint loop closed
                        pass

            return tap

        async def install() -> list[Callable[[], None]]:
            return [session.add_tap(n, make_tap(n)) for n in nodes]

        sub.removers = await self._on_pipeline(install())

    async def _remove_taps(self, sub: _Subscription) -> None:
        removers, sub.removers = sub.removers, []
        if not removers:
            return

        async def remove() -> None:
            for remover in removers:
                remover()

        try:
            await self._on_pipeline(remove())
        except Exception:
            log.debug("removing taps failed", exc_info=True)

    def _deliver_event(self, generation: int, event: dict[str, Any]) -> None:
        if generation != self._generation or self.closed:
            return
        if self._queued_events >= MAX_QUEUED_EVENTS:
            self.events_dropped += 1
            return
        self._queued_events += 1

        async def send() -> None:
            try:
                await self._emit(notification(Notification.CONTROL_EVENT, event))
            finally:
                self._queued_events -= 1

        self._spawn(send())

    async def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        topic = params["topic"]
        node, _, _port = rpc.parse_topic(topic)  # type: ignore[misc]
        session = self._require_session()
        if node not in session.node_ids:
            raise rpc.RpcError(
                ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"no node {node!r} in the pipeline"}
            )
        data = payload_to_runtime_data(params["payload"])
        try:
            await asyncio.wait_for(self._on_pipeline(session.send_input(data, to_node=node)), 5.0)
        except TimeoutError:
            raise rpc.RpcError(
                ErrorCode.INTERNAL_ERROR, "Internal error", {"reason": f"node {node!r} input queue is full"}
            ) from None
        return {"published": True, "topic": topic}

    async def _set_node_state(self, params: dict[str, Any]) -> dict[str, Any]:
        session = self._require_session()
        node_id, state = params["node_id"], params["state"]
        if node_id not in session.node_ids:
            raise rpc.RpcError(
                ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": f"no node {node_id!r} in the pipeline"}
            )

        async def apply() -> None:
            session.set_node_state(node_id, state)

        await self._on_pipeline(apply())
        return {"success": True, "node_id": node_id, "state": state}

    # -- media.* (WebSocket media fallback, see .wsmedia) -------------------------------------
    def _transport_setting(self) -> str:
        return self._peer_config.transport

    async def _media_open(self, params: dict[str, Any]) -> dict[str, Any]:
        from ..protocol.media_frames import HEADER_BYTES
        from .wsmedia import WebSocketMediaPeer, negotiate

        if self._transport_setting() == "webrtc" or self._send_binary is None:
            reason = ("this session is set to transport='webrtc'" if self._send_binary is not None
                      else "this connection cannot carry binary frames")
            raise rpc.RpcError(ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": reason, "transport": "webrtc"})
        formats = negotiate(params)
        assert self.peer_id is not None
        await self._close_server_peer()  # media.open replaces a WebRTC peer or an earlier media.open
        self.registry.acquire_session(self.peer_id)
        self._generation += 1
        send_binary = self._send_binary
        try:
            peer = await WebSocketMediaPeer.create(
                self._pipeline,
                formats,
                send_text=self._emit,
                send_binary=send_binary,
                runner=self._runner,
                video_format=self._peer_config.video_format,
            )
        except BaseException:
            self.registry.release_session(self.peer_id)
            raise
        self.server_peer = peer
        self._cancel_idle_timer()
        self._binary_refusals = 0
        await self._install_taps()
        return {
            "session_id": peer.session_id,
            "accepted": formats.as_dict(),
            "header_bytes": HEADER_BYTES,
            "max_frame_bytes": self.max_message_bytes,
        }

    def _media_peer(self) -> WebSocketMediaPeer:
        peer = self.server_peer
        if peer is None or peer.transport_path != "websocket":
            raise rpc.RpcError(
                ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "no WebSocket media: media.open first"}
            )
        return peer

    async def _media_close(self, params: dict[str, Any]) -> dict[str, Any]:
        peer = self._media_peer()
        drained = await peer.drain()
        stats = peer.stats()
        await self._close_server_peer()
        return {"closed": True, "drained": drained, "stats": stats}

    async def _media_send(self, params: dict[str, Any]) -> dict[str, Any]:
        from .wire import UndecodableMessage

        try:
            self._media_peer().send_message(params["message"])
        except UndecodableMessage as exc:
            raise rpc.RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": str(exc)}) from None
        return {"sent": True}

    async def _media_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        """The kernel peer's counters, for either media path (the doctor panel shows what the kernel trimmed)."""
        if self.server_peer is None:
            raise rpc.RpcError(
                ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "no media session: offer first"}
            )
        stats: dict[str, Any] = self.server_peer.stats()
        stats.pop("trace", None)  # profiling only, and large
        return stats

    async def _flush_audio(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.server_peer is None:
            raise rpc.RpcError(
                ErrorCode.INVALID_REQUEST, "Invalid Request", {"reason": "no server peer yet: send peer.offer first"}
            )
        return {"flushed": True, "frames_dropped": self.server_peer.flush_audio()}


def payload_to_runtime_data(payload: Any) -> RuntimeData:
    """``control.publish`` payload -> RuntimeData: ``{text}``, ``{json}``, ``{binary_b64}``, a string, or JSON."""
    if isinstance(payload, str):
        return TextData(payload)
    if isinstance(payload, dict) and len(payload) >= 1:
        if isinstance(payload.get("text"), str):
            return TextData(payload["text"], channel=str(payload.get("channel", "tts")))
        if "json" in payload:
            return JsonData(payload["json"])
        if isinstance(payload.get("binary_b64"), str):
            try:
                raw = base64.b64decode(payload["binary_b64"], validate=True)
            except ValueError:
                raise rpc.RpcError(
                    ErrorCode.INVALID_PARAMS, "Invalid params", {"reason": "binary_b64 is not base64"}
                ) from None
            return BinaryData(raw, str(payload.get("mime_type", "application/octet-stream")))
    return JsonData(payload)


def output_event(topic: str, data: RuntimeData, *, include_audio: bool = False) -> dict[str, Any] | None:
    """The ``control.event`` params for one node output (``None`` for audio unless ``include_audio``)."""
    event: dict[str, Any] = {"topic": topic, "ts": _now_ms()}
    if isinstance(data, TextData):
        event.update(kind="text", payload=data.text, channel=data.channel)
    elif isinstance(data, JsonData):
        event.update(kind="json", payload=data.value)
    elif isinstance(data, BinaryData):
        event.update(kind="binary", payload={"size": len(data.data), "b64": base64.b64encode(data.data).decode()})
    elif isinstance(data, AudioData):
        if not include_audio:
            return None
        raw = np.ascontiguousarray(data.samples, dtype="<f4").tobytes()
        event.update(
            kind="audio",
            payload={
                "size": len(raw),
                "sample_rate": data.sample_rate,
                "channels": data.channels,
                "samples_b64": base64.b64encode(raw).decode(),
            },
        )
    elif isinstance(data, VideoData):
        event.update(
            kind="other",
            payload={
                "type": "video",
                "width": data.width,
                "height": data.height,
                "frame_number": data.frame_number,
                "pixel_format": data.pixel_format,
            },
        )
    elif isinstance(data, ErrorData):
        event.update(
            kind="other",
            payload={"type": "error", "node_id": data.node_id, "message": data.message, "error_type": data.error_type},
        )
    else:
        event.update(kind="other", payload={"type": data.data_type})
    return event
