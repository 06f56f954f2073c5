"""Smoke E2E in Voila (the ``voila.server_extension`` route of the same Jupyter server).

Voila runs the notebook on render, so the kernel's work is checked through what it sends back: the
widget connects over the extension's WebSocket, the level plot (rendered in the kernel from the fake mic's
audio) updates, and the extension's status lists the connection. Standalone ``voila x.ipynb`` serves no
Jupyter server extensions, so the remotemedia route (and this widget) needs the server-extension route.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import pytest

from .conftest import ARTIFACTS, JupyterServer
from .nbpage import new_page, write_notebook
from .test_notebook7_widget import SETUP, STREAM

pytestmark = pytest.mark.timeout(90)


def test_voila_renders_the_widget_and_streams_audio(browser: Any, lab: JupyterServer) -> None:
    if importlib.util.find_spec("voila") is None:
        pytest.fail("voila is not installed: pip install -e '.[test]' (it lists voila)", pytrace=False)
    write_notebook(lab.root / "voila.ipynb", [SETUP, STREAM])
    page = new_page(browser, height=900)
    try:
        page.goto(lab.url(f"voila/render/voila.ipynb?token={lab.token}"), timeout=60_000)
        page.wait_for_selector(".rm-widget[data-state='connected']", timeout=30_000)
        page.wait_for_function(
            "() => { const i = document.querySelector('canvas.rm-plot'); return i && +i.dataset.frames >= 3; }",
            timeout=15_000,
        )
        first = int(page.locator("canvas.rm-plot").get_attribute("data-frames") or 0)
        time.sleep(0.6)
        assert int(page.locator("canvas.rm-plot").get_attribute("data-frames") or 0) > first, "the plot stopped"
        assert lab.api("remotemedia/status")["connections"] >= 1
        assert page.locator(".rm-error:visible").count() == 0
    finally:
        page.screenshot(path=str(ARTIFACTS / "voila.png"), full_page=True)
        page.context.close()
