"""A real Jupyter server in a subprocess, with this package's extension, for end-to-end tests and benchmarks.

:meth:`JupyterServer.start` runs ``jupyter server`` (or JupyterLab, or Notebook 7) on 127.0.0.1 with a
token and the ``remotemedia_nbrtc.server`` extension enabled, serving ``root``; its config and runtime
directories (and JupyterLab's settings and workspaces) live in ``root/.jupyter-test`` so the user's own
Jupyter setup does not leak in. It returns once ``/api/status`` answers. :meth:`JupyterServer.start_kernel`
starts a kernel through the REST API and connects a blocking ``jupyter_client`` to it. A server is stopped
by its PID: SIGTERM (it shuts its kernels down), then SIGKILL after a timeout::

    with JupyterServer.start(tmp_path) as server:
        kernel = server.start_kernel()
        assert kernel.execute("print(6 * 7)") == "42\\n"
        kernel.shutdown()

``jupyter_client`` is imported only by :meth:`~JupyterServer.start_kernel`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient

__all__ = ["App", "JupyterServer", "KernelHandle", "free_port"]

#: which Jupyter application to run: the bare server, JupyterLab, or Notebook 7
App = Literal["server", "lab", "notebook"]

STATE_DIR = ".jupyter-test"
_MODULES = {"server": "jupyter_server", "lab": "jupyterlab", "notebook": "notebook"}
_APP_CLASSES = {"lab": "LabApp", "notebook": "JupyterNotebookApp"}
# JupyterLab's extension is loaded by both UI apps: no news or update checks (tests run offline), no extension
# manager, and ``window.jupyterapp`` exposed so a browser test can drive the command registry
_UI_ARGS = ("--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    """A running Jupyter server subprocess; make one with :meth:`start`."""

    proc: subprocess.Popen[bytes]
    port: int
    token: str
    #: the directory it serves (``ServerApp.root_dir``, also the kernels' working directory)
    root: Path
    #: its stdout and stderr
    log: Path
    runtime_dir: Path
    app: App = "server"
    base_url: str = "/"
    #: the host name put in URLs (the server listens on 127.0.0.1 whatever this says)
    host: str = "127.0.0.1"
    #: the certificate it serves HTTPS with (``start(tls=...)``); None: plain HTTP
    certfile: Path | None = None
    #: seconds for one REST request (:meth:`api`)
    request_timeout: float = 10.0

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        app: App = "server",
        base_url: str = "/",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        port: int | None = None,
        token: str | None = None,
        log: Path | None = None,
        ready_timeout: float = 30.0,
        request_timeout: float = 10.0,
        tls: tuple[Path, Path] | None = None,
    ) -> JupyterServer:
        """Start ``app`` serving ``root`` on 127.0.0.1 and wait until its REST API answers.

        ``env`` changes the inherited environment (a ``None`` value removes a variable); the kernel-link
        variables of a server this process may itself run under are never passed on. ``port`` (default: a
        free one) and ``token`` (default: random) let a test start a server again where an old one was.
        ``tls=(certfile, keyfile)`` serves HTTPS (and wss) with that certificate.
        ``log`` defaults to ``root/.jupyter-test/<app>.log``. Raises ``RuntimeError`` with the log's tail
        when the server exits or is not ready within ``ready_timeout`` seconds (it is stopped then).
        """
        from remotemedia_nbrtc.protocol.kernel_link import LINK_CERT_ENV, LINK_SECRET_ENV, LINK_URL_ENV

        state = root / STATE_DIR
        dirs = {"JUPYTER_CONFIG_DIR": state / "config", "JUPYTER_RUNTIME_DIR": state / "runtime"}
        if app != "server":
            dirs |= {"JUPYTERLAB_SETTINGS_DIR": state / "settings", "JUPYTERLAB_WORKSPACES_DIR": state / "workspaces"}
            # without this JupyterLab asks, in a notification, whether it may fetch news
            notif = state / "settings" / "@jupyterlab" / "apputils-extension"
            notif.mkdir(parents=True, exist_ok=True)
            (notif / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        child_env = {k: v for k, v in os.environ.items() if k not in (LINK_URL_ENV, LINK_SECRET_ENV, LINK_CERT_ENV)}
        child_env.update({k: str(d) for k, d in dirs.items()})
        for k, v in (env or {}).items():
            if v is None:
                child_env.pop(k, None)
            else:
                child_env[k] = v

        port = free_port() if port is None else port
        token = secrets.token_hex(16) if token is None else token
        log = state / f"{app}.log" if log is None else log
        cmd = [
            sys.executable, "-m", _MODULES[app], "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--ServerApp.base_url={base_url}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.jpserver_extensions={'remotemedia_nbrtc.server': True}",
        ]
        if app != "server":
            cmd += [*_UI_ARGS, f"--{_APP_CLASSES[app]}.expose_app_in_browser=True"]
        if tls is not None:
            cmd += [f"--ServerApp.certfile={tls[0]}", f"--ServerApp.keyfile={tls[1]}"]
        cmd += extra_args
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env, cwd=root)
        server = cls(proc, port, token, root, log, dirs["JUPYTER_RUNTIME_DIR"], app, base_url,
                     request_timeout=request_timeout, certfile=None if tls is None else Path(tls[0]))
        server._wait_ready(ready_timeout)
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                self.api("api/status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"jupyter {self.app} not ready in {timeout} s:\n{self.log_tail()}") from None
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def url(self, path: str = "", scheme: str = "http") -> str:
        """``path`` (relative to the base URL) on this server; ``scheme="ws"`` for a WebSocket (https/wss
        when the server has a certificate)."""
        if self.certfile is not None:
            scheme = {"http": "https", "ws": "wss"}.get(scheme, scheme)
        return f"{scheme}://{self.host}:{self.port}{self.base_url}{path}"

    def notebook_url(self, name: str) -> str:
        """The page that opens notebook ``name`` (relative to ``root``) in JupyterLab or Notebook 7."""
        if self.app == "notebook":
            return f"{self.url()}notebooks/{name}?token={self.token}"
        if self.app == "lab":
            return f"{self.url()}lab/tree/{name}?reset&token={self.token}"
        raise ValueError("a bare jupyter server has no notebook page: start it with app='lab' or 'notebook'")

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        """Call the REST API (``path`` relative to the base URL, token in the header); the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        context = None
        if self.certfile is not None:  # its own certificate, pinned: the name in it need not be 127.0.0.1
            context = ssl.create_default_context(cafile=str(self.certfile))
            context.check_hostname = False
        with urllib.request.urlopen(req, timeout=self.request_timeout, context=context) as resp:
            return json.loads(resp.read() or b"null")

    def start_kernel(self, name: str = "python3", *, timeout: float = 30.0) -> KernelHandle:
        """Start a kernel through the REST API and return it once its client sees it ready."""
        from jupyter_client.blocking.client import BlockingKernelClient

        kernel_id: str = self.api("api/kernels", "POST", {"name": name})["id"]
        client = BlockingKernelClient(connection_file=str(self.runtime_dir / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        kernel = KernelHandle(self, kernel_id, client)
        try:
            client.wait_for_ready(timeout=timeout)
        except BaseException:
            kernel.shutdown()
            raise
        return kernel

    def log_tail(self, n: int = 3000) -> str:
        """The last ``n`` characters of the server's log."""
        return self.log.read_text(errors="replace")[-n:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM by PID (the server stops its kernels), SIGKILL after ``timeout`` s; harmless once stopped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> JupyterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class KernelHandle:
    """A kernel of a :class:`JupyterServer` with a connected blocking client."""

    server: JupyterServer
    id: str
    client: BlockingKernelClient

    def execute(self, code: str, timeout: float = 20.0) -> str:
        """Run ``code``; its stdout. Raises ``RuntimeError`` with the kernel's traceback when it fails."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                errors.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("kernel code failed:\n" + "\n".join(errors))
        return "".join(out)

    def shutdown(self) -> None:
        """Disconnect the client and shut the kernel down (nothing to shut down if the server is gone)."""
        self.client.stop_channels()
        if not self.server.running:
            return
        try:
            self.server.api(f"api/kernels/{self.id}", "DELETE")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # already gone
                raise

    def __enter__(self) -> KernelHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
