"""Smoke E2E in Notebook 7 (``jupyter notebook``): the widget renders, connects and streams the fake mic.

Same server options as the JupyterLab tests; the page is ``/notebooks/<name>.ipynb``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .cells import SETUP_OK
from .conftest import ARTIFACTS, JupyterServer, running_server
from .nbpage import new_page, open_notebook, run_cell, wait_connected, wait_output, widget, write_notebook

pytestmark = pytest.mark.timeout(120)

SETUP = """\
from remotemedia_nbrtc.stream import stream
from remotemedia_nbrtc.runtime import Pipeline
from remotemedia_nbrtc.nodes import AudioLevel, FastResample

p = Pipeline("levels")
p.add("resample", FastResample(target_rate=16000, channels=1))
p.add("level", AudioLevel())
p.chain("resample", "level")
""" + SETUP_OK

STREAM = "h = stream(p, audio=True, plot=['rms_dbfs'], loopback_only=True)\nh\n"

# (browser -> kernel widget updates wait while a cell runs: poll only the media counters here)
CHECK = """\
import time
for _ in range(50):
    m = h.metrics()
    frames = sum(peer["frames_in"].get("audio", {}).get("frames", 0) + (peer.get("dc_audio") or {}).get("frames_in", 0)
             for peer in m["peers"])
    if frames >= 50 and m["nodes"]["level"]["frames_out"] >= 10:
        break
    time.sleep(0.1)
print("FRAMES", frames, "LEVELS", m["nodes"]["level"]["frames_out"], "HOST", h.widget.host)  \
# set by the browser at render
h.close()
"""


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with running_server(tmp_path_factory.mktemp("nb7"), "notebook") as server:
        yield server


def test_notebook7_renders_the_widget_and_streams_audio(browser: Any, notebook7: JupyterServer) -> None:
    write_notebook(notebook7.root / "nb7.ipynb", [SETUP, STREAM, CHECK])
    page = new_page(browser)
    try:
        open_notebook(page, notebook7, "nb7.ipynb")
        assert page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).appName") \
            == "Jupyter Notebook"
        run_cell(page, 0)
        wait_output(page, 0, "SETUP_OK")
        run_cell(page, 1)
        wait_connected(page, 1)
        page.wait_for_function(
            "() => { const i = document.querySelector('canvas.rm-plot'); return i && +i.dataset.frames >= 2; }",
            timeout=15_000,
        )
        run_cell(page, 2)
        m = wait_output(page, 2, r"FRAMES (\d+) LEVELS (\d+) HOST (\S+)")
        assert int(m.group(1)) >= 50 and int(m.group(2)) >= 10, m.group(0)
        assert m.group(3) == "notebook7", m.group(0)
        page.wait_for_function(
            "() => ['closed', 'error'].includes(document.querySelector('.rm-widget').dataset.state)", timeout=10_000
        )
        assert widget(page, 1).get_attribute("data-state") == "closed"
    finally:
        page.screenshot(path=str(ARTIFACTS / "notebook7.png"), full_page=True)
        page.context.close()
