"""Two kernels x two browser pages at once over WebRTC (one JupyterLab, two notebooks, each page streaming the
fake mic into its own kernel): each kernel hears audio, each page shows only its own kernel's results."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from .conftest import ARTIFACTS, JupyterServer
from .nbpage import notebook_page, run_cell, wait_connected, wait_output, widget

pytestmark = pytest.mark.timeout(120)


def cells(mark: str) -> list[str]:
    setup = f"""\
import os
import remotemedia_nbrtc as rm
MARK = {mark!r}

class Mark(rm.Node):
    def __init__(self):
        self.n = 0
    def process(self, data):
        if isinstance(data, rm.AudioData):
            self.n += 1
            if self.n % 25 == 0:
                return rm.TextData(f"kernel {{MARK}} frame {{self.n}}")

p = rm.Pipeline("mark-" + MARK)
p.add("mark", Mark())
print("SETUP_OK")
"""
    stream = ("h = rm.stream(p, audio=True, video=False, plot=False, loopback_only=True,"
              " options=rm.StreamOptions(audio_transport='rtp'))\nh\n")
    check = """\
texts = [o.text for o in h.outputs if isinstance(o, rm.TextData)]
print("MINE", sum(1 for t in texts if t.startswith(f"kernel {MARK} ")), "OTHER",
      sum(1 for t in texts if not t.startswith(f"kernel {MARK} ")), "PID", os.getpid(), "SESSIONS", len(h.sessions()))
"""
    return [setup, stream, check, "h.close()\nprint('CLOSED', h.closed)\n"]


def test_two_kernels_two_pages_at_once_no_crosstalk(browser: Any, lab: JupyterServer) -> None:
    with contextlib.ExitStack() as stack:
        pages = {m: stack.enter_context(notebook_page(browser, lab, f"multi_{m}.ipynb", cells(m),
                                                       console_log=f"multi-{m}-console.log")) for m in "AB"}
        for page in pages.values():
            run_cell(page, 1, wait=False)
        for page in pages.values():
            wait_connected(page, 1)
        status = lab.api("remotemedia/status")
        assert status["kernels"] >= 2 and status["connections"] >= 2, status
        results: dict[str, tuple[int, int, int, int]] = {}
        deadline = time.monotonic() + 20
        for mark, page in pages.items():
            while True:
                run_cell(page, 2)
                m = wait_output(page, 2, r"MINE (\d+) OTHER (\d+) PID (\d+) SESSIONS (\d+)")
                results[mark] = tuple(int(g) for g in m.groups())  # type: ignore[assignment]
                if results[mark][0] >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        for mark, page in pages.items():
            mine, other, _, sessions = results[mark]
            assert mine >= 3 and other == 0 and sessions == 1, (mark, results)
            lines = widget(page, 1).locator(".rm-text .rm-line").all_inner_texts()
            other_mark = "B" if mark == "A" else "A"
            assert any(f"kernel {mark} " in t for t in lines), (mark, lines)
            assert not any(f"kernel {other_mark} " in t for t in lines), (mark, lines)
            page.screenshot(path=str(ARTIFACTS / f"multi-{mark}.png"))
        assert results["A"][2] != results["B"][2]  # two kernel processes
        for page in pages.values():
            run_cell(page, 3)
            wait_output(page, 3, "CLOSED True")
