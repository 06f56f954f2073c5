"""Writes one section of bench/results.md, replacing the section of the same name."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).with_name("results.md")
PACKAGES = ("aiortc", "aioice", "av", "numpy", "jupyter_server", "pocketsphinx")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}; " + ", ".join(versions))


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "?"
    except Exception:
        return "?"


def write_section(title: str, body: str, command: str | None = None) -> None:
    """Replace (or append) the ``## title`` section of results.md."""
    command = command or "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"## {title}\n\nCommand: `{command}`  \nRun: {stamp}, commit {git_rev()}  \n"
               f"Machine: {machine()}\n\n{body.strip()}\n")
    text = (RESULTS.read_text() if RESULTS.exists()
            else "# Benchmark results\n\nEach section is rewritten by the command it names.\n")
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def percentiles(values: list[float], qs=(0.5, 0.95, 0.99)) -> list[float]:
    import numpy as np

    return [float(np.percentile(values, q * 100)) for q in qs] if values else [float("nan")] * len(qs)
