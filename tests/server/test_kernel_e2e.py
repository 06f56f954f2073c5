"""End to end: a real ``jupyter server`` subprocess with the extension, a real kernel running
``serve(...)``, and a browser-free ClientPeer streaming a tone through the extension's WS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from remotemedia_nbrtc.server.extension import LINK_SECRET_ENV, LINK_URL_ENV
from remotemedia_nbrtc.transport.client import ClientPeer
from remotemedia_nbrtc.transport.ice import IceConfig
from remotemedia_nbrtc.transport.sources import ToneSource

pytestmark = pytest.mark.timeout(60)

BASE_URL = "/rm-e2e/"  # a non-root base_url, so every path must honour it
LOOPBACK = IceConfig(loopback_only=True)
REPO = Path(__file__).resolve().parents[2]

LEVEL_NODE = {"id": "level", "node_type": "AudioLevelNode", "params": {}}

SERVE_CODE = """
import json
from remotemedia_nbrtc.kernel import serve
from remotemedia_nbrtc.transport.ice import IceConfig
from remotemedia_nbrtc.transport.peer import PeerConfig
manifest = {{"version": "v1", "metadata": {{"name": "e2e"}}, "nodes": [{node}], "connections": []}}
{var} = serve(manifest, peer_config=PeerConfig(ice=IceConfig(loopback_only=True)))
print(json.dumps({{"session_id": {var}.session_id, "ws_path": {var}.ws_path}}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    port: int
    token: str
    runtime_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{BASE_URL}{path}"

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("jupyter")
    dirs = {name: root / name for name in ("config", "runtime", "data", "nb")}
    for d in dirs.values():
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (LINK_URL_ENV, LINK_SECRET_ENV)}
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTER_PLATFORM_DIRS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    port, token = _free_port(), "e2e-" + os.urandom(8).hex()
    log = root / "server.log"
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.base_url={BASE_URL}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={dirs['nb']}",
           "--ServerApp.jpserver_extensions={'remotemedia_nbrtc.server': True}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=dirs["nb"])
    srv = Server(port, token, dirs["runtime"], proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                srv.api("api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter server not ready:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def kernel(server: Server) -> Iterator[BlockingKernelClient]:
    kernel_id = server.api("api/kernels", "POST", {"name": "python3"})["id"]
    kc = BlockingKernelClient(connection_file=str(server.runtime_dir / f"kernel-{kernel_id}.json"))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        yield kc
    finally:
        kc.stop_channels()
        server.api(f"api/kernels/{kernel_id}", "DELETE")


def execute(kc: BlockingKernelClient, code: str, timeout: float = 20) -> str:
    """Run ``code`` in the kernel; return its stdout, or fail with the kernel's traceback."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    assert reply["content"]["status"] == "ok", "\n".join(errors)
    return "".join(out)


def wait_reply(kc: BlockingKernelClient, msg_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def serve_in_kernel(kc: BlockingKernelClient, var: str, node: dict[str, Any] = LEVEL_NODE) -> dict[str, str]:
    code = SERVE_CODE.format(var=var, node=json.dumps(node))
    info: dict[str, str] = json.loads(execute(kc, code).strip().splitlines()[-1])
    return info


def levels(outputs: list[dict[str, Any]]) -> list[float]:
    return [o["value"]["rms_dbfs"] for o in outputs if o.get("type") == "json" and o["value"].get("kind") == "level"]


async def collect(client: ClientPeer, until: float, outputs: list[dict[str, Any]]) -> None:
    while time.monotonic() < until:
        try:
            out = await client.next_output(timeout=max(0.05, until - time.monotonic()))
        except TimeoutError:
            continue
        if out is None:
            return
        outputs.append(out)


def test_status_counts_the_kernel_link(server: Server, kernel: BlockingKernelClient) -> None:
    """A kernel that called serve() shows up in the status the widget's doctor reads."""
    url = execute(kernel, f"import os; print(os.environ.get({LINK_URL_ENV!r}))").strip()
    assert url == server.url("remotemedia/kernel-link", scheme="ws")
    info = serve_in_kernel(kernel, "h0")
    assert info["ws_path"] == "remotemedia/ws/" + info["session_id"] and len(info["session_id"]) >= 32
    status = server.api("remotemedia/status")
    assert status["kernels"] == 1 and status["sessions"] >= 1
    execute(kernel, "h0.close()")
    assert server.api("remotemedia/status")["sessions"] == status["sessions"] - 1


def test_serve_without_link_env_raises_clear_error(kernel: BlockingKernelClient) -> None:
    """A kernel not started by a server with the extension gets a TransportError, not a hang."""
    out = execute(kernel, (
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
    ))
    assert out.strip() == "True"


def test_tone_from_client_returns_levels_through_kernel(server: Server, kernel: BlockingKernelClient) -> None:
    info = serve_in_kernel(kernel, "h1")

    async def scenario() -> list[dict[str, Any]]:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          audio=ToneSource(440.0, amplitude=0.5), ice=LOOPBACK, timeout_s=15)
        outputs: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 10
            while len(levels(outputs)) < 25 and time.monotonic() < deadline:
                await collect(client, time.monotonic() + 0.2, outputs)
        finally:
            await client.close()
        return outputs

    outputs = asyncio.run(scenario())
    rms = levels(outputs)
    assert len(rms) >= 25, outputs[:5]
    # a 0.5 mono sine is -9 dBFS; leave room for Opus and the mono->stereo path
    assert -16.0 < float(np.median(rms[10:])) < -6.0, rms[10:20]
    execute(kernel, "h1.close()")


def test_busy_cell_does_not_block_connect_or_lose_frames(server: Server, kernel: BlockingKernelClient) -> None:
    """The kernel's main thread sleeps in a cell while a client connects and streams: signaling, media
    and the pipeline run on their own threads, so the call completes and every frame sent is counted."""
    info = serve_in_kernel(kernel, "h2")
    sleep_s, stream_s = 10.0, 3.0
    busy_id = kernel.execute(f"import time; time.sleep({sleep_s})")
    busy_from = time.monotonic()
    source = ToneSource(440.0, duration_s=stream_s, amplitude=0.5)

    async def scenario() -> tuple[float, list[dict[str, Any]], float]:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          audio=source, ice=LOOPBACK, timeout_s=15)
        connected_at = time.monotonic() - busy_from
        outputs: list[dict[str, Any]] = []
        # stream the whole tone, then give the last frames time to arrive; all while the cell sleeps
        await collect(client, time.monotonic() + stream_s + 1.5, outputs)
        done_at = time.monotonic() - busy_from
        # keep the connection open until the metrics are read (closing ends the pipeline session)
        return connected_at, outputs, done_at

    loop = asyncio.new_event_loop()
    try:
        connected_at, outputs, done_at = loop.run_until_complete(scenario())
        assert connected_at < sleep_s and done_at < sleep_s, (connected_at, done_at)
        reply = wait_reply(kernel, busy_id, sleep_s + 10)
        assert reply["content"]["status"] == "ok"
        assert time.monotonic() - busy_from >= sleep_s
        report = json.loads(execute(kernel, (
            "ep = h2.endpoints()[0]\n"
            "print(json.dumps({'metrics': ep.session.metrics(), 'peer': ep.server_peer.stats()}, default=str))"
        )))
    finally:
        execute(kernel, "h2.close()")
        loop.close()

    sent = source.frames_sent
    assert sent == int(stream_s * 50)
    level = report["metrics"]["level"]
    assert level["frames_in"] == sent, (level, report["peer"])
    assert report["peer"]["bridge"]["audio_drops"] == 0
    # and the results came back while the cell was still busy
    assert len(levels(outputs)) >= sent - 5


def test_gain_processed_audio_returns_through_kernel(server: Server, kernel: BlockingKernelClient) -> None:
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
    execute(kernel, "h3.close()")
    tail = samples[-24000:]  # the last 0.5 s of an endless tone
    assert tail.size == 24000 and np.sum(np.abs(tail) > 0.05) > 12000, "no processed audio came back"
    rms = float(np.sqrt(np.mean(tail**2)))
    expected = 0.5 * 10 ** (-6 / 20) / np.sqrt(2)
    assert abs(rms - expected) / expected < 0.15, (rms, expected)
    peak_hz = np.argmax(np.abs(np.fft.rfft(tail * np.hanning(tail.size)))) * 48000 / tail.size
    assert abs(peak_hz - 440.0) < 5, peak_hz


def test_synthetic_video_returns_a_result_per_frame_through_kernel(server: Server,
                                                                   kernel: BlockingKernelClient) -> None:
    """Video frames reach the kernel's pipeline; a per-frame result comes back on the data channel."""
    from remotemedia_nbrtc.transport.sources import SyntheticVideoSource

    info = serve_in_kernel(kernel, "h4", {"id": "stats", "node_type": "VideoStatsNode", "params": {}})
    source = SyntheticVideoSource(320, 240, fps=15, duration_s=2.0)

    async def scenario() -> list[dict[str, Any]]:
        client = await ClientPeer.connect(server.url(info["ws_path"], scheme="ws"), token=server.token,
                                          video=source, ice=LOOPBACK, timeout_s=15)
        outputs: list[dict[str, Any]] = []
        try:
            await collect(client, time.monotonic() + 3.5, outputs)
        finally:
            await client.close()
        return outputs

    outputs = asyncio.run(scenario())
    execute(kernel, "h4.close()")
    stats = [o["value"] for o in outputs if o.get("type") == "json" and o["value"].get("kind") == "video_stats"]
    assert len(stats) >= 20, len(stats)
    assert all((s["width"], s["height"]) == (320, 240) for s in stats)
    numbers = [s["frame_number"] for s in stats]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
