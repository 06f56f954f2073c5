"""JupyterLab + the stream widget + Chromium's fake mic (a WAV) -> WebRTC -> the pipeline in the kernel.

One JupyterLab per session and one notebook (one kernel) for this module, driven through JupyterLab's
command registry (``expose_app_in_browser``) with the waits that proved reliable in testing-recipes §6.
Each test runs the cells it needs; they share the kernel to keep the file fast.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(120)

SETUP = """\
import threading
from remotemedia_nbrtc.stream import stream, live_handles
from remotemedia_nbrtc.runtime import Node, Pipeline, TextData
from remotemedia_nbrtc.nodes import AudioChunker, AudioLevel, EnergyVAD, FastResample

class SpeechEvents(Node):
    def process(self, data):
        v = getattr(data, "value", None)
        if isinstance(v, dict) and v.get("is_speech_start"):
            return TextData("speech started", channel="ui")
        if isinstance(v, dict) and v.get("is_speech_end"):
            return TextData("speech ended", channel="ui")
        return None

p = Pipeline("demo")
p.add("resample", FastResample(target_rate=16000, channels=1))
p.add("chunk", AudioChunker(chunk_size=1600))
p.add("level", AudioLevel())
p.add("vad", EnergyVAD(threshold_db=-40, passthrough=False), is_output_node=True)
p.add("events", SpeechEvents())
p.chain("resample", "chunk", "level")
p.connect("chunk", "vad").connect("vad", "events")
print("SETUP_OK")
"""

STREAM = """\
h = stream(p, audio=True, video=False, plot=["rms_dbfs"], loopback_only=True, show_stats=True)
h
"""

CHECK_AUDIO = """\
m = h.metrics()
frames = sum(peer["frames_in"].get("audio", {}).get("frames", 0) for peer in m["peers"])
levels = m["nodes"]["level"]["frames_out"]
print("AUDIO_OK" if frames >= 50 and levels >= 10 else f"AUDIO_LOW frames={frames} levels={levels}")
print("KERNEL_TEXT", [o.text for o in list(h.outputs) if hasattr(o, "text")][:3])
print("E2E_RTT", m["browser"].get("e2e_rtt_ms"))
"""

CLOSE = "h.close()\nprint('CLOSED', h.closed)\n"

NO_EXTENSION = """\
import os
saved = os.environ.pop("REMOTEMEDIA_NBRTC_LINK_URL")
try:
    h2 = stream(p, loopback_only=True)
finally:
    os.environ["REMOTEMEDIA_NBRTC_LINK_URL"] = saved
