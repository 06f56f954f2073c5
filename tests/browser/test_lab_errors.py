"""Errors a user can act on, as the stream widget shows them in JupyterLab (headless Chromium, real kernel).

Each case makes the real failure happen, then checks the exact message (what happened and what to do)
and the widget's state, and saves a screenshot to tests/artifacts/:

- the microphone permission is denied: a Chromium without ``--use-fake-ui-for-media-stream`` and with
  ``--deny-permission-prompts`` (getUserMedia -> ``NotAllowedError``);
- there is no microphone: a Chromium without ``--use-fake-device-for-media-stream`` (the namespace has no
  sound card; getUserMedia -> ``NotFoundError``);
- the kernel is restarted while the widget streams (JupyterLab's ``kernelmenu:restart`` command): the
  extension tells the browser that the session's kernel disconnected and the widget says to re-run the cell;
- the page is not a secure context: JupyterLab opened as ``http://rm-insecure.test:<port>/`` (mapped to
  127.0.0.1 by ``--host-resolver-rules``), where Chromium hides ``navigator.mediaDevices``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .cells import CLOSE, SETUP_OK
from .conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, INSECURE_HOST, JupyterServer
from .nbpage import new_page, open_notebook, run_cell, wait_kernel_idle, wait_output, widget, write_notebook

pytestmark = pytest.mark.timeout(120)

SETUP = """\
from remotemedia_nbrtc.stream import stream
from remotemedia_nbrtc.runtime import Pipeline
from remotemedia_nbrtc.nodes import AudioLevel

p = Pipeline("levels")
p.add("level", AudioLevel(), is_output_node=True)
""" + SETUP_OK

STREAM = """\
h = stream(p, audio=True, plot=False, loopback_only=True, show_stats=True)
h
"""

PERMISSION_DENIED = ("Permission denied: allow microphone/camera access for this page (the icon in the address bar), "
                     "then press Start.")
NO_DEVICE = "No device found: plug in a microphone/camera or pick another device, then press Start."
KERNEL_GONE = ("The kernel no longer serves this session (kernel restarted or the handle was closed): "
               "re-run the cell.")
INSECURE = ("This page is not a secure context (http:// on a host other than localhost), so the browser hides the "
            "microphone and camera. Open Jupyter over https:// or via http://localhost (e.g. an SSH tunnel).")


def launch(playwright_instance: Any, args: list[str]) -> Any:
    return playwright_instance.chromium.launch(executable_path=CHROMIUM, args=args)


@pytest.fixture(autouse=True)
def kernels_shut_down_after(lab: JupyterServer) -> Iterator[None]:
    """Shut down the kernels a test started, even when it failed half-way: a session it left open would
    otherwise count in the extension's status for the tests that follow (they share the server)."""
    before = {k["id"] for k in lab.api("api/kernels")}
    sessions_before = lab.api("remotemedia/status")["sessions"]
    yield
    for kernel in lab.api("api/kernels"):
        if kernel["id"] not in before:
            lab.api(f"api/kernels/{kernel['id']}", method="DELETE")
    deadline = time.monotonic() + 15
    while lab.api("remotemedia/status")["sessions"] > sessions_before and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture
def console(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"errors-{request.node.name}-console.log").write_text("\n".join(lines))


def run_stream_until_error(page: Any, lab: JupyterServer, name: str) -> Any:
    """Open a notebook with SETUP + STREAM, run both; the widget once it shows an error."""
    write_notebook(lab.root / name, [SETUP, STREAM, CLOSE])
    open_notebook(page, lab, name, run_setup=True)
    run_cell(page, 1)
    w = widget(page, 1)
    w.wait_for(timeout=15_000)
    w.and_(page.locator("[data-state='error']")).wait_for(timeout=15_000)
    return w


def close_stream(page: Any) -> None:
    run_cell(page, 2)
    wait_output(page, 2, "CLOSED True")


def test_denied_microphone_permission_says_how_to_allow_it(playwright_instance: Any, lab: JupyterServer,
                                                           console: list[str]) -> None:
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"] + ["--deny-permission-prompts"]
    browser = launch(playwright_instance, args)
    try:
        page = new_page(browser, console, width=1100, height=900)
        w = run_stream_until_error(page, lab, "err_permission.ipynb")
        assert w.locator(".rm-error").inner_text() == PERMISSION_DENIED
        assert w.locator(".rm-status").inner_text() == "error"
        # the doctor panel shows the denied permission; Start is enabled again (to retry once allowed)
        doctor = w.locator(".rm-stats tr[data-key='permission'] td")
        # the row is drawn before the permission query answers: wait for its text, not just the row
        expect(doctor).to_contain_text("microphone: denied", timeout=5_000)
        assert w.locator("button.rm-start").is_enabled()
        w.screenshot(path=str(ARTIFACTS / "error-permission-denied.png"))
        close_stream(page)
    finally:
        browser.close()


