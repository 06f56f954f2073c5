"""JupyterLab + the stream widget + Chromium's fake mic (a WAV) -> WebRTC -> the pipeline in the kernel.

One JupyterLab per session and one notebook (one kernel) for this module, driven through JupyterLab's
command registry (``expose_app_in_browser``) with the waits that proved reliable in testing-recipes §6.
Each test runs the cells it needs; they share the kernel to keep the file fast.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .cells import CLOSE, SETUP_OK, VAD_PIPELINE
from .conftest import ARTIFACTS, REPO, JupyterServer
from .nbpage import notebook_page, run_cell, wait_output, widget

pytestmark = pytest.mark.timeout(120)

SETUP = "import threading\nfrom remotemedia_nbrtc.stream import live_handles\n" + VAD_PIPELINE + SETUP_OK

STREAM = """\
h = stream(p, audio=True, video=False, plot=["rms_dbfs"], loopback_only=True, show_stats=True)
h
"""

CHECK_AUDIO = """\
m = h.metrics()
frames = sum(peer["frames_in"].get("audio", {}).get("frames", 0) + (peer.get("dc_audio") or {}).get("frames_in", 0)
             for peer in m["peers"])
levels = m["nodes"]["level"]["frames_out"]
print("AUDIO_OK" if frames >= 50 and levels >= 10 else f"AUDIO_LOW frames={frames} levels={levels}")
print("KERNEL_TEXT", [o.text for o in list(h.outputs) if hasattr(o, "text")][:3])
print("E2E_RTT", m["browser"].get("e2e_rtt_ms"))
"""

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
print("LIVE", len(live_handles()), "THREADS", len(names), "DISPLAY", \
sum(n.startswith("remotemedia-display") for n in names))
"""