h2
"""

COUNT = """\
names = sorted(t.name for t in threading.enumerate())
print("LIVE", len(live_handles()), "THREADS", len(names), "DISPLAY", sum(n.startswith("remotemedia-display") for n in names))
"""


def write_notebook(path: Path, sources: list[str]) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(sources)]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}}
    path.write_text(json.dumps(nb))


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
    wait_kernel_idle(page, 30_000)


def wait_kernel_idle(page: Any, timeout: float = 20_000) -> None:
    page.wait_for_function(
        """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                   const s = w && w.sessionContext;
                   return !!(s && s.isReady && s.session && s.session.kernel && s.session.kernel.status === 'idle'); }""",
        timeout=timeout, polling=100,
    )


def run_cell(page: Any, index: int, *, wait: bool = True) -> None:
    page.evaluate(
        """async (i) => { const app = window.jupyterapp; const panel = app.shell.currentWidget;
                          panel.content.activeCellIndex = i; panel.content.deselectAll();
                          await app.commands.execute('notebook:run-cell'); }""",
        index,
    )
    if wait:
        wait_kernel_idle(page)


def output_text(page: Any, index: int) -> str:
    return str(page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea").inner_text())


def wait_output(page: Any, index: int, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = output_text(page, index)
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(0.1)
    raise AssertionError(f"cell {index} output has no {pattern!r}: {text!r}")


@pytest.fixture(scope="module")
def nb(browser: Any, lab: Lab) -> Iterator[Any]:
    """A page with the test notebook open and its kernel idle: cells SETUP, STREAM, CHECK_AUDIO, COUNT, CLOSE, NO_EXTENSION."""
    write_notebook(lab.root / "e2e.ipynb", [SETUP, STREAM, CHECK_AUDIO, COUNT, CLOSE, NO_EXTENSION])
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        open_notebook(page, lab, "e2e.ipynb")
        run_cell(page, 0)
        wait_output(page, 0, "SETUP_OK")
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "e2e-console.log").write_text("\n".join(console))
        context.close()


def widget(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".rm-widget")


def test_widget_streams_fake_mic_to_the_kernel_and_shows_results(nb: Any) -> None:
    page = nb
    t0 = time.monotonic()
    run_cell(page, 1)
    w = widget(page, 1)
    w.wait_for(timeout=15_000)  # the widget rendered
    page.wait_for_selector(".rm-widget[data-state='connected']", timeout=20_000)
    t_connected = time.monotonic() - t0
    page.screenshot(path=str(ARTIFACTS / "e2e-connected.png"))

    # the level plot under the cell updates (PNG frames pushed from the kernel)
    plot = w.locator("img.rm-plot")
    page.wait_for_function(
        "() => { const i = document.querySelector('img.rm-plot'); return i && +i.dataset.frames >= 5; }",
        timeout=15_000,
    )
    first = int(plot.get_attribute("data-frames") or 0)
    time.sleep(0.6)
    assert int(plot.get_attribute("data-frames") or 0) > first, "the plot stopped updating"
    assert plot.evaluate("img => img.naturalWidth") > 100

    # text results from the pipeline (VAD events over the data channel) appear in the widget
    w.locator(".rm-text .rm-line", has_text="speech started").first.wait_for(timeout=15_000)

    # the stats panel shows ICE details and a measured end-to-end latency
    rtt_row = w.locator(".rm-stats tr[data-key='end-to-end RTT'] td")
    page.wait_for_function(
        """() => { const td = document.querySelector(".rm-stats tr[data-key='end-to-end RTT'] td");
                   return td && /^\\d+(\\.\\d+)? ms/.test(td.textContent); }""",
        timeout=15_000,
    )
    rtt_ms = float(rtt_row.inner_text().split(" ")[0])
    assert 0 < rtt_ms < 1000
    assert "host" in w.locator(".rm-stats tr[data-key='ICE local'] td").inner_text()
    assert "127.0.0.1" in w.locator(".rm-stats tr[data-key='selected pair'] td").inner_text()
    assert w.locator(".rm-stats tr[data-key='secure context'] td").inner_text() == "true"
    assert w.locator(".rm-stats tr[data-key='host'] td").inner_text() == "jupyterlab"
    w.screenshot(path=str(ARTIFACTS / "e2e-widget.png"))

    # the kernel received the fake mic's audio, and its tap saw the text outputs
    time.sleep(1.2)  # let the browser report its stats (1 Hz) to the kernel
    run_cell(page, 2)
    wait_output(page, 2, "AUDIO_OK")
    wait_output(page, 2, r"KERNEL_TEXT \['speech started'")
    m = wait_output(page, 2, r"E2E_RTT ([\d.]+)")
    assert float(m.group(1)) > 0
    print(f"connected {t_connected:.2f} s after the cell run; e2e RTT {rtt_ms} ms")
    page.screenshot(path=str(ARTIFACTS / "e2e-final.png"), full_page=True)


def test_rerunning_the_widget_cell_keeps_one_session_and_no_threads_leak(nb: Any, lab: Lab) -> None:
    page = nb
    counts: list[tuple[int, int, int]] = []
    for _ in range(3):
        run_cell(page, 1)
        page.wait_for_selector(".rm-widget[data-state='connected']", timeout=20_000)
        assert widget(page, 1).count() == 1
        time.sleep(0.5)  # the old peer's teardown settles
        run_cell(page, 3)
        m = wait_output(page, 3, r"LIVE (\d+) THREADS (\d+) DISPLAY (\d+)")
        counts.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    status = lab.api("remotemedia/status")
    assert [c[0] for c in counts] == [1, 1, 1], counts
    assert [c[2] for c in counts] == [1, 1, 1], counts
    assert counts[2][1] <= counts[0][1], f"threads grew over re-runs: {counts}"
    assert status["sessions"] == 1 and status["connections"] == 1, status
    page.screenshot(path=str(ARTIFACTS / "rerun-final.png"))


def test_a_closed_session_shows_an_actionable_error(nb: Any, lab: Lab) -> None:
    page = nb
    if page.locator(".rm-widget[data-state='connected']").count() == 0:
        run_cell(page, 1)
        page.wait_for_selector(".rm-widget[data-state='connected']", timeout=20_000)
    run_cell(page, 4)
    wait_output(page, 4, "CLOSED True")
    w = widget(page, 1)
    page.wait_for_function(
        "() => { const r = document.querySelector('.rm-widget'); return r && ['closed', 'error'].includes(r.dataset.state); }",
        timeout=10_000,
    )
    assert lab.api("remotemedia/status")["sessions"] == 0
    # the kernel no longer serves this session: Start tells the user to re-run the cell
    w.locator("button.rm-start").click()
    err = w.locator(".rm-error")
    err.wait_for(state="visible", timeout=10_000)
    assert re.search(r"re-run the cell", err.inner_text()), err.inner_text()
    page.screenshot(path=str(ARTIFACTS / "closed-session.png"))


def test_a_kernel_without_the_extension_link_shows_what_to_do(nb: Any) -> None:
    page = nb
    run_cell(page, 5)
    w = widget(page, 5)
    w.wait_for(timeout=10_000)
    err = w.locator(".rm-error")
    err.wait_for(state="visible", timeout=10_000)
    assert "server extension" in err.inner_text() and "jupyter server extension list" in err.inner_text()
    assert w.get_attribute("data-state") == "error"
    page.screenshot(path=str(ARTIFACTS / "no-extension.png"))
