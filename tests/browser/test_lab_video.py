"""Processed media shown back: camera + mic -> WebRTC -> (grey, flip, gain) in the kernel -> WebRTC -> widget.

Chromium's fake camera plays a still two-tone y4m (yellow top, blue bottom) and its fake mic a looping
speech WAV. The pipeline greys and vertically flips the video and passes the audio through a Gain node.
The page measures the widget's own elements: the returned <video> must be grey and upside down compared
with the local preview, and the returned audio track must be audible (WebAudio AnalyserNode).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cells import CLOSE, GREY_FLIP_GAIN, SETUP_OK
from .conftest import ARTIFACTS, JupyterServer
from .nbpage import own_chromium_notebook, run_cell, wait_connected, wait_output, widget
from .probes import AUDIO_LEVEL_JS, VIDEO_HALVES_JS

pytestmark = pytest.mark.timeout(120)

SETUP = GREY_FLIP_GAIN + SETUP_OK

STREAM = """\
h = stream(p, audio=True, video=True, plot=False, loopback_only=True,
           options=StreamOptions(audio_transport="rtp"))  # the RTP audio track
h
"""

CHECK = """\
m = h.metrics()
peer = m["peers"][0]
print("VIDEO_IN", peer["frames_in"].get("video", {}).get("frames", 0),
      "VIDEO_OUT", peer.get("video_out", {}).get("frames_sent", 0),
      "AUDIO_IN", peer["frames_in"].get("audio", {}).get("frames", 0),
      "AUDIO_OUT", peer.get("audio_out", {}).get("frames_sent", 0))
"""


@pytest.fixture(scope="module")
def av_page(playwright_instance: Any, lab: JupyterServer, speech_wav: Path, two_tone_y4m: Path) -> Iterator[Any]:
    """A Chromium of its own (fake camera = the y4m, fake mic = the WAV, looping) with the notebook open."""
    with own_chromium_notebook(
        playwright_instance, lab, "video.ipynb", [SETUP, STREAM, CHECK, CLOSE], console_log="video-console.log",
        extra_args=[f"--use-file-for-fake-audio-capture={speech_wav}",
                    f"--use-file-for-fake-video-capture={two_tone_y4m}"],
        close_cell=3,
    ) as page:
        yield page


def test_processed_video_and_audio_are_played_back_in_the_widget(av_page: Any) -> None:
    page = av_page
    run_cell(page, 1)
    wait_connected(page, 1)
    w = widget(page, 1)

    # both pictures are playing
    page.wait_for_function(
        """() => { const r = document.querySelectorAll('.jp-Notebook .jp-Cell')[1].querySelector('.rm-widget');
                   const l = r.querySelector('video.rm-local'), v = r.querySelector('video.rm-remote');
                   return l.videoWidth > 0 && v.videoWidth > 0 && v.readyState >= 2 && !v.hidden"""
        """ && v.currentTime > 0.3; }""",
        timeout=15_000, polling=100,
    )
    halves = page.evaluate(VIDEO_HALVES_JS, 1)
    local, remote = halves["local"], halves["remote"]
    print("video halves", halves)
    # the local preview is the camera: colourful, bright on top
    assert local["top"]["sat"] > 100 and local["bottom"]["sat"] > 100, local
    assert local["top"]["luma"] > local["bottom"]["luma"] + 100, local
    # the returned picture went through the pipeline: grey, and upside down
    assert (remote["width"], remote["height"]) == (local["width"], local["height"]), halves
    assert remote["top"]["sat"] < 12 and remote["bottom"]["sat"] < 12, remote
    assert remote["bottom"]["luma"] > remote["top"]["luma"] + 100, remote
    # and it is the same scene: the grey levels match the camera's luma, swapped
    assert abs(remote["top"]["luma"] - local["bottom"]["luma"]) < 25, halves
    assert abs(remote["bottom"]["luma"] - local["top"]["luma"]) < 25, halves

    # the returned audio track is live and audible (the fake mic's speech after a 0 dB gain)
    level = page.evaluate(AUDIO_LEVEL_JS, [1, 6000, 0.05])
    print("returned audio", level)
    assert level["found"] and level["ready_state"] == "live", level
    assert level["ctx_state"] == "running", level
    assert level["max_dbfs"] > -40, level

    w.screenshot(path=str(ARTIFACTS / "video-widget.png"))
    run_cell(page, 2)
    m = wait_output(page, 2, r"VIDEO_IN (\d+) VIDEO_OUT (\d+) AUDIO_IN (\d+) AUDIO_OUT (\d+)")
    video_in, video_out, audio_in, audio_out = (int(g) for g in m.groups())
    assert video_in >= 10 and video_out >= 10 and audio_in >= 25 and audio_out >= 25, m.group(0)
