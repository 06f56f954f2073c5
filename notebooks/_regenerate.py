"""Execute the example notebooks and store their outputs (what ``pytest --nbval`` compares against).

Usage (from the repo root)::

    .venv/bin/python notebooks/_regenerate.py                 # every notebooks/NN_*.ipynb
    .venv/bin/python notebooks/_regenerate.py notebooks/02_realtime_audio_effects.ipynb

Run it after changing a notebook, then check the diff: only outputs that are meant to be compared should
change. The kernel is started the way nbval starts it (no Jupyter server, so no server extension), from
the notebooks' folder, with the ``python3`` kernelspec. Execution counts are kept (nbval treats a cell with
outputs but no count as an error); timing metadata and widget state are not stored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def regenerate(path: Path, timeout: int = 120) -> float:
    """Execute ``path`` in place; returns the wall time in seconds. Raises on a failing cell."""
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(
        nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    ).execute()
    elapsed = time.monotonic() - started
    nb.metadata.pop("widgets", None)  # widget state of the run: noise in the diff
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9][0-9]_*.ipynb")
    parser.add_argument("--timeout", type=int, default=120, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        print(f"{path.name}: running ...", flush=True)
        print(f"{path.name}: done in {regenerate(path.resolve(), args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
