"""End to end: a real ``jupyter server`` subprocess with the extension, a real kernel running
``serve(...)``, and a browser-free ClientPeer streaming a tone through the extension's WS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from remotemedia_nbrtc.protocol.kernel_link import LINK_URL_ENV
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.testing.jupyter import JupyterServer, KernelHandle
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.sources import ToneSource
from tests.outputs import collect
from tests.server._e2e import serve_in_kernel

pytestmark = pytest.mark.timeout(60)

LOOPBACK = IceConfig(loopback_only=True)

LEVEL_NODE = {"id": "level", "node_type": "AudioLevelNode", "params": {}}


@pytest.fixture(scope="module")
def kernel(server: JupyterServer) -> Iterator[KernelHandle]:
    with server.start_kernel() as k:
        yield k


def wait_reply(kc: BlockingKernelClient, msg_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def levels(outputs: list[dict[str, Any]]) -> list[float]:
    return [o["value"]["rms_dbfs"] for o in outputs if o.get("type") == "json" and o["value"].get("kind") == "level"]


def test_status_counts_the_kernel_link(server: JupyterServer, kernel: KernelHandle) -> None:
    """A kernel that called serve() shows up in the status the widget's doctor reads."""
    url = kernel.execute(f"import os; print(os.environ.get({LINK_URL_ENV!r}))").strip()
    assert url == server.url("remotemedia/kernel-link", scheme="ws")
    info = serve_in_kernel(kernel, "h0", LEVEL_NODE)
    assert info["ws_path"] == "remotemedia/ws/" + info["session_id"] and len(info["session_id"]) >= 32
    status = server.api("remotemedia/status")
    assert status["kernels"] == 1 and status["sessions"] >= 1
    kernel.execute("h0.close()")
    assert server.api("remotemedia/status")["sessions"] == status["sessions"] - 1


def test_serve_without_link_env_raises_clear_error(kernel: KernelHandle) -> None:
    """A kernel not started by a server with the extension gets a TransportError, not a hang."""
    out = kernel.execute(
        "import os\n"
        "from remotemedia_nbrtc.errors import TransportError\n"
        "from remotemedia_nbrtc.kernel import serve\n"
        f"saved = os.environ.pop({LINK_URL_ENV!r})\n"
        "try:\n"
        "    serve({})\n"
        "except TransportError as exc:\n"
        "    print('extension not loaded' in str(exc))\n"
        "finally:\n"
        f"    os.environ[{LINK_URL_ENV!r}] = saved\n"
    )
    assert out.strip() == "True"


def test_tone_from_client_returns_levels_through_kernel(server: JupyterServer, kernel: KernelHandle) -> None:
    info = serve_in_kernel(kernel, "h1", LEVEL_NODE)

    async def scenario() -> list[dict[str, Any]]:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          audio=ToneSource(440.0, amplitude=0.5), ice=LOOPBACK, timeout_s=15)
        outputs: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 10
            while len(levels(outputs)) < 25 and time.monotonic() < deadline:
                await collect(client, 0.2, outputs)
        finally:
            await client.close()
        return outputs

    outputs = asyncio.run(scenario())
    rms = levels(outputs)
    assert len(rms) >= 25, outputs[:5]
    # a 0.5 mono sine is -9 dBFS; leave room for Opus and the mono->stereo path
    assert -16.0 < float(np.median(rms[10:])) < -6.0, rms[10:20]
    kernel.execute("h1.close()")


