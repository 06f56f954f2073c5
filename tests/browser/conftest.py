"""Browser E2E fixtures: a real JupyterLab (subprocess, one per session) and headless Chromium.

Chromium's fake mic plays a WAV made with espeak-ng at test time; ICE is kept on 127.0.0.1
(``--allow-loopback-in-peer-connection`` in the browser, ``loopback_only=True`` in the kernel).
Run inside a loopback-only namespace in CI:
``unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/pytest tests/browser``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
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

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _missing_tools() -> list[str]:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    return missing


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    missing = _missing_tools()
    if missing:
        skip = pytest.mark.skip(reason=f"browser E2E needs {', '.join(missing)}")
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s silence, a short sentence, 2 s silence; 48 kHz mono s16 (repeatable: sox -R)."""
    d = tmp_path_factory.mktemp("media")
    raw = d / "raw.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), "turn on the kitchen lights"], check=True)
    out = d / "speech48k.wav"
    subprocess.run(["sox", "-R", str(raw), "-r", "48000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out),
                    "pad", "1", "2"], check=True)
    assert out.stat().st_size > 100_000  # a wrong path would give silence with no error
    return out


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}?token={self.token}", timeout=5) as r:
            return json.loads(r.read())

    def notebook_url(self, name: str) -> str:
        return f"{self.url}lab/tree/{name}?reset&token={self.token}"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab with the remotemedia_nbrtc server extension, on 127.0.0.1; stopped by its PID."""
    root = tmp_path_factory.mktemp("lab")
    for sub in ("config", "settings", "workspaces", "runtime"):
        (root / sub).mkdir()
    notif = root / "settings" / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    log = root / "lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--ServerApp.jpserver_extensions={'remotemedia_nbrtc.server': True}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    server = Lab(url, token, root, proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early:\n{log.read_text()[-3000:]}")
            try:
                server.api("api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture(scope="session")
def browser(speech_wav: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-gpu",
            ],
        )
        try:
            yield b
        finally:
            b.close()
