"""Server processes the transport bench talks to: ours (standalone), plain aiortc, and Jupyter + kernel."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORKLOADS = BENCH / "workloads"
MANIFESTS = {"audio": WORKLOADS / "audio_level.yaml", "echo": WORKLOADS / "echo.yaml",
             "video": WORKLOADS / "video_stats.yaml"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class ServerProc:
    """A bench server subprocess speaking the ``{"port", "pid"}`` / ``stats`` / ``quit`` line protocol."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SERVE_CODE = """
import json, os
from remotemedia_nbrtc.kernel import serve
from remotemedia_nbrtc.transport.ice import IceConfig
from remotemedia_nbrtc.transport.peer import PeerConfig
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

    BASE_URL = "/"

    def __init__(self, manifest: Path, log_dir: Path) -> None:
        from jupyter_client.blocking.client import BlockingKernelClient

        self._tmp = tempfile.TemporaryDirectory(prefix="rm-bench-jupyter-")
        root = Path(self._tmp.name)
        dirs = {name: root / name for name in ("config", "runtime", "data", "nb")}
        for d in dirs.values():
            d.mkdir()
        env = {k: v for k, v in _env().items() if not k.startswith("REMOTEMEDIA_")}
        env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
                   JUPYTER_DATA_DIR=str(dirs["data"]), JUPYTER_PLATFORM_DIRS="1")
        self.port, self.token = _free_port(), "bench-" + os.urandom(8).hex()
        self.log_path = log_dir / "jupyter-server.log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={dirs['nb']}",
               "--ServerApp.jpserver_extensions={'remotemedia_nbrtc.server': True}"]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=dirs["nb"])
        self.kernel_id: str | None = None
        self.kc: Any = None
        try:
            deadline = time.monotonic() + 30
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"jupyter server exited ({self.proc.returncode}): {self.log_tail()}")
                try:
                    self.api("api/status")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"jupyter server not ready: {self.log_tail()}") from None
                    time.sleep(0.1)
            self.kernel_id = self.api("api/kernels", "POST", {"name": "python3"})["id"]
            self.kc = BlockingKernelClient(connection_file=str(dirs["runtime"] / f"kernel-{self.kernel_id}.json"))
            self.kc.load_connection_file()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=30)
            info = json.loads(self.execute(SERVE_CODE.format(manifest=str(manifest))).strip().splitlines()[-1])
            self.ws_url = f"ws://127.0.0.1:{self.port}{self.BASE_URL}{info['ws_path']}"
            self.pid: int = info["pid"]
        except BaseException:
            self.stop()
            raise

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{self.BASE_URL}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def execute(self, code: str, timeout: float = 30) -> str:
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                errors.append("\n".join(msg["content"]["traceback"]))

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("kernel code failed:\n" + "\n".join(errors))
        return "".join(out)

    def peer_stats(self) -> Any:
        return json.loads(self.execute(PEER_STATS_CODE).strip().splitlines()[-1])

    def stop(self) -> None:
        if self.kc is not None:
            try:
                self.execute("_bench_session.close()", timeout=10)
            except Exception:
                pass
            self.kc.stop_channels()
            self.kc = None
        if self.kernel_id is not None and self.proc.poll() is None:
            try:
                self.api(f"api/kernels/{self.kernel_id}", "DELETE")
            except OSError:
                pass
            self.kernel_id = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        self._tmp.cleanup()