@pytest.fixture(scope="module")
def nb(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    """A page with the test notebook open and its kernel idle: cells SETUP, STREAM, CHECK_AUDIO, COUNT, CLOSE,
    NO_EXTENSION."""
    cells = [SETUP, STREAM, CHECK_AUDIO, COUNT, CLOSE, NO_EXTENSION]
    with notebook_page(browser, lab, "e2e.ipynb", cells, console_log="e2e-console.log") as page:
        yield page


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
    plot = w.locator("canvas.rm-plot")
    page.wait_for_function(
        "() => { const i = document.querySelector('canvas.rm-plot'); return i && +i.dataset.frames >= 5; }",
        timeout=15_000,
    )
    first = int(plot.get_attribute("data-frames") or 0)
    time.sleep(0.6)
    assert int(plot.get_attribute("data-frames") or 0) > first, "the plot stopped updating"
    assert plot.evaluate("c => c.width") > 100
    # the canvas is drawn from the kernel's data: the level trace's points, its newest value a plausible
    # dBFS, and pixels of the trace's colour (#1f77b4) inside the axes
    drawn = plot.evaluate("""c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                                    let blue = 0;
                                    for (let i = 0; i < d.length; i += 4)
                                      if (Math.abs(d[i] - 31) < 40 && Math.abs(d[i + 1] - 119) < 40"""
                          """ && d[i + 2] > 150) blue++;
                                    return { points: +c.dataset.points, last: +c.dataset.last, blue }; }""")
    assert drawn["points"] >= 5 and -120 < drawn["last"] <= 0 and drawn["blue"] > 50, drawn

    # text results from the pipeline (VAD events over the data channel) appear in the widget
    w.locator(".rm-text .rm-line", has_text="speech started").first.wait_for(timeout=15_000)
    # a long text log, scrolled to its newest line as the widget does, shows whole lines only (the top one was cut)
    geometry = w.locator(".rm-text").evaluate("""(el) => {
        for (let i = 0; i < 30; i++) { const d = document.createElement("div"); d.className = "rm-line";
            d.textContent = "line " + i + " " + "x".repeat(i * 7); el.appendChild(d); }
        el.scrollTop = el.scrollHeight;
        const box = el.getBoundingClientRect(), lines = [...el.querySelectorAll(".rm-line")];
        const cut = lines.filter((l) => { const r = l.getBoundingClientRect();
            return r.bottom > box.top + 0.5 && r.top < box.bottom - 0.5"""
        """ && (r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5); });
        const shown = lines.filter((l) => { const r = l.getBoundingClientRect();"""
        """ return r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5; });
        const out = { cut: cut.length, shown: shown.length };
        for (let i = 0; i < 30; i++) el.lastElementChild.remove();
        return out; }""")
    assert geometry["cut"] == 0 and geometry["shown"] == 8, geometry

    # the stats panel shows ICE details and a measured end-to-end latency: the widget pings through the
    # pipeline once a second, so several answered pings must give a plausible, stable median
    rtt_cell = ".rm-stats tr[data-key='end-to-end RTT'] td"
    page.wait_for_function(
        """(sel) => { const td = document.querySelector(sel);
                      return td && /^\\d+(\\.\\d+)? ms \\(browser/.test(td.textContent); }""",
        arg=rtt_cell, timeout=15_000, polling=100,
    )
    rtt_ms = float(w.locator(rtt_cell).inner_text().split(" ")[0])
    assert 0 < rtt_ms < 1000, rtt_ms
    assert "host" in w.locator(".rm-stats tr[data-key='ICE local'] td").inner_text()
    assert "127.0.0.1" in w.locator(".rm-stats tr[data-key='selected pair'] td").inner_text()
    assert w.locator(".rm-stats tr[data-key='secure context'] td").inner_text() == "true"
    assert w.locator(".rm-stats tr[data-key='host'] td").inner_text() == "jupyterlab"
    # the default audio_transport="auto" on a page served from 127.0.0.1: audio rides the rm-audio data channel
    page.wait_for_function(
        """() => { const td = document.querySelector(".rm-stats tr[data-key='audio path'] td");
                   return td && /sent [1-9]/.test(td.textContent); }""", timeout=10_000, polling=200)
    audio_path = w.locator(".rm-stats tr[data-key='audio path'] td").inner_text()
    assert audio_path.startswith("data channel, pcm16 ") and "(track-processor)" in audio_path, audio_path
    w.screenshot(path=str(ARTIFACTS / "e2e-widget.png"))

    # the kernel received the fake mic's audio, its tap saw the text outputs, and the browser reported the
    # latency to the kernel (stats go up once a second: poll the cell instead of sleeping a fixed time)
    deadline = time.monotonic() + 10
    while True:
        run_cell(page, 2)
        text = wait_output(page, 2, r"E2E_RTT (\S+)").string
        if ("AUDIO_OK" in text and "KERNEL_TEXT ['speech started'" in text
                and re.search(r"E2E_RTT [\d.]+", text)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "AUDIO_OK" in text, text
    assert "KERNEL_TEXT ['speech started'" in text, text
    m = re.search(r"E2E_RTT ([\d.]+)", text)
    assert m and 0 < float(m.group(1)) < 1000, text
    print(f"connected {t_connected:.2f} s after the cell run; e2e RTT {rtt_ms} ms (kernel saw {m.group(1)} ms)")

    save_readme_screenshot(page, w)
    page.screenshot(path=str(ARTIFACTS / "e2e-final.png"), full_page=True)


def save_readme_screenshot(page: Any, w: Any) -> None:
    """``tests/artifacts/widget.png``: the widget with its live level plot and VAD text, stats hidden.

    ``scripts/refresh-readme-screenshot`` copies it to ``docs/widget.png`` for the README; a test run never
    touches the tracked file.
    """
    readme_png = REPO / "docs" / "widget.png"
    before = readme_png.read_bytes() if readme_png.exists() else None
    w.locator(".rm-text .rm-line", has_text="speech ended").first.wait_for(timeout=15_000)
    time.sleep(0.5)  # one more plot frame with the end of the speech in it
    w.locator("button.rm-stats-toggle").click()
    w.locator(".rm-stats").wait_for(state="hidden", timeout=5_000)
    box = w.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 200, box
    pad = 8
    clip = {"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
            "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad}
    out = ARTIFACTS / "widget.png"
    page.screenshot(path=str(out), clip=clip)
    w.locator("button.rm-stats-toggle").click()  # back as it was
    assert out.stat().st_size > 10_000
    after = readme_png.read_bytes() if readme_png.exists() else None
    assert after == before, "a test run changed the tracked docs/widget.png"


def test_rerunning_the_widget_cell_keeps_one_session_and_no_threads_leak(nb: Any, lab: JupyterServer) -> None:
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


def test_a_closed_session_shows_an_actionable_error(nb: Any, lab: JupyterServer) -> None:
    page = nb
    if page.locator(".rm-widget[data-state='connected']").count() == 0:
        run_cell(page, 1)
        page.wait_for_selector(".rm-widget[data-state='connected']", timeout=20_000)
    run_cell(page, 4)
    wait_output(page, 4, "CLOSED True")
    w = widget(page, 1)
    page.wait_for_function(
        "() => { const r = document.querySelector('.rm-widget'); "
        "return r && ['closed', 'error'].includes(r.dataset.state); }",
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
