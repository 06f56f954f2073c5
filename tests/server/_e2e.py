"""The end-to-end tests' Jupyter server: a real subprocess with the extension on a non-root base URL,
kernels in it that call ``serve(...)``, and checks of the WebSocket media fallback's results."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.errors import TransportError
from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient
from remotemedia_nbrtc.testing.jupyter import JupyterServer, KernelHandle
from tests.outputs import collect

BASE_URL = "/rm-e2e/"  # a non-root base_url, so every path must honour it
REPO = Path(__file__).resolve().parents[2]
#: the WebSocket fallback tests' pipeline
WS_NODES = ({"id": "level", "node_type": "AudioLevelNode", "params": {}},
            {"id": "spectrum", "node_type": "SpectrumNode", "params": {"bands": 12, "min_hz": 100, "max_hz": 8000}})
FRAME_US = 20_000  # ToneSource frames: 20 ms, so level results' media_ts_us step by this

SERVE_CODE = """
import json
from remotemedia_nbrtc.kernel import serve
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
{var} = serve({manifest!r}, peer_config=PeerConfig(ice=IceConfig(loopback_only=True)))
print(json.dumps({{"session_id": {var}.session_id, "ws_path": {var}.ws_path}}))
"""


def start_server(root: Path, **kwargs: Any) -> JupyterServer:
    """``jupyter server`` serving ``root`` at :data:`BASE_URL`; its kernels import this checkout."""
    env = {"JUPYTER_PLATFORM_DIRS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return JupyterServer.start(root, base_url=BASE_URL, env=env, **kwargs)


def serve_in_kernel(kernel: KernelHandle, var: str, *nodes: dict[str, Any]) -> dict[str, str]:
    """Run ``{var} = serve(<a manifest of nodes>)`` in ``kernel``; the session's ``session_id`` and ``ws_path``."""
    manifest = {"version": "v1", "metadata": {"name": "e2e"}, "nodes": list(nodes), "connections": []}
    info: dict[str, str] = json.loads(kernel.execute(SERVE_CODE.format(var=var, manifest=manifest))
                                      .strip().splitlines()[-1])
    return info


def serve_url(kernel: KernelHandle, var: str) -> str:
    """``{var} = serve(level + spectrum)`` in ``kernel``; the session's WebSocket URL."""
    return kernel.server.url(serve_in_kernel(kernel, var, *WS_NODES)["ws_path"], scheme="ws")


def levels(outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in outs if o.get("node") == "level"]


def assert_contiguous(outs: list[dict[str, Any]]) -> int:
    """Every frame up to the last result got its result, in order: nothing lost before a fault."""
    ts = [o["media_ts_us"] for o in levels(outs)]
    assert ts, "no results at all"
    steps = np.diff(ts)
    # resampling may shift a frame boundary by a millisecond, never by a whole frame
    assert ts[0] == 0 and bool(np.all(np.abs(steps - FRAME_US) <= 2000)), ts[:5]
    return len(ts)


async def stream_through_fault(client: WebSocketMediaClient, fault: Any, *args: Any,
                               close_within: float) -> tuple[list[dict[str, Any]], float]:
    """Stream for 1 s, run ``fault(*args)`` in a thread, collect until the socket closes (``close_within`` s
    at most); a call on the dead connection must raise. The results and the seconds from the fault to the close."""
    outs = await collect(client, 1.0)
    t0 = time.monotonic()
    await asyncio.to_thread(fault, *args)
    await collect(client, close_within, outs)  # returns as soon as the socket closes
    await client.wait_closed(5)
    closed_after = time.monotonic() - t0
    with pytest.raises(TransportError):
        await client.call("media.stats", timeout_s=2)
    await client.close()
    return outs, closed_after
