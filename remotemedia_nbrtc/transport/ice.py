"""ICE for the server (kernel) peer: :class:`~.config.IceConfig` applied to aiortc.

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
- **Relay-only** (``transport_policy="relay"``, aioice ``TransportPolicy.RELAY``): no host or
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
import weakref
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection

from .aiortc_internals import ice_connection
from .config import IceConfig

__all__ = ["LOOPBACK_ADDRESS", "prepare_peer_connection", "rtc_configuration"]

LOOPBACK_ADDRESS = "127.0.0.1"
#: ICE connections whose candidate gathering is already limited (a second call leaves them alone)
_prepared: weakref.WeakSet[Any] = weakref.WeakSet()


def rtc_configuration(config: IceConfig) -> RTCConfiguration:
    """aiortc's ``RTCConfiguration`` for ``config`` (never ``iceServers=None``, which would mean Google STUN)."""
    servers = []
    for server in config.server_ice_servers():
        if "urls" not in server:
            raise ValueError(f"ICE server entry without 'urls': {server!r}")
        servers.append(
            RTCIceServer(
                urls=server["urls"],
                username=server.get("username"),
                credential=server.get("credential"),
            )
        )
    policy = RTCIceTransportPolicy.RELAY if config.transport_policy == "relay" else RTCIceTransportPolicy.ALL
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
        connection = ice_connection(gatherer)
        if connection in _prepared:
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
        _prepared.add(connection)
