"""Command line: ``python -m remotemedia_nbrtc serve pipeline.yaml --port 8080``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

#: Environment variables holding the TURN username and credential for ``serve`` (kept out of argv, which
#: every local user can read in ``ps``).
TURN_USERNAME_ENV = "REMOTEMEDIA_TURN_USERNAME"
TURN_CREDENTIAL_ENV = "REMOTEMEDIA_TURN_CREDENTIAL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m remotemedia_nbrtc",
        description="Stream a browser's mic/camera over WebRTC through a RemoteMedia-style pipeline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the standalone signaling + WebRTC server for a pipeline manifest",
        description="Serve a pipeline: JSON-RPC signaling on ws://HOST:PORT/ws, test page on http://HOST:PORT/.",
    )
    serve.add_argument("manifest", help="pipeline manifest (.yaml, .yml or .json)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--loopback-only", action="store_true", help="gather only 127.0.0.1 ICE candidates")
    serve.add_argument(
        "--max-sessions", type=int, default=10,
        help="concurrent pipeline sessions (default 10; peers that have not offered do not count)",
    )
    serve.add_argument(
        "--offer-timeout", type=float, default=30.0, metavar="SECONDS",
        help="close a connection that has no session this long, e.g. announced but never offered (default 30)",
    )
    serve.add_argument(
        "--token", default=None,
        help="require TOKEN: an 'Authorization: Bearer TOKEN' header (ClientPeer sends it), "
        "or ?token=TOKEN on the URL from browsers",
    )
    serve.add_argument(
        "--stun", action="append", default=[], metavar="URL",
        help=f"STUN/TURN server URL for both sides (repeatable); TURN entries take their username and credential "
             f"from ${TURN_USERNAME_ENV} / ${TURN_CREDENTIAL_ENV}",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def ice_servers_from(urls: Sequence[str], environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``RTCIceServer`` entries for ``--stun`` URLs; ``turn:``/``turns:`` ones get the TURN username and
    credential from the environment. Raises ``ValueError`` for a TURN URL without them."""
    env = os.environ if environ is None else environ
    username, credential = env.get(TURN_USERNAME_ENV), env.get(TURN_CREDENTIAL_ENV)
    servers: list[dict[str, Any]] = []
    for url in urls:
        server: dict[str, Any] = {"urls": url}
        if url.startswith(("turn:", "turns:")):
            if not username or not credential:
                raise ValueError(f"TURN server {url} needs ${TURN_USERNAME_ENV} and ${TURN_CREDENTIAL_ENV} set")
            server.update(username=username, credential=credential)
        servers.append(server)
    return servers


async def _serve(args: argparse.Namespace) -> int:
    from .errors import ManifestError
    from .runtime import load_manifest
    from .standalone.server import ServerConfig, WebRTCServer
    from .transport.config import IceConfig, PeerConfig

    try:
        pipeline = load_manifest(args.manifest)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        servers = ice_servers_from(args.stun)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ice = IceConfig(ice_servers=servers, loopback_only=args.loopback_only)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        peer=PeerConfig(ice=ice),
        max_sessions=args.max_sessions,
        auth_token=args.token,
        offer_timeout_s=args.offer_timeout or None,
    )
    server = WebRTCServer(config, pipeline)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving {pipeline.name or args.manifest!s} on {server.url}  (test page: {server.http_url})", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        code = asyncio.run(_serve(args))
        from .transport.loop_thread import shutdown_loops

        shutdown_loops()
        return code
    return 2


if __name__ == "__main__":
    sys.exit(main())
