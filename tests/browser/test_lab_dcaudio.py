"""audio_transport="datachannel": the fake mic's speech -> rm-audio data channel -> Gain in the kernel -> back
on the same channel -> the widget's playout worklet. No RTP audio line at all; the kernel's and the widget's
counters must agree that every frame arrived, and the played-back audio must carry the speech."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cells import CLOSE, GREY_FLIP_GAIN, SETUP_OK
from .conftest import ARTIFACTS, JupyterServer
from .nbpage import own_chromium_notebook, run_cell, wait_connected, wait_output, widget

pytestmark = pytest.mark.timeout(120)

STREAM = """\
h = stream(p, audio=True, video=False, plot=False, loopback_only=True, show_stats=True,
           options=StreamOptions(audio_transport="datachannel"))
h
"""

CHECK = """\
import json
m = h.metrics()
peer = m["peers"][0]
print("DC " + json.dumps({"kernel": peer.get("dc_audio"), "rtp_audio_in": peer["frames_in"].get("audio"),
                          "rtp_audio_out": peer.get("audio_out"), "browser": m["browser"].get("dc_audio"),
                          "audio": m["transport"]["audio"], "audio_setting": m["transport"]["audio_setting"]}))
"""


@pytest.fixture(scope="module")
def dc_page(playwright_instance: Any, lab: JupyterServer, speech_wav: Path) -> Iterator[Any]:
    """A Chromium of its own whose fake mic loops the speech WAV, with the notebook open."""
    with own_chromium_notebook(
        playwright_instance, lab, "dcaudio.ipynb", [GREY_FLIP_GAIN + SETUP_OK, STREAM, CHECK, CLOSE],
        console_log="dcaudio-console.log", extra_args=[f"--use-file-for-fake-audio-capture={speech_wav}"], close_cell=3,
    ) as page:
        yield page


def test_datachannel_audio_round_trip_through_the_kernel(dc_page: Any) -> None:
    page = dc_page
    run_cell(page, 1)
    wait_connected(page, 1)
    w = widget(page, 1)
    row = w.locator(".rm-stats tr[data-key='audio path'] td")
    page.wait_for_function(
        """() => { const td = document.querySelector(".rm-stats tr[data-key='audio path'] td");
                   const m = td && /received (\\d+)/.exec(td.textContent); return m && +m[1] >= 200; }""",
        timeout=20_000, polling=200)
    summary = row.inner_text()
    # Chromium reads the mic track's own chunks (MediaStreamTrackProcessor) at the track's rate; the audio comes
    # back at the rate of the widget's AudioContext (the output device's)
    assert re.match(r"data channel, pcm16 \d+ Hz \(track-processor\) / back \d+ Hz \(open\)", summary), summary
    w.screenshot(path=str(ARTIFACTS / "dcaudio-widget.png"))
    # the doctor panel shows the kernel's side of the return path: frames sent, silence, what was trimmed
    page.wait_for_function(
        """() => { const td = document.querySelector(".rm-stats tr[data-key='kernel audio out'] td");
                   const m = td && /^(\\d+) frames/.exec(td.textContent); return m && +m[1] >= 100; }""",
        timeout=10_000, polling=200)
    kernel_out = w.locator(".rm-stats tr[data-key='kernel audio out'] td").inner_text()
    assert re.match(r"\d+ frames \(\d+ silent, nothing to send\); trimmed [\d.]+ ms of backlog after stalls, "
                    r"queued [\d.]+ ms$", kernel_out), kernel_out

    deadline = time.monotonic() + 15
    while True:  # the widget's counters reach the kernel once a second
        run_cell(page, 2)
        got = json.loads(wait_output(page, 2, r"DC (\{.*\})").group(1))
        if (got["browser"] or {}).get("playout", {}).get("played_ms", 0) > 2000 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(got)
    k, b = got["kernel"], got["browser"]
    assert got["audio_setting"] == "datachannel" and got["audio"] == "datachannel"
    assert got["rtp_audio_in"] is None and got["rtp_audio_out"] is None  # no RTP audio line was negotiated
    assert k["state"] == "open" and (k["rate"], k["out_rate"]) == (b["rate"], b["out_rate"]), got
    assert k["frames_in"] >= 200 and k["frames_out"] >= 200, k
    # loopback: nothing lost, nothing malformed, nothing dropped in either direction
    assert (k["lost_frames"], k["late_frames"], k["bad_frames"], k["out_drops"]) == (0, 0, 0, 0), k
    assert b["send_drops"] == 0 and b["lost"] == 0 and b["late"] == 0, b
    assert b["capture"] == "track-processor" and b["rate_changes"] == 0, b
    assert b["audio_context"] == "running", b
    p = b["playout"]
    assert p["played_ms"] > 2000 and p["overflow_ms"] == 0, got
    # the speech came back: the WAV loops, so some of the widget's 250 ms playout windows peak well above silence
    peaks = [p["peak"]]
    for _ in range(10):
        if max(peaks) > 0.05:
            break
        time.sleep(0.5)
        run_cell(page, 2)
        peaks.append(json.loads(wait_output(page, 2, r"DC (\{.*\})").group(1))["browser"]["playout"]["peak"])
    assert max(peaks) > 0.05, peaks


def test_browsers_without_track_processor_capture_with_a_worklet(dc_page: Any) -> None:
    """Firefox and Safari have no MediaStreamTrackProcessor: the widget captures 128-sample AudioWorklet quanta
    at the AudioContext's rate instead (simulated here by removing it from the page)."""
    page = dc_page
    w = widget(page, 1)
    page.evaluate("() => { delete window.MediaStreamTrackProcessor; }")
    w.locator(".rm-stop").click()
    w.locator(".rm-start").click()
    wait_connected(page, 1)
    page.wait_for_function(
        """() => { const td = document.querySelector(".rm-stats tr[data-key='audio path'] td");
                   const m = td && /\\(worklet\\).*received (\\d+)/.exec(td.textContent);"""
        """ return m && +m[1] >= 500; }""",
        timeout=20_000, polling=200)
    summary = w.locator(".rm-stats tr[data-key='audio path'] td").inner_text()
    assert re.match(r"data channel, pcm16 (\d+) Hz \(worklet\) / back \1 Hz \(open\)", summary), summary
    assert "(lost 0)" in summary and "(dropped 0)" in summary, summary
