"""WebSocket media fallback in the browser: JupyterLab + the stream widget + headless Chromium.

WebRTC is made impossible for the widget's peer connection: ``ice_transport_policy="relay"`` with no
TURN server, so the browser gathers no ICE candidate at all. With ``transport="auto"`` the widget must give
up on WebRTC after ``webrtc_timeout_s`` and carry the fake mic over the extension's WebSocket instead
(Opus via WebCodecs), with live results (level plot frames, VAD text) coming back the same way and the
doctor panel naming the path and the reason. A forced ``transport="websocket"`` run sends 16 kHz pcm16,
and a forced run with the camera checks returned video (grey, flipped) and returned audio.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cells import GREY_FLIP_GAIN, SETUP_OK, VAD_PIPELINE
from .conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, JupyterServer
from .nbpage import new_page, notebook_page, open_notebook, run_cell, wait_output, widget, write_notebook
from .probes import AUDIO_LEVEL_JS

pytestmark = pytest.mark.timeout(120)

SETUP = VAD_PIPELINE + "h = None\n" + SETUP_OK

# relay-only ICE with no TURN server: the browser has no candidate, WebRTC cannot connect
AUTO = """\
if h is not None: h.close()
h = stream(p, audio=True, plot=["rms_dbfs"], loopback_only=True, show_stats=True,
           options=StreamOptions(webrtc_timeout_s=2.0, ice_transport_policy="relay"))
h
"""

FORCED = """\
if h is not None: h.close()
h = stream(p, audio=True, plot=["rms_dbfs"], loopback_only=True, show_stats=True,
           options=StreamOptions(transport="websocket"))
h.widget.ws_audio_codec = "pcm16"
h.widget.ws_pcm_rate = 16000
h
"""

# relay-only ICE through a TURN server that accepts the TCP connection and never answers (a black hole):
# ICE neither connects nor fails, so only webrtc_timeout_s ends the WebRTC attempt
AUTO_TIMEOUT = """\
if h is not None: h.close()
h = stream(p, audio=True, plot=["rms_dbfs"], show_stats=True, options=StreamOptions(
    webrtc_timeout_s=1.5, ice_transport_policy="relay",
    browser_ice_servers=[{"urls": "turn:127.0.0.1:%d?transport=tcp", "username": "u", "credential": "p"}]))
h
"""

CLOSE = "if h is not None: h.close()\nprint('CLOSED', h is None or h.closed)\n"

CHECK = """\
m = h.metrics()
peer = m["peers"][-1] if m["peers"] else {}
print("PATH", m["path"], "|", m["transport"]["reason"], "|")
print("FRAMES", peer.get("audio_frames_in", 0), "LEVELS", m["nodes"].get("level", {}).get("frames_out", 0),
      "GAPS", peer.get("seq_gaps"), "CODEC", (peer.get("formats") or {}).get("audio"))
print("KERNEL_TEXT", [o.text for o in list(h.outputs) if hasattr(o, "text")][:3])
print("E2E_RTT", m["browser"].get("e2e_rtt_ms"))
"""


@pytest.fixture(scope="module")
def late_speech_wav(speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The speech WAV with 4 s of leading silence: the speech starts after the WebRTC attempt gave up."""
    out = tmp_path_factory.mktemp("fallback") / "late_speech.wav"
    subprocess.run(["sox", "-R", str(speech_wav), str(out), "pad", "3", "0"], check=True)
    return out


@pytest.fixture(scope="module")
def black_hole_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture(scope="module")
def nb(playwright_instance: Any, lab: JupyterServer, late_speech_wav: Path, black_hole_port: int) -> Iterator[Any]:
    """A Chromium of its own (fake mic = the late speech, once) with the fallback notebook open."""
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={late_speech_wav}%noloop"])
    cells = [SETUP, AUTO, CHECK, FORCED, AUTO_TIMEOUT % black_hole_port, CLOSE]
    try:
        with notebook_page(browser, lab, "fallback.ipynb", cells, console_log="fallback-console.log",
                           height=1100) as page:
            yield page
            run_cell(page, 5)  # the Lab is shared by every browser test module: leave no session behind
            wait_output(page, 5, "CLOSED True")
    finally:
        browser.close()


def doctor(w: Any, key: str) -> str:
    return str(w.locator(f".rm-stats tr[data-key='{key}'] td").inner_text())


def wait_plot_frames(page: Any, w: Any, index: int, n: int) -> None:
    page.wait_for_function(
        """([i, n]) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
                         const img = c && c.querySelector('canvas.rm-plot');
                         return img && +img.dataset.frames >= n; }""",
        arg=[index, n], timeout=15_000, polling=100)
    plot = w.locator("canvas.rm-plot")
    first = int(plot.get_attribute("data-frames") or 0)
    time.sleep(0.6)
    assert int(plot.get_attribute("data-frames") or 0) > first, "the plot stopped updating"
    assert plot.evaluate("c => c.width") > 100


