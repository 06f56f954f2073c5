"""A tool CI installs (espeak-ng, Chromium) that is missing makes its tests fail, never skip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_pytest(node_id: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", node_id],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True, timeout=90,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("node_id", [
    "tests/nodes/test_speech.py::test_word_accuracy_counts_substitutions_deletions_insertions",
    "tests/transport/test_stt_over_webrtc.py",
])
def test_missing_espeak_is_a_failure(node_id: str, tmp_path: Path) -> None:
    # a PATH holding only python: no espeak-ng
    (tmp_path / "python").symlink_to(sys.executable)
    out = run_pytest(node_id, {"PATH": str(tmp_path)})
    assert "skipped" not in out, out
    assert re.search(r"\d+ (failed|error)", out) and "espeak-ng" in out, out


def test_missing_chromium_is_a_failure() -> None:
    out = run_pytest("tests/standalone/test_server.py::test_browser_test_page_streams_mic_to_pipeline",
                     {"RM_CHROMIUM": "/nonexistent/chromium"})
    assert "skipped" not in out, out
    assert "1 failed" in out and "/nonexistent/chromium" in out, out
