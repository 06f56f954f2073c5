"""Browser E2E fixtures: real Jupyter servers (subprocesses) and headless Chromium (Playwright).

Chromium's fake mic plays a WAV made with espeak-ng at test time, its fake camera a y4m made with
ffmpeg; ICE is kept on 127.0.0.1 (``--allow-loopback-in-peer-connection`` in the browser,
``loopback_only=True`` in the kernel). Firefox ESR is driven from node (``tests/js``, puppeteer-core over
WebDriver BiDi). Run inside a loopback-only namespace in CI:
``unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/pytest tests/browser``.

A missing browser or tool is a failure, not a skip: CI must install them (``.ci/setup``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotemedia_nbrtc.testing.jupyter import App, JupyterServer
from tests.tools import CHROMIUM, missing_tools

FIREFOX = "/usr/bin/firefox-esr"
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
JS_DIR = REPO / "tests" / "js"
#: a host name that is not "potentially trustworthy" (so not a secure context), resolved to 127.0.0.1
INSECURE_HOST = "rm-insecure.test"
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
]


def require_tools(*names: str, hint: str = "run .ci/setup") -> None:
    """Fail (never skip) when a tool the browser tests need is missing."""
    missing = missing_tools(*names)
    if missing:
        pytest.fail(f"browser E2E needs {', '.join(missing)} (missing): {hint}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _base_tools() -> None:
    require_tools("espeak-ng", "sox", "ffmpeg", CHROMIUM,
                  hint="apt-get install -y chromium espeak-ng sox ffmpeg (see .ci/setup)")


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


@pytest.fixture(scope="session")
def two_tone_y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A still camera picture, 320x240 @ 15 fps: bright yellow top half, dark blue bottom half.

    Colourful and not symmetric top/bottom, so the returned video shows whether a pipeline made it grey
    and flipped it.
    """
    out = tmp_path_factory.mktemp("video") / "two_tone.y4m"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "color=c=yellow:s=320x240:r=15:d=1,drawbox=x=0:y=120:w=320:h=120:color=blue:t=fill",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    assert out.stat().st_size > 15 * 320 * 240  # 15 frames
    return out


def start_server(root: Path, app: App = "lab") -> JupyterServer:
    """Start ``jupyter lab`` (app="lab") or ``jupyter notebook`` (app="notebook") serving ``root``; wait for it."""
    return JupyterServer.start(
        root, app=app, env={"PYTHONUNBUFFERED": "1"}, request_timeout=5.0,
        # test_lab_errors opens the Lab as http://rm-insecure.test:<port>/ (a non-secure context, mapped to
        # 127.0.0.1 by Chromium): let the server's DNS-rebinding check accept that Host header
        extra_args=[f"--ServerApp.local_hostnames=['localhost', '{INSECURE_HOST}']"],
    )


def stop_server(server: JupyterServer) -> None:
    """SIGTERM by PID (the server stops its kernels), kill after 20 s; keep the log as an artifact."""
    server.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(server.log, ARTIFACTS / server.log.name.replace(".log", "-server.log"))


@contextlib.contextmanager
def running_server(root: Path, app: App) -> Iterator[JupyterServer]:
    """:func:`start_server`, then :func:`stop_server` on exit."""
    server = start_server(root, app)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """JupyterLab with the remotemedia_nbrtc server extension, on 127.0.0.1; stopped by its PID."""
    with running_server(tmp_path_factory.mktemp("lab"), "lab") as server:
        yield server


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance: Any, speech_wav: Path) -> Iterator[Any]:
    """Chromium whose fake mic plays ``speech_wav`` once (then silence)."""
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}%noloop"],
    )
    try:
        yield b
    finally:
        b.close()