def kernel_check(page: Any, want: str, timeout: float = 10.0) -> str:
    """Run CHECK until ``want`` (a regex) matches its output; the output."""
    deadline = time.monotonic() + timeout
    while True:
        run_cell(page, 2)
        text = wait_output(page, 2, r"E2E_RTT").string
        if re.search(want, text, re.DOTALL) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_auto_falls_back_to_websocket_media_when_ice_is_impossible(nb: Any) -> None:
    page = nb
    t0 = time.monotonic()
    run_cell(page, 1)
    w = widget(page, 1)
    w.wait_for(timeout=15_000)
    page.wait_for_selector(".rm-widget[data-state='connected'][data-path='websocket']", timeout=20_000)
    t_connected = time.monotonic() - t0

    # the doctor panel names the path and why
    path = doctor(w, "path")
    # the kernel's aiortc peer gives up at once (the browser ends its candidates with none), so the widget
    # falls back on that report, not only after webrtc_timeout_s
    assert re.match(r"websocket \(reason: (WebRTC not connected within 2 s|ICE failed|the kernel's peer reported ICE "
                    r"failure) \(ICE \w+, 0 usable local candidate\(s\): UDP blocked, or relay-only", path), path
    assert t_connected < 2.0 + 8.0, t_connected
    assert doctor(w, "transport setting").startswith("auto"), doctor(w, "transport setting")
    assert doctor(w, "ws codecs").startswith("audio opus/48000"), doctor(w, "ws codecs")

    # live results come back over the same socket: plot frames and the VAD's text
    wait_plot_frames(page, w, 1, 5)
    w.locator(".rm-text .rm-line", has_text="speech started").first.wait_for(timeout=15_000)
    rtt_cell = ".rm-stats tr[data-key='end-to-end RTT'] td"
    page.wait_for_function(
        "(sel) => { const td = document.querySelector(sel); return td && /^\\d+(\\.\\d+)? ms/.test(td.textContent); }",
        arg=rtt_cell, timeout=15_000, polling=100)
    rtt_ms = float(w.locator(rtt_cell).inner_text().split(" ")[0])
    assert 0 < rtt_ms < 1000, rtt_ms
    sent = doctor(w, "ws sent")
    assert int(sent.split(" ")[0]) >= 50, sent
    w.screenshot(path=str(ARTIFACTS / "fallback-auto-widget.png"))

    # the kernel pipeline got the audio over the fallback, and its metrics name the path
    text = kernel_check(page, r"PATH websocket.*KERNEL_TEXT \['speech started'.*E2E_RTT [\d.]+")
    assert re.search(r"PATH websocket \| .*0 usable local candidate", text), text
    m = re.search(r"FRAMES (\d+) LEVELS (\d+) GAPS (\d+) CODEC (.*)", text)
    assert m, text
    assert int(m.group(1)) >= 100 and int(m.group(2)) >= 10, text
    assert int(m.group(3)) == 0, f"audio frames were lost on the way: {text}"
    assert "'codec': 'opus'" in m.group(4), text
    assert "KERNEL_TEXT ['speech started'" in text, text
    print(f"fell back and connected {t_connected:.2f} s after the cell run; e2e RTT {rtt_ms} ms")
    page.screenshot(path=str(ARTIFACTS / "fallback-auto.png"), full_page=True)


def test_forced_websocket_streams_pcm16_at_16khz(nb: Any) -> None:
    page = nb
    t0 = time.monotonic()
    run_cell(page, 3)
    w = widget(page, 3)
    w.wait_for(timeout=15_000)
    page.wait_for_selector(".rm-widget[data-state='connected'][data-path='websocket']", timeout=15_000)
    t_connected = time.monotonic() - t0
    assert doctor(w, "path") == "websocket (reason: forced by setting (transport='websocket'))", doctor(w, "path")
    assert doctor(w, "ws codecs").startswith("audio pcm16/16000"), doctor(w, "ws codecs")
    assert doctor(w, "connection") == "websocket open"
    wait_plot_frames(page, w, 3, 5)
    # the earlier widget (cell 1) was closed by h.close(): one stream, one kernel session
    old = widget(page, 1)
    assert old.get_attribute("data-state") in ("closed", "error", "stopped"), old.get_attribute("data-state")
    text = kernel_check(page, r"PATH websocket \| forced.*FRAMES (\d{3,})")
    assert "PATH websocket | forced by setting" in text, text
    m = re.search(r"FRAMES (\d+) LEVELS (\d+) GAPS (\d+) CODEC (.*)", text)
    assert m and int(m.group(1)) >= 100 and int(m.group(2)) >= 10, text
    assert "'codec': 'pcm16', 'sample_rate': 16000" in m.group(4), text
    w.screenshot(path=str(ARTIFACTS / "fallback-forced-widget.png"))
    print(f"forced WebSocket media connected {t_connected:.2f} s after the cell run")


