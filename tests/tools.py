"""Tools the tests need. CI installs every one of them (``.ci/setup``), so a missing tool fails the
test that needs it; it is never a skip (a skip would count as a pass)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Debian's Chromium, driven through Playwright's ``executable_path`` (``RM_CHROMIUM`` overrides it).
CHROMIUM = os.environ.get("RM_CHROMIUM", "/usr/bin/chromium")


def missing_tools(*names: str) -> list[str]:
    """Executables (names on PATH or absolute paths) that are not there."""
    return [n for n in names if (not Path(n).exists() if os.path.isabs(n) else shutil.which(n) is None)]


def require_tools(*names: str, hint: str = "run .ci/setup") -> None:
    """Fail (never skip) when a tool is missing."""
    missing = missing_tools(*names)
    if missing:
        pytest.fail(f"this test needs {', '.join(missing)} (missing): {hint}", pytrace=False)