def test_missing_microphone_says_to_plug_one_in(playwright_instance: Any, lab: JupyterServer,
                                                console: list[str]) -> None:
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-device-for-media-stream"]
    browser = launch(playwright_instance, args)
    try:
        page = new_page(browser, console, width=1100, height=900)
        w = run_stream_until_error(page, lab, "err_nodevice.ipynb")
        assert w.locator(".rm-error").inner_text() == NO_DEVICE
        devices = w.locator(".rm-stats tr[data-key='devices'] td")
        expect(devices).to_have_text(re.compile(r"^0 mic\(s\)"), timeout=5_000)
        assert w.locator("button.rm-start").is_enabled()
        w.screenshot(path=str(ARTIFACTS / "error-no-device.png"))
        close_stream(page)
    finally:
        browser.close()


def test_restarting_the_kernel_while_streaming_says_to_rerun_the_cell(browser: Any, lab: JupyterServer,
                                                                     console: list[str]) -> None:
    write_notebook(lab.root / "err_restart.ipynb", [SETUP, STREAM, "print('ALIVE', 'h' in globals())\n"])
    page = new_page(browser, console, width=1100, height=900)
    try:
        open_notebook(page, lab, "err_restart.ipynb", run_setup=True)
        run_cell(page, 1)
        w = widget(page, 1)
        w.and_(page.locator("[data-state='connected']")).wait_for(timeout=20_000)
        assert lab.api("remotemedia/status")["sessions"] >= 1
        # restart through JupyterLab's own command (what Kernel > Restart Kernel… does), accepting its dialog
        page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:restart'); }")
        page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=10_000)
        t0 = time.monotonic()
        w.and_(page.locator("[data-state='error']")).wait_for(timeout=15_000)
        t_error = time.monotonic() - t0
        assert w.locator(".rm-error").inner_text() == KERNEL_GONE
        assert t_error < 10, t_error
        # the doctor panel no longer claims a live connection
        assert w.locator(".rm-stats tr[data-key='connection'] td").inner_text() == "–"
        assert w.locator(".rm-stats tr[data-key='end-to-end RTT'] td").inner_text() == "–"
        w.screenshot(path=str(ARTIFACTS / "error-kernel-restarted.png"))
        # nothing hangs: the new kernel is idle and runs cells, the stale session is gone from the extension
        wait_kernel_idle(page, 30_000)
        run_cell(page, 2)
        wait_output(page, 2, "ALIVE False")
        deadline = time.monotonic() + 10
        while lab.api("remotemedia/status")["sessions"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab.api("remotemedia/status")["sessions"] == 0
        # pressing Start again on the stale widget repeats the advice instead of hanging
        w.locator("button.rm-start").click()
        w.and_(page.locator("[data-state='error']")).wait_for(timeout=15_000)
        assert w.locator(".rm-error").inner_text() == KERNEL_GONE
        # re-running the cells, as the message says, streams again
        run_cell(page, 0)
        wait_output(page, 0, "SETUP_OK")
        run_cell(page, 1)
        widget(page, 1).and_(page.locator("[data-state='connected']")).wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "error-kernel-restarted-rerun.png"))
        page.evaluate("() => { window.jupyterapp.commands.execute('kernelmenu:shutdown'); }")
    finally:
        page.context.close()


def test_insecure_page_says_to_use_https_or_localhost(playwright_instance: Any, lab: JupyterServer,
                                                     console: list[str]) -> None:
    browser = launch(playwright_instance, [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"])
    try:
        page = new_page(browser, console, width=1100, height=900)
        insecure = dataclasses.replace(lab, host=INSECURE_HOST)
        write_notebook(lab.root / "err_insecure.ipynb", [SETUP, STREAM, CLOSE])
        open_notebook(page, insecure, "err_insecure.ipynb")
        assert page.evaluate("() => window.isSecureContext") is False
        assert page.evaluate("() => typeof navigator.mediaDevices") == "undefined"
        run_cell(page, 0)
        wait_output(page, 0, "SETUP_OK")
        run_cell(page, 1)
        w = widget(page, 1)
        w.and_(page.locator("[data-state='error']")).wait_for(timeout=15_000)
        assert w.locator(".rm-error").inner_text() == INSECURE
        assert w.locator(".rm-status").inner_text() == "cannot start"
        assert w.locator(".rm-stats tr[data-key='secure context'] td").inner_text() == "false"
        w.screenshot(path=str(ARTIFACTS / "error-insecure-context.png"))
        close_stream(page)
    finally:
        browser.close()