def test_auto_falls_back_after_the_webrtc_timeout_when_turn_never_answers(nb: Any) -> None:
    page = nb
    t0 = time.monotonic()
    run_cell(page, 4)
    w = widget(page, 4)
    w.wait_for(timeout=15_000)
    page.wait_for_selector(".rm-widget[data-state='connected'][data-path='websocket']", timeout=20_000)
    t_connected = time.monotonic() - t0
    path = doctor(w, "path")
    assert re.match(
        r"websocket \(reason: WebRTC not connected within 1.5 s \(ICE \w+, 0 usable local candidate", path
    ), path
    assert t_connected > 1.5, t_connected
    wait_plot_frames(page, w, 4, 3)
    text = kernel_check(page, r"PATH websocket \| WebRTC not connected.*FRAMES (\d{3,})")
    assert "PATH websocket | WebRTC not connected within 1.5 s" in text, text
    m = re.search(r"FRAMES (\d+) LEVELS (\d+) GAPS (\d+)", text)
    assert m and int(m.group(1)) >= 100 and int(m.group(2)) >= 10, text
    w.screenshot(path=str(ARTIFACTS / "fallback-timeout-widget.png"))
    print(f"timed out on WebRTC and connected over the WebSocket {t_connected:.2f} s after the cell run")


VIDEO_SETUP = GREY_FLIP_GAIN + """\
h = stream(p, audio=True, video=True, plot=False, loopback_only=True, show_stats=True,
           options=StreamOptions(transport="websocket"))
h
"""

VIDEO_CHECK = """\
peer = h.metrics()["peers"][-1]
print("VIDEO_IN", peer["video_frames_in"], "VIDEO_OUT", peer["video_frames_out"],
      "AUDIO_IN", peer["audio_frames_in"], "AUDIO_OUT", peer["audio_frames_out"], "END")
"""

#: the returned picture (canvas.rm-remote-frame) and the local preview: mean luma / saturation of the
#: top and bottom halves
FRAME_HALVES_JS = """
(index) => {
  const root = document.querySelectorAll('.jp-Notebook .jp-Cell')[index].querySelector('.rm-widget');
  const measure = (src, w, h) => {
    if (!w || !h) return null;
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const g = c.getContext('2d'); g.drawImage(src, 0, 0, w, h);
    const d = g.getImageData(0, 0, w, h).data;
    const half = (y0, y1) => { let l = 0, s = 0, n = 0;
      for (let y = y0; y < y1; y++) for (let x = 0; x < w; x++) { const i = (y * w + x) * 4;
        l += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        s += Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]); n++; }
      return { luma: l / n, sat: s / n }; };
    const m = Math.round(h * 0.05);
    return { width: w, height: h, top: half(0, Math.floor(h / 2) - m), bottom: half(Math.ceil(h / 2) + m, h) };
  };
  const v = root.querySelector('video.rm-local'), f = root.querySelector('canvas.rm-remote-frame');
  return { local: measure(v, v.videoWidth, v.videoHeight), remote: measure(f, f.width, f.height),
           frames: +(f.dataset.frames || 0) };
}
"""


def test_forced_websocket_returns_processed_video_and_audio(
    playwright_instance: Any, lab: JupyterServer, speech_wav: Path, two_tone_y4m: Path
) -> None:
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}",
                                        f"--use-file-for-fake-video-capture={two_tone_y4m}"])
    try:
        write_notebook(lab.root / "fallback_av.ipynb", [VIDEO_SETUP, VIDEO_CHECK, CLOSE])
        page = new_page(browser)
        open_notebook(page, lab, "fallback_av.ipynb")
        run_cell(page, 0)
        w = widget(page, 0)
        page.wait_for_selector(".rm-widget[data-state='connected'][data-path='websocket']", timeout=20_000)
        page.wait_for_function(
            "() => { const f = document.querySelector('canvas.rm-remote-frame'); return f && +f.dataset.frames >= 5; }",
            timeout=15_000, polling=100)
        halves = page.evaluate(FRAME_HALVES_JS, 0)
        local, remote = halves["local"], halves["remote"]
        assert local and remote, halves
        assert remote["width"] <= 320 and remote["width"] % 2 == 0, remote
        # local: yellow (bright, saturated) over blue; returned: grey, dark over bright (flipped)
        assert local["top"]["luma"] > local["bottom"]["luma"] + 60 and local["top"]["sat"] > 100, local
        assert remote["bottom"]["luma"] > remote["top"]["luma"] + 60, remote
        assert remote["top"]["sat"] < 20 and remote["bottom"]["sat"] < 20, remote
        level = page.evaluate(AUDIO_LEVEL_JS, [0, 6000, 0.02])
        assert level["found"] and level["max_rms"] > 0.02, level
        run_cell(page, 1)
        m = re.search(r"VIDEO_IN (\d+) VIDEO_OUT (\d+) AUDIO_IN (\d+) AUDIO_OUT (\d+) END",
                      wait_output(page, 1, r"END").string)
        assert m and all(int(g) > 5 for g in m.groups()), m
        assert int(m.group(2)) <= int(m.group(1)), m.groups()
        w.screenshot(path=str(ARTIFACTS / "fallback-video-widget.png"))
        run_cell(page, 2)
        wait_output(page, 2, "CLOSED True")
    finally:
        browser.close()
