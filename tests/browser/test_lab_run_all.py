"""Run All on a shipped notebook in JupyterLab, as a user does it (Run menu -> Run All Cells), then watch.

The live stream made near the top must still be streaming after the last cell has run: the widget stays
connected and its plot keeps updating (the clean-up cell ends only the browser-free part). Before, the
clean-up cell's ``live.close()`` closed the widget about as soon as it had connected.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ARTIFACTS, REPO, JupyterServer
from .nbpage import new_page, wait_kernel_idle

pytestmark = pytest.mark.timeout(180)

ALL_EXECUTED_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter((c) => c.model.type === 'code');
  return cells.length > 0 && cells.every((c) => c.model.executionCount !== null) &&
         panel.sessionContext.session.kernel.status === 'idle';
}"""

PLOT_FRAMES_JS = (
    "() => { const i = document.querySelector('.rm-widget canvas.rm-plot'); "
    "return i ? +i.dataset.frames : -1; }"
)


@pytest.fixture
def run_all_page(browser: Any, lab: JupyterServer) -> Iterator[tuple[Any, list[str]]]:
    name = "00_live_demo.ipynb"
    shutil.copy(REPO / "notebooks" / name, lab.root / name)
    console: list[str] = []
    page = new_page(browser, console)
    try:
        page.goto(lab.notebook_url(name))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
        wait_kernel_idle(page, 30_000)
        yield page, console
    finally:
        (ARTIFACTS / "run-all-console.log").write_text("\n".join(console))
        # leave no session behind for the next test module (the Lab is shared): a user would close it too
        try:
            page.evaluate("""async () => {"""
                          """ const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                                           await k.requestExecute({ code: 'live.close()' }).done; }""")
        finally:
            page.context.close()


def test_run_all_leaves_the_live_demo_streaming(run_all_page: tuple[Any, list[str]]) -> None:
    page, _console = run_all_page
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(ALL_EXECUTED_JS, timeout=90_000, polling=200)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    assert not [e for e in errors if "Traceback" in e or "Error" in e], errors
    assert page.get_by_text("client closed: True").count() == 1  # the clean-up cell ran

    w = page.locator(".rm-widget")
    assert w.count() == 1
    # after the last cell: still connected, and still connected seconds later (the old clean-up closed it)
    w.and_(page.locator("[data-state='connected']")).wait_for(timeout=20_000)
    before = page.evaluate(PLOT_FRAMES_JS)
    time.sleep(6)
    assert w.get_attribute("data-state") == "connected", w.get_attribute("data-state")
    after = page.evaluate(PLOT_FRAMES_JS)
    assert before >= 0 and after >= before + 10, f"the live plot did not keep updating: {before} -> {after} frames"
    page.screenshot(path=str(ARTIFACTS / "run-all-00.png"), full_page=True)
