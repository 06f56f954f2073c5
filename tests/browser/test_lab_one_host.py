"""The kernel and the browser on one machine whose only interface is lo, without ``loopback_only=True``.

That is the test namespace (``unshare -n``): aioice leaves 127.0.0.1 out of its host addresses, so the
kernel's peer used to offer no candidate at all and WebRTC never connected (``WebRTC not connected within
5 s (ICE new, 2 usable local candidate(s))``). Now the kernel offers 127.0.0.1 when it has no other address:

- a browser that offers loopback candidates (Chromium with ``--allow-loopback-in-peer-connection``, the
  shared test browser) connects over WebRTC on 127.0.0.1;
- a stock Chromium (no flag) gathers no candidate at all on such a machine, so WebRTC cannot connect:
  the widget moves to the WebSocket right away (not after ``webrtc_timeout_s``) and says why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cells import SETUP_OK, VAD_PIPELINE
from .conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, JupyterServer
from .nbpage import notebook_page, run_cell, wait_output, widget

pytestmark = pytest.mark.timeout(120)

SETUP = VAD_PIPELINE + "h = None\n" + SETUP_OK

WEBRTC = """\
if h is not None: h.close()
h = stream(p, audio=True, plot=["rms_dbfs"], show_stats=True, options=StreamOptions(transport="webrtc"))
h
"""

AUTO = """\
if h is not None: h.close()
h = stream(p, audio=True, plot=["rms_dbfs"], show_stats=True, options=StreamOptions(webrtc_timeout_s=10))
h
"""

CHECK = """\
m = h.metrics()
print("PATH", m["path"], "|", m["transport"]["reason"], "|", "LEVELS", m["nodes"].get("level", {}).get("frames_out", 0))
"""

CLOSE = "if h is not None: h.close()\nprint('CLOSED', h is None or h.closed)\n"


def _run(page: Any, cells_from: int = 1) -> None:
    run_cell(page, cells_from)
    widget(page, cells_from).wait_for(timeout=15_000)


def _kernel_levels(page: Any, want_path: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        run_cell(page, 2)
        text = wait_output(page, 2, r"LEVELS (\d+)").string
        levels = int(text.rsplit("LEVELS", 1)[1].split()[0])
        if (f"PATH {want_path} " in text and levels >= 10) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


@pytest.fixture
def lab_page(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    with notebook_page(browser, lab, "one_host.ipynb", [SETUP, WEBRTC, CHECK, CLOSE],
                       console_log="one-host-console.log") as page:
        yield page
        run_cell(page, 3)
        wait_output(page, 3, "CLOSED True")


def test_webrtc_connects_on_loopback_without_loopback_only(lab_page: Any) -> None:
    page = lab_page
    _run(page)
    w = widget(page, 1)
    w.and_(page.locator("[data-state='connected']")).wait_for(timeout=20_000)
    assert w.get_attribute("data-path") == "webrtc"
    pair = w.locator(".rm-stats tr[data-key='selected pair'] td")
    page.wait_for_function(
        """() => { const td = document.querySelector(".rm-stats tr[data-key='selected pair'] td");
                   return td && td.textContent.includes('127.0.0.1'); }""", timeout=10_000, polling=200)
    assert pair.inner_text().count("127.0.0.1") == 2, pair.inner_text()
    text = _kernel_levels(page, "webrtc")
    assert "PATH webrtc " in text and int(text.rsplit("LEVELS", 1)[1].split()[0]) >= 10, text
    page.screenshot(path=str(ARTIFACTS / "one-host-webrtc.png"))


@pytest.fixture
def stock_chromium_page(playwright_instance: Any, lab: JupyterServer, speech_wav: Path) -> Iterator[Any]:
    """A Chromium as a user has it: no --allow-loopback-in-peer-connection."""
    args = [a for a in CHROMIUM_ARGS if a != "--allow-loopback-in-peer-connection"]
    assert len(args) == len(CHROMIUM_ARGS) - 1
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM,
                                            args=[*args, f"--use-file-for-fake-audio-capture={speech_wav}"])
    try:
        with notebook_page(b, lab, "one_host_stock.ipynb", [SETUP, AUTO, CHECK, CLOSE],
                           console_log="one-host-stock-console.log") as page:
            yield page
            run_cell(page, 3)
            wait_output(page, 3, "CLOSED True")
    finally:
        b.close()


def test_stock_chromium_without_a_network_moves_to_the_websocket_at_once(stock_chromium_page: Any) -> None:
    page = stock_chromium_page
    t0 = time.monotonic()
    _run(page)
    w = widget(page, 1)
    w.and_(page.locator("[data-state='connected']")).wait_for(timeout=20_000)
    took = time.monotonic() - t0
    assert w.get_attribute("data-path") == "websocket"
    assert took < 8, f"fell back after {took:.1f} s: the webrtc_timeout_s of 10 s, not the no-candidate check"
    text = _kernel_levels(page, "websocket")
    assert "PATH websocket | this browser offers WebRTC no network address" in text, text
    assert int(text.rsplit("LEVELS", 1)[1].split()[0]) >= 10, text
    page.screenshot(path=str(ARTIFACTS / "one-host-stock.png"))
