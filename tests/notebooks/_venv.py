"""A fresh virtualenv for install tests: no system site-packages, the user's Jupyter/Python settings left out.

Packages come from a local wheelhouse when there is one (CI runs the tests in a network namespace with no
route to a package index): ``$RM_WHEELHOUSE``, else ``.wheelhouse/`` at the repo root, filled by ``.ci/setup``
(``pip download -d .wheelhouse -r binder/requirements.txt hatchling editables``). Without a wheelhouse the
configured package index is used if it is reachable; with neither, the test fails (never skips).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def wheelhouse() -> Path | None:
    path = Path(os.environ.get("RM_WHEELHOUSE", REPO / ".wheelhouse"))
    return path if path.is_dir() and any(path.glob("*.whl")) else None


def index_reachable(host: str = "pypi.org", port: int = 443) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def run(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; a non-zero exit fails the test with the tail of its output."""
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def fresh_venv(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """``(bin_dir, env)`` of a new venv under ``tmp_path``; ``env`` points pip at the wheelhouse when there is one."""
    house = wheelhouse()
    if house is None and not index_reachable():
        pytest.fail("no wheelhouse (.wheelhouse/ or $RM_WHEELHOUSE) and no reachable package index: "
                    "run .ci/setup, which downloads it")
    venv = tmp_path / "venv"
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
    (tmp_path / "home").mkdir(exist_ok=True)
    if house is not None:  # offline: the same options reach `pip install .` and its build env
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(house))
    else:  # online: keep the user's pip cache (HOME moved) so a re-run does not download again
        env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    return bin_dir, env
