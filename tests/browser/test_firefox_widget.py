"""The core E2E in Firefox ESR: the widget in JupyterLab streams the fake mic into the kernel, results appear.

Firefox is driven by ``tests/js/firefox_lab.mjs`` (puppeteer-core over WebDriver BiDi; recipes §11), a node
child process with a timeout that prints one ``RESULT {json}`` line. Firefox's fake mic is a 1 kHz sine, so
the kernel checks the level and the pitch of what it received, and the widget must show the VAD event.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest

from .conftest import ARTIFACTS, FIREFOX, JS_DIR, JupyterServer, require_tools
from .nbpage import write_notebook

pytestmark = pytest.mark.timeout(150)

DRIVER = JS_DIR / "firefox_lab.mjs"
NPM_CI = "cd tests/js && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund"

SETUP = """\
import json
import numpy as np
from remotemedia_nbrtc.stream import stream
from remotemedia_nbrtc.runtime import AudioData, JsonData, Node, Pipeline, TextData
from remotemedia_nbrtc.nodes import AudioChunker, AudioLevel, EnergyVAD, FastResample

class Pitch(Node):
    \"\"\"The strongest frequency of each chunk.\"\"\"
    def process(self, data):
        if not isinstance(data, AudioData):  # the widget's latency pings reach every node
            return None
        x = data.samples[:, 0].astype(np.float64)
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return JsonData({"kind": "pitch", "hz": float(np.argmax(spec[1:]) + 1) * data.sample_rate / len(x)})

class SpeechEvents(Node):
    def process(self, data):
        v = getattr(data, "value", None)
        if isinstance(v, dict) and v.get("is_speech_start"):
            return TextData("speech started", channel="ui")
        return None

p = Pipeline("ff")
p.add("resample", FastResample(target_rate=16000, channels=1))
p.add("chunk", AudioChunker(chunk_size=1600))
p.add("level", AudioLevel())
p.add("pitch", Pitch())
p.add("vad", EnergyVAD(threshold_db=-40, passthrough=False), is_output_node=True)
p.add("events", SpeechEvents())
p.chain("resample", "chunk", "level")
p.connect("chunk", "pitch").connect("chunk", "vad").connect("vad", "events")
print("SETUP_OK")
"""

STREAM = """\
h = stream(p, audio=True, video=False, plot=["rms_dbfs"], loopback_only=True, show_stats=True)
h
"""

CHECK = """\
import statistics
m = h.metrics()
frames = sum(peer["frames_in"].get("audio", {}).get("frames", 0) + (peer.get("dc_audio") or {}).get("frames_in", 0)
             for peer in m["peers"])
outs = [o.value for o in list(h.outputs) if hasattr(o, "value") and isinstance(o.value, dict)]
rms = [v["rms_dbfs"] for v in outs if v.get("kind") == "level"][-20:]
hz = [v["hz"] for v in outs if v.get("kind") == "pitch"][-20:]
texts = [o.text for o in list(h.outputs) if hasattr(o, "text")]
print("FF_CHECK", json.dumps({"frames": frames, "rms_dbfs": statistics.median(rms) if rms else None,
      "hz": statistics.median(hz) if hz else None, "texts": texts[:3], "host": h.widget.host,
      "e2e_rtt_ms": m["browser"].get("e2e_rtt_ms")}))
h.close()
"""


def test_firefox_widget_in_jupyterlab_streams_the_fake_mic(lab: JupyterServer) -> None:
    require_tools(FIREFOX, "node", hint="apt-get install -y firefox-esr (node >= 18 comes with the machine image)")
    if not (JS_DIR / "node_modules" / "puppeteer-core" / "package.json").exists():
        pytest.fail(f"tests/js/node_modules has no puppeteer-core: run `{NPM_CI}`", pytrace=False)
    write_notebook(lab.root / "firefox.ipynb", [SETUP, STREAM, CHECK])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    config = {
        "url": lab.notebook_url("firefox.ipynb"), "firefox": FIREFOX, "timeout_ms": 100_000,
        "screenshot": str(ARTIFACTS / "firefox-lab.png"),
        "setup_cell": 0, "stream_cell": 1, "check_cell": 2, "check_pattern": r"FF_CHECK \{.*\}",
    }
    try:
        proc = subprocess.run(["node", str(DRIVER), json.dumps(config)], cwd=JS_DIR, capture_output=True, text=True,
                              check=False, timeout=120, env={**os.environ, "HOME": os.environ.get("HOME", "/root")})
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the Firefox driver hung past 120 s: {exc.stdout!r} {exc.stderr!r}")
    (ARTIFACTS / "firefox-driver.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, (
        f"driver exit {proc.returncode}; stdout={proc.stdout[-2000:]!r} stderr={proc.stderr[-2000:]!r}"
    )
    result: dict[str, Any] = json.loads(lines[0][len("RESULT "):])
    assert result["ok"], json.dumps(result, indent=1)
    print("firefox", result["version"], "connected", result["connected_s"], "s;", result["marks"])

    # the widget under the cell: connected over 127.0.0.1, the VAD event, live plot frames, measured latency
    w = result["widget"]
    assert w["state"] == "connected" and w["host"] == "jupyterlab", w
    assert "speech started" in w["lines"], w
    assert w["plot_frames"] >= 3, w
    assert "127.0.0.1" in w["selected_pair"], w
    assert re.match(r"\d+(\.\d+)? ms", w["e2e_rtt"]), w
    # audio_transport="auto" on 127.0.0.1: the data channel; Firefox has no MediaStreamTrackProcessor, so the
    # widget captures with an AudioWorklet at its AudioContext's rate (the output device's)
    assert re.match(r"data channel, pcm16 (\d+) Hz \(worklet\) / back \1 Hz \(open\)", w["audio_path"]), w

    # the kernel received Firefox's fake mic: a loud 1 kHz sine
    check = json.loads(re.search(r"FF_CHECK (\{.*\})", result["check"]).group(1))  # type: ignore[union-attr]
    assert check["frames"] >= 50, check
    assert check["rms_dbfs"] is not None and check["rms_dbfs"] > -30, check
    assert check["hz"] is not None and abs(check["hz"] - 1000) <= 20, check
    assert check["texts"][:1] == ["speech started"], check
    assert check["host"] == "jupyterlab", check
    assert check["e2e_rtt_ms"] is not None and 0 < check["e2e_rtt_ms"] < 1000, check