def test_busy_cell_does_not_block_connect_or_lose_frames(server: JupyterServer, kernel: KernelHandle) -> None:
    """The kernel's main thread sleeps in a cell while a client connects and streams: signaling, media
    and the pipeline run on their own threads, so the call completes and every frame sent is counted."""
    info = serve_in_kernel(kernel, "h2", LEVEL_NODE)
    sleep_s, stream_s = 10.0, 3.0
    busy_id = kernel.client.execute(f"import time; time.sleep({sleep_s})")
    busy_from = time.monotonic()
    source = ToneSource(440.0, duration_s=stream_s, amplitude=0.5)

    async def scenario() -> tuple[float, list[dict[str, Any]], float]:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          audio=source, ice=LOOPBACK, timeout_s=15)
        connected_at = time.monotonic() - busy_from
        outputs: list[dict[str, Any]] = []
        # stream the whole tone, then give the last frames time to arrive; all while the cell sleeps
        await collect(client, stream_s + 1.5, outputs)
        done_at = time.monotonic() - busy_from
        # keep the connection open until the metrics are read (closing ends the pipeline session)
        return connected_at, outputs, done_at

    loop = asyncio.new_event_loop()
    try:
        connected_at, outputs, done_at = loop.run_until_complete(scenario())
        assert connected_at < sleep_s and done_at < sleep_s, (connected_at, done_at)
        reply = wait_reply(kernel.client, busy_id, sleep_s + 10)
        assert reply["content"]["status"] == "ok"
        assert time.monotonic() - busy_from >= sleep_s
        report = json.loads(kernel.execute(
            "ep = h2.endpoints()[0]\n"
            "print(json.dumps({'metrics': ep.session.metrics(), 'peer': ep.server_peer.stats()}, default=str))"
        ))
    finally:
        kernel.execute("h2.close()")
        loop.close()

    sent = source.frames_sent
    assert sent == int(stream_s * 50)
    level = report["metrics"]["level"]
    assert level["frames_in"] == sent, (level, report["peer"])
    assert report["peer"]["bridge"]["audio_drops"] == 0
    # and the results came back while the cell was still busy
    assert len(levels(outputs)) >= sent - 5


def test_gain_processed_audio_returns_through_kernel(server: JupyterServer, kernel: KernelHandle) -> None:
    """Audio processed by the kernel's pipeline comes back as a media track, checked numerically."""
    info = serve_in_kernel(kernel, "h3", {"id": "gain", "node_type": "Gain", "params": {"gain_db": -6.0}})

    async def scenario() -> np.ndarray:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          audio=ToneSource(440.0, amplitude=0.5), ice=LOOPBACK, timeout_s=15)
        try:
            deadline = time.monotonic() + 10
            while len(client.received_audio) < 120 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return client.received_audio_samples()[:, 0]
        finally:
            await client.close()

    samples = asyncio.run(scenario())
    kernel.execute("h3.close()")
    tail = samples[-24000:]  # the last 0.5 s of an endless tone
    assert tail.size == 24000 and np.sum(np.abs(tail) > 0.05) > 12000, "no processed audio came back"
    rms = float(np.sqrt(np.mean(tail**2)))
    expected = 0.5 * 10 ** (-6 / 20) / np.sqrt(2)
    assert abs(rms - expected) / expected < 0.15, (rms, expected)
    peak_hz = np.argmax(np.abs(np.fft.rfft(tail * np.hanning(tail.size)))) * 48000 / tail.size
    assert abs(peak_hz - 440.0) < 5, peak_hz


def test_synthetic_video_returns_a_result_per_frame_through_kernel(server: JupyterServer,
                                                                   kernel: KernelHandle) -> None:
    """Video frames reach the kernel's pipeline; a per-frame result comes back on the data channel."""
    from remotemedia_nbrtc.transport.sources import SyntheticVideoSource

    info = serve_in_kernel(kernel, "h4", {"id": "stats", "node_type": "VideoStatsNode", "params": {}})
    source = SyntheticVideoSource(320, 240, fps=15, duration_s=2.0)

    async def scenario() -> list[dict[str, Any]]:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          video=source, ice=LOOPBACK, timeout_s=15)
        outputs: list[dict[str, Any]] = []
        try:
            await collect(client, 3.5, outputs)
        finally:
            await client.close()
        return outputs

    outputs = asyncio.run(scenario())
    kernel.execute("h4.close()")
    stats = [o["value"] for o in outputs if o.get("type") == "json" and o["value"].get("kind") == "video_stats"]
    assert len(stats) >= 20, len(stats)
    assert all((s["width"], s["height"]) == (320, 240) for s in stats)
    numbers = [s["frame_number"] for s in stats]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
