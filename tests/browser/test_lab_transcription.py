"""Notebook 01's pipeline in JupyterLab: Chromium's fake mic (espeak-ng "turn on the kitchen lights")
-> WebRTC -> SpeechToTextNode (default engine, faster-whisper) -> TranslateNode (Apertium en->es).

Also prints the kernel-side latencies of this path: first partial after the speech onset reached the
engine, and final after the end of speech reached it (the browser->kernel hop is in the transport benches).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .cells import CLOSE, SETUP_OK
from .conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, JupyterServer
from .nbpage import notebook_page, run_cell, wait_output, widget

pytestmark = pytest.mark.timeout(120)

SETUP = """\
import time
from remotemedia_nbrtc import StreamOptions, stream
from remotemedia_nbrtc.runtime import Pipeline
from remotemedia_nbrtc.nodes.speech import SpeechToTextNode
from remotemedia_nbrtc.nodes.text import TranslateNode
from remotemedia_nbrtc.nodes.whisper import FasterWhisperEngine

calls = []  # (wall when the chunk reached the engine, samples fed after it)
seen = []   # (wall when a transcript came out, transcript)

class TimedWhisper(FasterWhisperEngine):
    def accept_audio(self, samples):
        arrived = time.monotonic()
        calls.append((arrived, self._samples_in + len(samples)))
        out = super().accept_audio(samples)
        seen.extend((time.monotonic(), t) for t in out)
        return out

def reached(ms):
    return next(w for w, n in calls if n * 1000 / 16000 >= ms)

p = Pipeline("speech-to-spanish")
p.add("stt", SpeechToTextNode(engine=TimedWhisper))
p.add("translate", TranslateNode(source="en", target="es", translate_events=False))
p.chain("stt", "translate")
""" + SETUP_OK

STREAM = ("h = stream(p, audio=True, video=False, plot=False, loopback_only=True,"
          " options=StreamOptions(webrtc_timeout_s=20))\nh\n")

CHECK = """\
finals = [t for _, t in seen if t.final]
partials = [t for _, t in seen if not t.final]
spanish = [o.text for o in list(h.outputs) if getattr(o, "metadata", {}).get("translator") == "apertium"]
print("FINALS", [t.text for t in finals])
print("SPANISH", spanish)
print("CALLS", len(calls), h.metrics()["nodes"].get("stt"))
if finals:
    f = finals[0]
    first = next((w for w, t in seen if not t.final and t.start_ms == f.start_ms), None)
    done = next(w for w, t in seen if t is f)
    print("PARTIALS", len(partials), "FIRST_PARTIAL_MS", round((first - reached(f.start_ms)) * 1000) if first else None,
          "FINAL_MS", round((done - reached(f.end_ms)) * 1000))
"""


@pytest.fixture(scope="module")
def looping_browser(playwright_instance: Any, speech_wav: Any) -> Iterator[Any]:
    """Chromium whose fake mic repeats the sentence: the first pass can play while the model loads."""
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM,
                                            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}"])
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def nb(looping_browser: Any, lab: JupyterServer) -> Iterator[Any]:
    with notebook_page(looping_browser, lab, "transcribe.ipynb", [SETUP, STREAM, CHECK, CLOSE],
                       console_log="transcribe-console.log") as page:
        yield page


def test_fake_mic_speech_is_transcribed_and_translated_in_jupyterlab(nb: Any) -> None:
    page = nb
    run_cell(page, 1)
    widget(page, 1).wait_for(timeout=15_000)
    page.wait_for_selector(".rm-widget[data-state='connected']", timeout=30_000)
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        run_cell(page, 2)
        text = wait_output(page, 2, r"SPANISH").string
        if "cocina" in text.lower() and "FINAL_MS" in text:
            break
        time.sleep(1.0)
    page.screenshot(path=str(ARTIFACTS / "transcribe-final.png"), full_page=True)
    print(text)
    finals = re.search(r"FINALS (\[.*\])", text)
    assert finals and "kitchen" in finals.group(1).lower() and "light" in finals.group(1).lower(), text
    assert "cocina" in text.lower(), text  # Apertium's Spanish came back
    m = re.search(r"PARTIALS (\d+) FIRST_PARTIAL_MS (\S+) FINAL_MS (-?\d+)", text)
    assert m and int(m.group(1)) >= 1 and m.group(2) != "None", text  # partials while speaking
    # the widget shows the final text (it renders text outputs by itself)
    widget(page, 1).locator(".rm-text", has_text=re.compile("kitchen", re.I)).first.wait_for(timeout=10_000)
    run_cell(page, 3)
    assert "CLOSED True" in wait_output(page, 3, r"CLOSED \w+").string
