"""The stream widget over a real TURN relay: JupyterLab + headless Chromium + coturn on 127.0.0.1.

The browser is relay-only (``ice_transport_policy="relay"``) and forced onto WebRTC (``transport="webrtc"``,
so the WebSocket fallback cannot hide a failure); the TURN server with its static credentials is given to
``StreamOptions(ice_servers=...)``, which hands it to both the browser and the kernel's aiortc peer. In the
loopback-only namespace the kernel has no host candidate either (aioice skips 127.0.0.1), so media
goes browser -> coturn -> coturn -> kernel. Checked: the doctor panel's local candidates and selected pair
are ``relay`` on 127.0.0.1 (with the transport to the TURN server: udp, tcp or tls), the kernel pipeline gets
the fake mic's audio, and coturn's log shows our user's allocations relaying peer packets.

``turns:`` (TLS, self-signed certificate made at test time): the kernel's aiortc trusts it through
``SSL_CERT_FILE`` (set in the notebook); Chromium verifies TURN certificates too and drops the TLS connection to
a self-signed one (coturn logs the disconnect, no relay candidate is gathered), so that case runs in a Chromium
started with ``--ignore-certificate-errors``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.turnserver import TurnServer, start_turnserver

from .cells import CLOSE, SETUP_OK
from .conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, JupyterServer
from .nbpage import new_page, open_notebook, run_cell, wait_output, widget, write_notebook

pytestmark = pytest.mark.timeout(120)

SETUP = """\
from remotemedia_nbrtc import StreamOptions, stream
from remotemedia_nbrtc.runtime import Pipeline
from remotemedia_nbrtc.nodes import AudioLevel, FastResample

p = Pipeline("levels")
p.add("resample", FastResample(target_rate=16000, channels=1))
p.add("level", AudioLevel(), is_output_node=True)
p.chain("resample", "level")
""" + SETUP_OK

STREAM = """\
h = stream(p, audio=True, plot=False, show_stats=True,
           options=StreamOptions(transport="webrtc", ice_transport_policy="relay", ice_servers=[%r]))
h
"""

CHECK = """\
m = h.metrics()
frames = sum(peer["frames_in"].get("audio", {}).get("frames", 0) + (peer.get("dc_audio") or {}).get("frames_in", 0)
             for peer in m["peers"])
print("PATH", m["path"], "FRAMES", frames, "LEVELS", m["nodes"]["level"]["frames_out"], "END")
"""


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    server = start_turnserver(tmp_path_factory.mktemp("turn"))
    try:
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "turnserver.log").write_text(server.log_text())


def doctor(w: Any, key: str) -> str:
    return str(w.locator(f".rm-stats tr[data-key='{key}'] td").inner_text())


def relayed_peer_packets(turn: TurnServer, log_start: int, timeout: float = 5.0) -> int:
    """The most peer packets coturn relayed in one of our user's sessions (logged when a session ends)."""
    deadline = time.monotonic() + timeout
    while True:
        log = turn.log_text()[log_start:]
        rps = [int(rp) for rp in re.findall(rf"peer usage: realm=<[^>]*>, username=<{turn.username}>, rp=(\d+)", log)]
        if (rps and max(rps) >= 50) or time.monotonic() > deadline:
            return max(rps, default=0)
        time.sleep(0.2)


@pytest.mark.parametrize(("scheme", "transport"), [("turn", "udp"), ("turn", "tcp"), ("turns", "tcp")])
def test_widget_streams_over_a_turn_relay(browser: Any, playwright_instance: Any, speech_wav: Path,
                                         lab: JupyterServer, turn: TurnServer, scheme: str, transport: str) -> None:
    own = None
    if scheme == "turns":
        # Chromium verifies the TURN server's certificate (a self-signed one is refused: the TLS connection
        # is dropped and no relay candidate is gathered); trust it for this browser only
        own = browser = playwright_instance.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
                                            "--ignore-certificate-errors"])
    name = f"turn_{scheme}_{transport}.ipynb"
    # the kernel's aiortc verifies the TLS certificate: trust our self-signed one there (see transport/ice.py)
    trust = f"import os; os.environ['SSL_CERT_FILE'] = {str(turn.cert)!r}\n" if scheme == "turns" else ""
    write_notebook(lab.root / name, [SETUP, trust + STREAM % turn.ice_server(scheme, transport), CHECK, CLOSE])
    console: list[str] = []
    page = new_page(browser, console, width=1100, height=900)
    log_start = len(turn.log_text())
    try:
        open_notebook(page, lab, name, run_setup=True)
        t0 = time.monotonic()
        run_cell(page, 1)
        w = widget(page, 1)
        page.wait_for_selector(".rm-widget[data-state='connected'][data-path='webrtc']", timeout=20_000)
        t_connected = time.monotonic() - t0
        # the doctor panel: only relay candidates on the browser's side, the selected pair on 127.0.0.1
        page.wait_for_function(
            "() => { const td = document.querySelector(\".rm-stats tr[data-key='selected pair'] td\");"
            " return td && td.textContent.startsWith('relay'); }", timeout=10_000, polling=100)
        local = doctor(w, "ICE local")
        assert re.fullmatch(r"relay×\d+", local), local
        pair = doctor(w, "selected pair")
        want = {"turns": "tls"}.get(scheme, transport)
        # the browser's end is its relay; the kernel's may be its own relay or, on this loopback-only host, the
        # 127.0.0.1 host candidate it offers when it has no other address (ice.py), reached through the relay
        assert re.fullmatch(rf"relay 127\.0\.0\.1 udp \(TURN over {want}\) ⇄ (relay|host) 127\.0\.0\.1 udp", pair), pair
        assert doctor(w, "path") == "webrtc (reason: forced by setting (transport='webrtc'))", doctor(w, "path")
        w.screenshot(path=str(ARTIFACTS / f"turn-{scheme}-{transport}-widget.png"))
        # the kernel pipeline gets the fake mic's audio through the relay
        deadline = time.monotonic() + 10
        while True:
            run_cell(page, 2)
            m = re.search(r"PATH (\S+) FRAMES (\d+) LEVELS (\d+) END", wait_output(page, 2, r"END").string)
            assert m, "no CHECK output"
            if int(m.group(2)) >= 100 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert m.group(1) == "webrtc" and int(m.group(2)) >= 100 and int(m.group(3)) >= 10, m.group(0)
        run_cell(page, 3)
        wait_output(page, 3, "CLOSED True")
        # coturn relayed it: our user's sessions carried peer packets
        assert relayed_peer_packets(turn, log_start) >= 50, turn.log_text()[log_start:][-3000:]
        print(f"{scheme}/{transport}: connected {t_connected:.2f} s after the cell run; {pair}")
    finally:
        (ARTIFACTS / f"turn-{scheme}-{transport}-console.log").write_text("\n".join(console))
        page.context.close()
        if own is not None:
            own.close()
