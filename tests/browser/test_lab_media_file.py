"""``rm.stream(p, media_file=...)``: the widget plays a file and streams it instead of the microphone.

The file is a loud, steady 1 kHz tone (sox); the shared Chromium's fake mic plays a short sentence once and
then silence. Levels that stay loud long after the sentence would have ended come from the file.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .cells import SETUP_OK, VAD_PIPELINE
from .conftest import ARTIFACTS, JupyterServer
from .nbpage import notebook_page, run_cell, wait_connected, wait_output, widget

pytestmark = pytest.mark.timeout(120)

CHECK = """\
levels = [o.value["rms_dbfs"] for o in list(h.outputs)[-20:] if getattr(o, "value", {}).get("kind") == "level"]
print("LEVELS", len(levels), round(min(levels), 1) if levels else None)
"""

CLOSE = "h.close()\nprint('CLOSED', h.closed)\n"


@pytest.fixture
def nb(browser: Any, lab: JupyterServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tone = tmp_path_factory.mktemp("mediafile") / "tone.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", str(tone), "synth", "3", "sine", "1000",
                    "vol", "0.5"], check=True)
    stream_cell = f"h = stream(p, audio=True, plot=False, loopback_only=True, media_file={str(tone)!r})\nh\n"
    with notebook_page(browser, lab, "media_file.ipynb", [VAD_PIPELINE + SETUP_OK, stream_cell, CHECK, CLOSE],
                       console_log="media-file-console.log") as page:
        yield page
        run_cell(page, 3)
        wait_output(page, 3, "CLOSED True")


def test_the_widget_streams_a_media_file_instead_of_the_mic(nb: Any) -> None:
    page = nb
    run_cell(page, 1)
    w = widget(page, 1)
    w.wait_for(timeout=15_000)
    wait_connected(page, 1)
    assert w.locator("audio.rm-media-file").count() == 1
    time.sleep(5)  # the fake mic's sentence is over by now; the 3 s file loops
    deadline = time.monotonic() + 10
    while True:
        run_cell(page, 2)
        text = wait_output(page, 2, r"LEVELS \d+").string
        m = re.search(r"LEVELS (\d+) (-?[\d.]+)", text)
        if (m and int(m.group(1)) >= 10 and float(m.group(2)) > -15) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert m and int(m.group(1)) >= 10 and float(m.group(2)) > -15, text  # 0.5 sine = -9 dBFS, steadily
    page.screenshot(path=str(ARTIFACTS / "media-file.png"))
