"""Server processes the transport bench talks to: ours (standalone), plain aiortc, and Jupyter + kernel."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORKLOADS = BENCH / "workloads"
MANIFESTS = {"audio": WORKLOADS / "audio_level.yaml", "echo": WORKLOADS / "echo.yaml",
             "video": WORKLOADS / "video_stats.yaml", "echo_stall": WORKLOADS / "echo_stall.yaml"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class ServerProc:
    """A bench server subprocess speaking the ``{"port", "pid"}`` / ``stats`` / ``quit`` line protocol."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (the server's log for its life; closed in stop())
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=_env(), cwd=REPO, text=True, bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        hello = self._next_line(30.0)
        self.port: int = hello["port"]
        self.pid: int = hello["pid"]

    @classmethod
    def ours(cls, workload: str, log_dir: Path) -> ServerProc:
        return cls([sys.executable, str(BENCH / "serve_ours.py"), str(MANIFESTS[workload]), "--port", "0"],
                   log_dir / f"ours-{workload}.log")

    @classmethod
    def baseline(cls, workload: str, log_dir: Path) -> ServerProc:
        return cls([sys.executable, str(BENCH / "baseline_aiortc.py"), "serve", "--workload", workload,
                    "--port", "0"], log_dir / f"baseline-{workload}.log")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise RuntimeError(f"server {self.cmd[1]} gave no answer; log:\n{self.log_tail()}")
        return json.loads(line)

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def stats(self) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._next_line(10.0)

    def stop(self) -> int:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


SERVE_CODE = """
import json, os
from remotemedia_nbrtc.kernel import serve
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
_bench_session = serve({manifest!r}, peer_config=PeerConfig(ice=IceConfig(loopback_only=True)))
print(json.dumps({{"session_id": _bench_session.session_id, "ws_path": _bench_session.ws_path, "pid": os.getpid()}}))
"""

PEER_STATS_CODE = """
import json
print(json.dumps([getattr(e, "server_peer", None) and e.server_peer.stats() for e in _bench_session.endpoints()],
                 default=repr))
"""


class JupyterKernel:
    """A real ``jupyter server`` subprocess with the extension, one kernel, ``serve(manifest)`` run in it."""

    def __init__(self, manifest: Path, log_dir: Path) -> None:
        from remotemedia_nbrtc.testing.jupyter import JupyterServer, KernelHandle

        self._tmp = tempfile.TemporaryDirectory(prefix="rm-bench-jupyter-")
        root = Path(self._tmp.name)
        (root / "data").mkdir()
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEMEDIA_")}
        env.update(PYTHONPATH=_env()["PYTHONPATH"], JUPYTER_DATA_DIR=str(root / "data"), JUPYTER_PLATFORM_DIRS="1")
        self.log_path = log_dir / "jupyter-server.log"
        self.server: JupyterServer | None = None
        self.kernel: KernelHandle | None = None
        try:
            self.server = JupyterServer.start(root, env=env, log=self.log_path)
            self.port, self.token = self.server.port, self.server.token
            self.kernel = self.server.start_kernel()
            info = json.loads(self.execute(SERVE_CODE.format(manifest=str(manifest))).strip().splitlines()[-1])
            self.ws_url = self.server.url(info["ws_path"], scheme="ws")
            self.pid: int = info["pid"]
        except BaseException:
            self.stop()
            raise

    def execute(self, code: str, timeout: float = 30) -> str:
        assert self.kernel is not None
        return self.kernel.execute(code, timeout)

    def peer_stats(self) -> Any:
        return json.loads(self.execute(PEER_STATS_CODE).strip().splitlines()[-1])

    def stop(self) -> None:
        if self.kernel is not None:
            with contextlib.suppress(Exception):
                self.execute("_bench_session.close()", timeout=10)
            with contextlib.suppress(OSError):
                self.kernel.shutdown()
            self.kernel = None
        if self.server is not None:
            self.server.stop()
        self._tmp.cleanup()
