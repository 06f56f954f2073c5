"""Mute and microphone switching in the widget, in JupyterLab with Chromium's fake mic (a looping tone):
muting sends silence to the kernel and unmuting brings the tone back; picking another microphone reopens the
media with that device and the kernel keeps one live session that hears it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cells import CLOSE, SETUP_OK
from .conftest import ARTIFACTS, JupyterServer
from .nbpage import own_chromium_notebook, run_cell, wait_connected, wait_output, widget

pytestmark = pytest.mark.timeout(120)

SETUP = """\
import time
import remotemedia_nbrtc as rm
from remotemedia_nbrtc.nodes import AudioLevel
p = rm.Pipeline("lvl")
p.add("level", AudioLevel())
""" + SETUP_OK

STREAM = """\
h = rm.stream(p, audio=True, video=False, plot=False, loopback_only=True,
              options=rm.StreamOptions(audio_transport="rtp"))
h
"""

LEVEL = """\
time.sleep(1.0)
lv = [o.value["rms_dbfs"] for o in h.outputs[-10:] if isinstance(o, rm.JsonData) and o.value.get("kind") == "level"]
print("LEVEL", max(lv) if lv else "none", "SESSIONS", len(h.sessions()))
"""


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tone") / "tone.wav"
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", "-b", "16", str(out), "synth", "5", "sine", "440",
                    "vol", "0.5"], check=True)
    return out


@pytest.fixture(scope="module")
def page(playwright_instance: Any, lab: JupyterServer, tone_wav: Path) -> Iterator[Any]:
    with own_chromium_notebook(
        playwright_instance, lab, "mute_devices.ipynb", [SETUP, STREAM, LEVEL, CLOSE],
        console_log="mute-devices-console.log", extra_args=[f"--use-file-for-fake-audio-capture={tone_wav}"],
        close_cell=3,
    ) as page:
        yield page


def level(page: Any) -> tuple[float, int]:
    run_cell(page, 2)
    m = wait_output(page, 2, r"LEVEL (\S+) SESSIONS (\d+)")
    assert m.group(1) != "none", "no level outputs reached the kernel"
    return float(m.group(1)), int(m.group(2))


def test_mute_silences_the_kernel_and_unmute_brings_the_audio_back(page: Any) -> None:
    run_cell(page, 1)
    wait_connected(page, 1)
    w = widget(page, 1)
    loud, sessions = level(page)
    assert loud > -20 and sessions == 1, (loud, sessions)  # the tone (about -9 dBFS)
    w.locator("button.rm-mute").click()
    assert w.locator("button.rm-mute").inner_text() == "Unmute"
    assert w.get_attribute("data-muted") == "true"
    muted, _ = level(page)
    assert muted < -60, muted  # a disabled track sends silence
    w.locator("button.rm-mute").click()
    assert w.get_attribute("data-muted") == "false"
    back, _ = level(page)
    assert back > -20, back


def test_picking_another_microphone_reopens_it_and_the_kernel_hears_it(page: Any) -> None:
    w = widget(page, 1)
    if w.get_attribute("data-state") != "connected":
        run_cell(page, 1)
        wait_connected(page, 1)
        w = widget(page, 1)
    options = w.locator("select.rm-mic option")
    ids = [options.nth(i).get_attribute("value") for i in range(options.count())]
    assert len(ids) >= 2, f"Chromium's fake devices should list several microphones: {ids}"
    current = w.locator("select.rm-mic").input_value()
    target = next(i for i in ids if i != current)
    page.evaluate("""() => {
        window.__rmAsked = [];
        const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        navigator.mediaDevices.getUserMedia = (c) => { window.__rmAsked.push(JSON.stringify(c)); return orig(c); };
    }""")
    w.locator("select.rm-mic").select_option(target)
    page.wait_for_function("() => window.__rmAsked.length >= 1", timeout=10_000)
    asked = page.evaluate("() => window.__rmAsked")
    assert target in asked[0] and '"exact"' in asked[0], asked
    time.sleep(0.5)
    wait_connected(page, 1)
    deadline = time.monotonic() + 10
    while True:
        loud, sessions = level(page)
        if (loud > -20 and sessions == 1) or time.monotonic() > deadline:
            break
    assert loud > -20 and sessions == 1, (loud, sessions)
    assert w.locator("select.rm-mic").input_value() == target
    w.screenshot(path=str(ARTIFACTS / "mute-devices-widget.png"))
