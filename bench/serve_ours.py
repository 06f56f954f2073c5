"""The project's standalone WebRTCServer in its own process, for the bench (loopback-only ICE).

    .venv/bin/python bench/serve_ours.py bench/workloads/audio_level.yaml [--port 0]

Prints one JSON line ``{"port": N, "pid": P}`` once listening, then obeys lines on stdin:
``stats`` prints one JSON line with every live peer's ``ServerPeer.stats()``; ``quit`` (or EOF) stops.
It does what ``python -m remotemedia_nbrtc serve manifest --loopback-only`` does, and also imports
:mod:`bench_nodes` so bench-only node types resolve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

import bench_nodes  # noqa: E402,F401  (registers BenchVideoStatsNode)

from remotemedia_nbrtc.standalone.server import ServerConfig, WebRTCServer
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig


async def main(manifest: str, port: int) -> None:
    server = WebRTCServer(ServerConfig(port=port, peer=PeerConfig(ice=IceConfig(loopback_only=True))), manifest)
    bound = await server.start()
    print(json.dumps({"port": bound, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            cmd = line.strip()
            if cmd == "stats":
                stats = await loop.run_in_executor(None, server.peer_stats)
                print(json.dumps({"peers": stats}, default=repr), flush=True)
            elif cmd == "quit" or not line:
                break
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(args.manifest, args.port))
