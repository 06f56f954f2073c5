"""ICE configuration for the server (kernel) peer and for browsers.

What aiortc 1.16 / aioice 0.13 can and cannot do (read from their source):

- **One STUN and one TURN server.** ``aiortc.rtcicetransport.connection_kwargs`` keeps only the first
  ``stun:`` URL and the first usable ``turn:``/``turns:`` URL; the rest of the list is ignored.
  ``stuns:`` is not supported. Only ``credentialType="password"`` TURN credentials are used.
- **TURN over TLS works** for ``turns:host:443?transport=tcp`` (aioice ``turn.create_turn_endpoint``
  with ``ssl=True`` over TCP). ``turns:`` over UDP (DTLS) is skipped. ``turn:...?transport=tcp`` works.
  The TLS certificate **is verified** with Python's default context (``ssl.create_default_context()``:
  system CAs, hostname/IP match); aiortc has no option for another CA or for skipping verification. A
  self-signed or private-CA TURN certificate therefore needs ``SSL_CERT_FILE=<ca.pem>`` in the kernel's
  environment (OpenSSL reads it whenever a default context is made), or a certificate from a public CA.
  A failed verification is silent: that connection simply gathers no relay candidate.
  Checked against a real coturn on 127.0.0.1 (``tests/transport/test_turn_relay.py``): relay over
  ``turn:?transport=udp``, ``turn:?transport=tcp`` and ``turns:?transport=tcp`` (verified self-signed cert).
- **Relay-only** (``transport_policy="relay"``, aioice ``TransportPolicy.RELAY``; needs aiortc 1.16,
  so Python 3.11 -- aiortc 1.15 on Python 3.10 raises ``ValueError`` for it): no host or
  server-reflexive candidates are gathered, and remote host/srflx candidates are still paired (aioice
  only drops remote mDNS candidates), so a relay-only peer can reach a peer's host candidate through its
  own relay.
- **No trickle of local candidates.** ``setLocalDescription`` gathers every candidate before it returns,
  so they are all in the answer SDP. Remote candidates may be trickled (``addIceCandidate``).
- **Gathering stalls on an unreachable STUN/TURN server**: aioice waits up to 5 s per component
  (``get_component_candidates(timeout=5)``). :func:`prepare_peer_connection` bounds that per connection
  with ``IceConfig.gather_timeout_s``.
- **No ICE restarts**: aiortc ignores ``iceRestart``; a new offer with new credentials needs a new peer.
- No ICE-TCP host candidates; IPv6 host candidates are offered when present. ``iceServers=None`` in an
  ``RTCConfiguration`` means Google's public STUN server; we always pass an explicit list.

- **No loopback host candidate**: aioice's ``get_host_addresses`` leaves out 127.0.0.1 and ::1, so on a
  machine whose only interface is ``lo`` (offline laptop, container, ``unshare -n``) it offers *no*
  candidate at all and ICE can never connect, even with a browser that offers 127.0.0.1 (Chrome with
  ``--allow-loopback-in-peer-connection``; Firefox's ``media.peerconnection.ice.loopback`` is untested). Every
  prepared connection then gathers a 127.0.0.1 host candidate instead (only when there is no other
  address: a 127.0.0.1 candidate sent to a browser on another machine would point at that machine).

Loopback-only mode (tests, hermetic CI) limits host candidates to 127.0.0.1 *per connection*: it
replaces ``get_component_candidates`` on each gatherer's own aioice ``Connection`` instance, so other
aiortc users in the process are untouched and nothing is patched at import. The same per-connection hook
adds the loopback candidate when the host has no other address.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

try:  # aiortc >= 1.16; 1.15 (the last release for Python 3.10) has no ICE transport policy
    from aiortc import RTCIceTransportPolicy
except ImportError:  # pragma: no cover - aiortc 1.15
    RTCIceTransportPolicy = None  # type: ignore[assignment,misc]

__all__ = ["LOOPBACK_ADDRESS", "IceConfig", "prepare_peer_connection"]

LOOPBACK_ADDRESS = "127.0.0.1"
_PATCHED_FLAG = "_remotemedia_ice_prepared"

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

    def to_rtc_configuration(self) -> RTCConfiguration:
        """An aiortc ``RTCConfiguration`` (never ``iceServers=None``, which would mean Google STUN)."""
        servers = []
        for server in self.server_ice_servers():
            if "urls" not in server:
                raise ValueError(f"ICE server entry without 'urls': {server!r}")
            servers.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
        if RTCIceTransportPolicy is None:
            if self.transport_policy == "relay":
                raise ValueError('transport_policy="relay" needs aiortc >= 1.16 (and so Python >= 3.11)')
            return RTCConfiguration(iceServers=servers)
        policy = RTCIceTransportPolicy.RELAY if self.transport_policy == "relay" else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def _gatherers(pc: RTCPeerConnection) -> list[Any]:
    gatherers = []
    for transceiver in pc.getTransceivers():
        gatherers.append(transceiver.receiver.transport.transport.iceGatherer)
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    return gatherers


def prepare_peer_connection(pc: RTCPeerConnection, config: IceConfig) -> None:
    """Apply ``config``'s gathering limits to every ICE gatherer ``pc`` has now.

    Call it after transceivers / data channels / the remote description are added and before
    ``setLocalDescription`` (which gathers). Safe to call more than once.
    """
    for gatherer in _gatherers(pc):
        connection = gatherer._connection
        if getattr(connection, _PATCHED_FLAG, False):
            continue
        original = connection.get_component_candidates  # bound method of this instance only

        @functools.wraps(original)
        async def get_component_candidates(
            component: int,
            addresses: list[str],
            timeout: Any = None,
            *,
            _orig: Any = original,
            # relay-only gathers no host candidates: loopback-only must not add one back
            _loopback: bool = config.loopback_only and config.transport_policy != "relay",
            _host: bool = config.transport_policy != "relay",
            _timeout: float = config.gather_timeout_s,
        ) -> Any:
            if _loopback or (not addresses and _host):
                addresses = [LOOPBACK_ADDRESS]
            return await _orig(component=component, addresses=addresses, timeout=_timeout)

        connection.get_component_candidates = get_component_candidates
        setattr(connection, _PATCHED_FLAG, True)
