"""Driving a notebook page (JupyterLab 4 or Notebook 7) from Playwright, with the waits of testing-recipes §6.

Both apps run with ``expose_app_in_browser``, so cells are run through the command registry
(``notebook:run-cell``) and the kernel state is read from the panel's ``sessionContext``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from remotemedia_nbrtc.testing.jupyter import JupyterServer

from .conftest import ARTIFACTS


def write_notebook(path: Path, sources: list[str]) -> None:
    """A notebook with one code cell per source (kernelspec set, so no kernel dialog)."""
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(sources)]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}}
    path.write_text(json.dumps(nb))


def new_page(browser: Any, console: list[str] | None = None, *, width: int = 1280, height: int = 1000) -> Any:
    """A page in a new browser context (20 s default timeout); its console messages and errors go to ``console``."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(20_000)
    if console is not None:
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    return page


def open_notebook(page: Any, server: JupyterServer, name: str, *, run_setup: bool = False) -> None:
    """Open notebook ``name`` and wait for its kernel; with ``run_setup``, run cell 0 until it prints SETUP_OK."""
    page.goto(server.notebook_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)
    wait_kernel_idle(page, 30_000)
    if run_setup:
        run_cell(page, 0)
        wait_output(page, 0, "SETUP_OK")


@contextlib.contextmanager
def notebook_page(browser: Any, server: JupyterServer, name: str, cells: list[str], *, console_log: str,
                  width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A new page with ``cells`` open as notebook ``name`` and its SETUP cell run (:func:`open_notebook`);
    on exit the page's console is saved as ``ARTIFACTS/console_log`` and its browser context closed."""
    write_notebook(server.root / name, cells)
    console: list[str] = []
    page = new_page(browser, console, width=width, height=height)
    try:
        open_notebook(page, server, name, run_setup=True)
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / console_log).write_text("\n".join(console))
        page.context.close()


@contextlib.contextmanager
def own_chromium_notebook(playwright_instance: Any, server: JupyterServer, name: str, cells: list[str], *,
                          extra_args: list[str], console_log: str, close_cell: int) -> Iterator[Any]:
    """Like :func:`notebook_page` in a Chromium of its own (``extra_args``: e.g. its fake mic/camera files);
    on exit cell ``close_cell`` is run (best effort) so the kernel's peer goes away with the page."""
    from .conftest import CHROMIUM, CHROMIUM_ARGS

    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
    try:
        with notebook_page(browser, server, name, cells, console_log=console_log) as page:
            try:
                yield page
            finally:
                with contextlib.suppress(Exception):  # the server stops the kernel anyway
                    run_cell(page, close_cell)
    finally:
        browser.close()


def wait_kernel_idle(page: Any, timeout: float = 20_000) -> None:
    page.wait_for_function(
        """() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                   const s = w && w.sessionContext;
                   return !!(s && s.isReady && s.session && s.session.kernel"""
        """ && s.session.kernel.status === 'idle'); }""",
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


def cell(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def output_text(page: Any, index: int) -> str:
    return str(cell(page, index).locator(".jp-OutputArea").inner_text())


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


def widget(page: Any, index: int) -> Any:
    """The stream widget rendered under cell ``index``."""
    return cell(page, index).locator(".rm-widget")


def wait_connected(page: Any, index: int, timeout: float = 20_000) -> None:
    widget(page, index).and_(page.locator("[data-state='connected']")).wait_for(timeout=timeout)
