"""``StreamOptions(audio_constraints=..., video_constraints=...)`` reach the browser's getUserMedia.

Chromium's fake camera honours width / height / frameRate, so the local track's settings show whether the
constraints were applied; the kernel receives frames of that size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .cells import CLOSE, GREY_FLIP_GAIN, SETUP_OK
from .conftest import ARTIFACTS, JupyterServer
from .nbpage import notebook_page, run_cell, wait_connected, wait_output, widget

pytestmark = pytest.mark.timeout(120)

SETUP = GREY_FLIP_GAIN + "sizes = set()\n" + SETUP_OK

STREAM = """\
h = stream(p, audio=True, video=True, plot=False, loopback_only=True,
           options=StreamOptions(video_constraints={"width": 320, "height": 180, "frameRate": 10},
                                 audio_constraints={"autoGainControl": True}))  # the widget's default is off
h.on_output(lambda o: sizes.add((o.width, o.height)) if hasattr(o, "frame") else None)
h
"""

CHECK = "print('SIZES', sorted(sizes))\n"

SETTINGS_JS = """(i) => { \
const v = document.querySelectorAll('.jp-Notebook .jp-Cell')[i].querySelector('video.rm-local');
  const s = v && v.srcObject ? v.srcObject.getVideoTracks()[0].getSettings() : null;
  const a = v && v.srcObject ? v.srcObject.getAudioTracks()[0].getSettings() : null;
  return s && { width: s.width, height: s.height, frameRate: s.frameRate, agc: a && a.autoGainControl }; }"""


@pytest.fixture
def nb(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    with notebook_page(browser, lab, "constraints.ipynb", [SETUP, STREAM, CHECK, CLOSE],
                       console_log="constraints-console.log") as page:
        yield page
        run_cell(page, 3)
        wait_output(page, 3, "CLOSED True")


def test_media_constraints_reach_get_user_media(nb: Any) -> None:
    page = nb
    run_cell(page, 1)
    widget(page, 1).wait_for(timeout=15_000)
    wait_connected(page, 1)
    settings = page.evaluate(SETTINGS_JS, 1)
    assert settings and settings["width"] == 320 and settings["height"] == 180, settings
    assert settings["frameRate"] <= 10.5 and settings["agc"] is True, settings
    deadline = time.monotonic() + 10
    while True:
        run_cell(page, 2)
        text = wait_output(page, 2, r"SIZES").string
        if "(320, 180)" in text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "(320, 180)" in text, text  # the kernel got frames of the requested size
    page.screenshot(path=str(ARTIFACTS / "constraints.png"))
