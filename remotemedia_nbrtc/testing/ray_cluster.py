"""A throwaway Ray head node on 127.0.0.1, for tests and benchmarks.

``ray start --head`` with free ports, no dashboard, a small object store and its own temp dir; stopped
by killing exactly the processes it started (found by that unique temp dir), never a machine-wide
``ray stop``. Point this process's driver at it with :meth:`LocalRayCluster.driver_env`. Count a
cluster's actors with :func:`alive_actors` (from the GCS, so it works without the dashboard that
``ray.util.state`` needs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .jupyter import free_port

__all__ = ["LocalRayCluster", "alive_actors"]


def _free_port(avoid: range = range(0)) -> int:
    """A free port on 127.0.0.1 outside ``avoid`` (Ray refuses a port inside its worker port range)."""
    while True:
        port = free_port()
        if port not in avoid:
            return port


def _pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out and child != os.getpid():
                out.add(child)
                todo.append(child)
    return out


class LocalRayCluster:
    """``with LocalRayCluster(num_cpus=2) as cluster: ray.init(address=cluster.address)``."""

    def __init__(self, *, num_cpus: int = 2, object_store_bytes: int = 80_000_000, env: dict[str, str] | None = None):
        self.num_cpus = num_cpus
        self.object_store_bytes = object_store_bytes
        self.env = env
        self.port = 0
        self.temp_dir = ""
        self.start_s = 0.0

    client_env = {"RAY_AUTH_MODE": "disabled"}  # the driver's environment for this cluster: see driver_env()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, attempts: int = 2) -> LocalRayCluster:
        """Start the head; on a loaded machine Ray's fixed 30 s raylet-registration wait can expire, so retry."""
        for attempt in range(attempts):
            try:
                return self._start_once()
            except RuntimeError as exc:
                if attempt == attempts - 1 or "timed out during startup" not in str(exc):
                    raise
        return self

    def _start_once(self) -> LocalRayCluster:
        ray_bin = Path(sys.executable).with_name("ray")
        if not ray_bin.exists():
            raise RuntimeError(f"{ray_bin} not found: pip install remotemedia_nbrtc[ray]")
        worker_base = 20000 + (os.getpid() % 400) * 100
        workers = range(worker_base, worker_base + 100)
        self.port = _free_port(workers)
        self.temp_dir = tempfile.mkdtemp(prefix="rmray-")
        ports = {name: _free_port(workers)
                 for name in ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                              "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")}
        cmd = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
               f"--num-cpus={self.num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={self.temp_dir}", f"--object-store-memory={self.object_store_bytes}",
               f"--min-worker-port={worker_base}", f"--max-worker-port={worker_base + 99}"]
        cmd += [f"--{name}={port}" for name, port in ports.items()]
        # a throwaway loopback cluster: no token auth (Ray >= 2.5x enables it by default; the driver must match,
        # see ``client_env``)
        env = {**os.environ, **self.client_env, **(self.env or {})}
        env.pop("RAY_ADDRESS", None)
        started = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        self.start_s = time.perf_counter() - started
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(
                f"ray start failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return self

    def pids(self) -> list[int]:
        """The processes of this cluster: those whose command line names its temp dir (GCS, raylet...) and
        their descendants (workers rename themselves ``ray::ClassName``, losing the temp dir)."""
        if not self.temp_dir:
            return []
        roots = set(_pids_with(self.temp_dir))
        return sorted(roots | _descendants(roots))

    def stop(self, timeout: float = 20.0) -> None:
        """Kill this cluster's processes (and only those) and remove its temp dir."""
        if not self.temp_dir:
            return
        deadline = time.monotonic() + timeout
        pids = self.pids()
        while pids and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
            pids = [p for p in {*self.pids(), *pids} if _alive(p)]
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir = ""

    @contextmanager
    def driver_env(self) -> Iterator[None]:
        """Within: this process's environment is ``client_env`` plus ``RAY_ADDRESS``, and Ray's in-process
        auth state follows it; the previous environment (and auth state) is back after."""
        names = [*self.client_env, "RAY_ADDRESS"]
        saved = {k: os.environ.get(k) for k in names}
        os.environ.update(self.client_env)
        os.environ["RAY_ADDRESS"] = self.address
        _refresh_ray_auth_state()
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            _refresh_ray_auth_state()

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _refresh_ray_auth_state() -> None:
    """Make Ray's cached auth mode and token follow ``RAY_AUTH_MODE`` in ``os.environ`` again.

    A local ``ray.init()`` turns token auth on for the whole process (it sets ``RAY_AUTH_MODE=token`` and
    caches the mode in RayConfig and the token loader), and ``ray.shutdown()`` keeps it. On a no-auth
    cluster, the actors of a driver still in token mode then never start ("Actor creation cancelled",
    "The actor never ran"; the GCS takes them for out of scope, its calls to their owner being unauthenticated).
    """
    try:
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]
    except ImportError:
        return
    Config.initialize("")  # the config first: see ray._private.authentication_test_utils.reset_auth_token_state
    AuthenticationTokenLoader.instance().reset_cache()


def alive_actors(class_name: str | None = "NodeHost") -> int:
    """How many actors (of ``class_name``; None: any) the connected cluster holds ALIVE or starting."""
    import ray

    table = ray._private.state.actors()  # noqa: SLF001  (GCS-backed; ray.util.state needs the dashboard)
    return sum(1 for a in table.values()
               if a.get("State") not in ("DEAD",)
               and (class_name is None or class_name in str(a.get("ActorClassName"))))
