"""Browser latency: headless Chromium through the widget's real path, beside a plain-aiortc server.

**ours**: a real JupyterLab (jupyter server + the remotemedia_nbrtc extension + a kernel); a notebook cell
runs ``rm.stream(pipeline, loopback_only=True)``, the widget connects as it does for a user (signaling
WebSocket through the extension, trickle ICE, WebRTC to the kernel). Its mic is replaced through the
widget's bench hook (``window.__rmBench``, see ``browser_bench.js``) by a WebAudio track of 20 ms 880 Hz
bursts. The pipeline is one node, ``AudioLevelNode(passthrough=True)`` plus server wall-clock stamps:
a level result per 20 ms frame on the data channel, and the audio itself back on the returned track.

**plain aiortc**: ``baseline_aiortc.py serve --workload audio_echo`` (tornado ``POST /offer``, whole SDP,
aiortc's own receiver; levels on the data channel and the track relayed back), driven by a minimal page
of our own with the same WebAudio bursts; the browser waits for complete ICE gathering before posting.

Figures (see bench/README.md): burst -> level result back on the page; echo round trip on the
AudioContext clock (AudioWorklet onset detection); createOffer -> first frame at the pipeline. Run it in
a loopback-only namespace::

    unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m bench.browser_latency [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import percentiles, write_section
from bench.servers import ServerProc
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, JupyterServer, start_server
from tests.browser.nbpage import open_notebook, output_text, run_cell, write_notebook

BENCH = Path(__file__).resolve().parent

PAGE_JS = BENCH / "browser_bench.js"
PERIOD_MS = 500
LEVEL_THRESHOLD_DBFS = -30.0
SKIP_BURSTS = 1  # the first burst after connecting is not counted (warm-up)
TARGETS = {"burst": 20.0, "echo": 50.0, "connect": 100.0}
REFERENCE = {"burst": "104.9 (25.4 released on arrival)", "echo": "161.2 (80.5)", "connect": "293 (210)"}

NOTEBOOK_CELLS = [
    '''import json, time
import remotemedia_nbrtc as rm
from remotemedia_nbrtc.nodes.audio import AudioLevel
from remotemedia_nbrtc.runtime import Pipeline


class BenchLevel(AudioLevel, register=False):
    """AudioLevelNode(passthrough=True) (level -> data channel, audio -> returned track) + wall-clock stamps."""

    def __init__(self):
        super().__init__(passthrough=True)
        self._first = None

    def process(self, data):
        out = super().process(data)
        if isinstance(out, list) and getattr(data, "arrival_ts_us", None):
            now = time.time_ns() // 1000
            arrival = data.arrival_ts_us + now - time.monotonic_ns() // 1000
            if self._first is None:
                self._first = (arrival, now)
            out[0].value.update(arrival_wall_us=arrival, first_arrival_wall_us=self._first[0],
                                first_proc_wall_us=self._first[1])
        return out


TRACK_KW = TRACKKW
if TRACK_KW:  # diagnostic (--track-kw): other PipelineAudioTrack settings for the returned audio
    import functools
    from remotemedia_nbrtc.transport import tracks as _tracks
    _tracks.PipelineAudioTrack.__init__ = functools.partialmethod(_tracks.PipelineAudioTrack.__init__, **TRACK_KW)

import sys
sys.modules["remotemedia_nbrtc.stream"].BROWSER_AUDIO.update(PEERKW)  \
# diagnostic (--peer-kw): other PeerConfig audio settings

from remotemedia_nbrtc.transport import tracks as _tracks
_push_times = []  # when the pipeline's returned audio reaches the track (monotonic s)
_push = _tracks.PipelineAudioTrack.push


def _timed_push(self, data):
    _push_times.append(time.monotonic())
    del _push_times[:-3000]
    return _push(self, data)


_tracks.PipelineAudioTrack.push = _timed_push
_tracks_seen = {}
_send_times = []  # when the returned-audio track hands each frame to aiortc's encoder (monotonic s)
_recv = _tracks.PipelineAudioTrack.recv


async def _timed_recv(self):
    frame = await _recv(self)
    _tracks_seen[id(self)] = self
    _send_times.append((time.monotonic(), self.silent_frames))
    del _send_times[:-3000]
    return frame


_tracks.PipelineAudioTrack.recv = _timed_recv


def send_pattern():
    """Intervals between outgoing audio frames (ms) in the last connection: regular pacing shows as 20."""
    import numpy as np
    t = np.array([x[0] for x in _send_times])
    d = np.diff(t) * 1000 if len(t) > 2 else np.zeros(1)
    p = np.array(_push_times)
    dp = np.diff(p) * 1000 if len(p) > 2 else np.zeros(1)
    return {"frames": len(t), \
"interval_p5_p50_p95_max": [round(float(np.percentile(d, q)), 1) for q in (5, 50, 95, 100)],
            "silent_frames": _send_times[-1][1] if _send_times else None,
            "tracks": [{k: v for k, v in t.stats().items() if k in ("frames_sent", "silent_frames", "trimmed_frames",
                        "phase_shifts", "phase_shift_ms", "late_frames")} for t in _tracks_seen.values()],
            "pushes": len(p), \
"push_interval_p5_p50_p95_max": [round(float(np.percentile(dp, q)), 1) for q in (5, 50, 95, 100)]}


pipe = Pipeline("browser-bench")
pipe.add("level", BenchLevel())
h = rm.stream(pipe, audio=True, loopback_only=True, plot=False,
              options=rm.StreamOptions(jitter_buffer_ms=JITTER, audio_transport=AUDIOTRANSPORT))
h''',
    "_cpu0 = (time.process_time(), time.monotonic()); print('CPU_MARK')",
    "_cpu = 100 * (time.process_time() - _cpu0[0]) / (time.monotonic() - _cpu0[1])\n"
    "print('METRICS' + json.dumps({**h.metrics(), 'send_pattern': send_pattern(), 'kernel_cpu_pct': _cpu}, "
    "default=str))",
    "h.close(); print('closed')",
]

BASELINE_HTML = """<!doctype html><html><body><audio id="out" autoplay></audio><script>
async function connectBaseline(jitterMs) {
  const B = window.__rmBench;
  if (B.pc) { B.pc.close(); B.pc = null; }
  const stream = await B.stream();
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const t of stream.getTracks()) pc.addTransceiver(t, { direction: "sendrecv", streams: [stream] });
  const dc = pc.createDataChannel("pipeline-data", { ordered: true });
  pc.addEventListener("track", (ev) => {
    if (jitterMs !== null) ev.receiver.jitterBufferTarget = jitterMs;
    const el = document.getElementById("out");
    el.srcObject = new MediaStream([ev.track]);
    el.play().catch(() => {});
  });
  B.onPeer(pc, dc);
  await pc.setLocalDescription(await pc.createOffer());
  // plain aiortc takes no trickled candidates: wait for complete gathering (3 s cap), keep 127.0.0.1 only
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const t = setTimeout(resolve, 3000);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
    });
  });
  B.marks.gathered = performance.now();
  const sdp = pc.localDescription.sdp.split("\\r\\n")
    .filter((l) => !l.startsWith("a=candidate:") || / 127\\.0\\.0\\.1 /.test(l)).join("\\r\\n");
  const r = await fetch("/offer", { method: "POST", body: JSON.stringify({ sdp, type: "offer" }) });
  const answer = await r.json();
  await pc.setRemoteDescription(answer);
}
</script></body></html>"""


# -- analysis --------------------------------------------------------------------------------------
@dataclass
class Result:
    impl: str
    audio_transport: str = "rtp"  # the widget's setting for this run (the baseline: RTP)
    burst_ms: list[float] = field(default_factory=list)
    up_ms: list[float] = field(default_factory=list)  # page (burst rendered) -> server receive
    pipe_ms: list[float] = field(default_factory=list)  # server receive -> result encoded for the data channel
    down_ms: list[float] = field(default_factory=list)  # result encoded -> on the page
    echo_ms: list[float] = field(default_factory=list)
    echo_back_ms: list[float] = field(default_factory=list)  # server receive -> echo onset heard on the page
    bursts: int = 0
    missed_burst: int = 0
    missed_echo: int = 0
    connect_ms: list[float] = field(default_factory=list)  # createOffer -> first frame at the pipeline
    connect_marks: list[dict[str, float]] = field(default_factory=list)
    clock: dict[str, float] = field(default_factory=dict)
    receiver: dict[str, Any] = field(default_factory=dict)
    server: Any = None
    error: str | None = None


def clock_offset(samples: list[list[float]]) -> tuple[float, float]:
    """(server wall ms - page perf ms, round trip ms) from the fastest ping."""
    t0, t1, ts = min(samples, key=lambda s: s[1] - s[0])
    return ts / 1000 - (t0 + t1) / 2, t1 - t0


def ctx_to_perf(pairs: list[list[float]], t_ctx: float) -> float:
    """performance.now() at which the context rendered time ``t_ctx`` (smallest polled difference nearby)."""
    near = [p - c * 1000 for c, p in pairs if abs(c - t_ctx) < 1.0] or [p - c * 1000 for c, p in pairs]
    return t_ctx * 1000 + min(near)


def analyse(res: Result, data: dict[str, Any], off_ms: float) -> None:
    bursts, pairs = data["bursts"], data["map"]
    levels = sorted(data["levels"])
    onsets = sorted(data["onsets"])
    for i, t in enumerate(bursts):
        if i < SKIP_BURSTS:
            continue
        res.bursts += 1
        p = ctx_to_perf(pairs, t)
        limit = p + PERIOD_MS
        hit = next((lv for lv in levels if p <= lv[0] < limit and lv[1] > LEVEL_THRESHOLD_DBFS), None)
        arrival_page = None
        if hit is None:
            res.missed_burst += 1
        else:
            recv, _, arrival, ts = hit
            res.burst_ms.append(recv - p)
            sent_page = ts / 1000 - off_ms
            res.down_ms.append(recv - sent_page)
            if arrival:
                arrival_page = arrival / 1000 - off_ms
                res.up_ms.append(arrival_page - p)
                res.pipe_ms.append((ts - arrival) / 1000)
            else:  # plain aiortc stamps once, right after track.recv(): receive and pipeline in one
                res.up_ms.append(sent_page - p)
        echo = next((e for e in onsets if t <= e < t + PERIOD_MS / 1000), None)
        if echo is None:
            res.missed_echo += 1
        else:
            res.echo_ms.append((echo - t) * 1000)
            if arrival_page is not None:
                res.echo_back_ms.append(ctx_to_perf(pairs, echo) - arrival_page)


# -- runs ------------------------------------------------------------------------------------------
def measure_on_page(page: Any, res: Result, n_bursts: int) -> tuple[float, dict[str, Any]]:
    """Clock pings, bursts, clock pings; returns the clock offset (server wall ms - page perf ms) and the data."""
    page.evaluate("() => window.__rmBench.syncClock(25, 20)")
    page.evaluate(f"() => window.__rmBench.runBursts({n_bursts}, {PERIOD_MS})", )
    page.evaluate("() => window.__rmBench.syncClock(25, 20)")
    res.receiver = page.evaluate("() => window.__rmBench.receiverStats()")
    data = page.evaluate("() => window.__rmBench.take()")
    clock = data["clock"]
    if len(clock) < 5:
        raise RuntimeError(f"only {len(clock)} clock pings answered")
    half = len(clock) // 2
    off, rtt = clock_offset(clock)
    off_a, _ = clock_offset(clock[:half])
    off_b, _ = clock_offset(clock[half:])
    res.clock = {"offset_ms": off, "best_rtt_ms": rtt, "drift_ms": off_b - off_a, "pings": len(clock)}
    res.connect_marks.append(_rel_marks(data["marks"]))
    analyse(res, data, off)
    return off, data


def _rel_marks(marks: dict[str, float]) -> dict[str, float]:
    t0 = marks.get("create_offer", 0.0)
    return {k: round(v - t0, 1) for k, v in marks.items() if k != "create_offer"}


def wait_results(page: Any, timeout_ms: float = 20_000) -> None:
    page.wait_for_function("() => { const m = window.__rmBench.marks; return m.dc_open && m.first_result; }",
                           timeout=timeout_ms, polling=20)


def run_baseline(context: Any, log_dir: Path, n_bursts: int, n_connects: int, jitter_ms: float | None) -> Result:
    res = Result("baseline")
    server = ServerProc.baseline("audio_echo", log_dir)
    page = context.new_page()
    try:
        url = f"http://127.0.0.1:{server.port}/bench.html"
        page.route(url, lambda route: route.fulfill(status=200, content_type="text/html", body=BASELINE_HTML))
        page.goto(url)
        creates: list[float] = []
        for k in range(n_connects):
            page.evaluate("(j) => connectBaseline(j)", jitter_ms)
            wait_results(page)
            if k == 0:
                off, data = measure_on_page(page, res, n_bursts)
                creates.append(data["marks"]["create_offer"])
            else:
                page.wait_for_timeout(300)
                data = page.evaluate("() => window.__rmBench.take()")
                res.connect_marks.append(_rel_marks(data["marks"]))
                creates.append(data["marks"]["create_offer"])
        page.evaluate("() => { window.__rmBench.pc.close(); }")
        res.server = server.stats()
        firsts = res.server.get("first_frame_wall_us_per_peer", [])
        res.connect_ms = [f / 1000 - off - c for f, c in zip(firsts, creates)]
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        page.close()
        server.stop()
    return res


def run_widget(context: Any, log_dir: Path, n_bursts: int, n_connects: int, jitter_ms: float | None,
               track_kw: dict[str, Any] | None = None, peer_kw: dict[str, Any] | None = None,
               audio_transport: str = "rtp") -> Result:
    res = Result("ours" if audio_transport == "rtp" else f"ours ({audio_transport})", audio_transport)
    root = Path(tempfile.mkdtemp(prefix="rm-browser-bench-", dir=log_dir))
    cells = [NOTEBOOK_CELLS[0].replace("JITTER", repr(jitter_ms)).replace("TRACKKW", repr(track_kw))
             .replace("PEERKW", repr(peer_kw or {})).replace("AUDIOTRANSPORT", repr(audio_transport)),
             *NOTEBOOK_CELLS[1:]]
    write_notebook(root / "bench.ipynb", cells)
    server = start_server(root, "lab")
    page = context.new_page()
    try:
        open_notebook(page, server, "bench.ipynb")
        run_cell(page, 0)
        wait_results(page, 30_000)
        run_cell(page, 1)  # CPU mark: the kernel's CPU time from here to the metrics cell
        off, data = measure_on_page(page, res, n_bursts)
        if data.get("first_wall_us"):
            res.connect_ms.append(data["first_wall_us"][1] / 1000 - off - data["marks"]["create_offer"])
        root_sel = page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".rm-widget")
        for _ in range(n_connects - 1):
            first_prev = page.evaluate("() => window.__rmBench.marks.create_offer")
            root_sel.locator(".rm-stop").click()
            page.wait_for_timeout(300)
            root_sel.locator(".rm-start").click()
            page.wait_for_function(f"() => window.__rmBench.marks.create_offer > {first_prev}", timeout=10_000)
            wait_results(page)
            page.wait_for_function("() => window.__rmBench.firstWall !== null", timeout=5_000)
            data = page.evaluate("() => window.__rmBench.take()")
            res.connect_marks.append(_rel_marks(data["marks"]))
            res.connect_ms.append(data["first_wall_us"][1] / 1000 - off - data["marks"]["create_offer"])
        run_cell(page, 2)
        text = output_text(page, 2)
        if "METRICS" in text:
            res.server = json.loads(text.split("METRICS", 1)[1].strip().splitlines()[0])
        run_cell(page, 3)
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        try:
            page.screenshot(path=str(log_dir / "widget-failure.png"))
        except Exception:
            pass
    finally:
        page.close()
        stop_lab(server, log_dir)
    return res


def stop_lab(server: JupyterServer, log_dir: Path) -> None:
    """SIGTERM by PID (the server stops its kernels), kill after 20 s; keep its log with the bench logs."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    try:
        (log_dir / "jupyterlab.log").write_bytes(server.log.read_bytes())
    except OSError:
        pass


# -- report ----------------------------------------------------------------------------------------
def _f(v: float | None, d: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p95 = percentiles(values, (0.5, 0.95))
    return f"{_f(p50)} / {_f(p95)}"


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _connect(res: Result) -> str:
    v = res.connect_ms
    if not v:
        return "-"
    warm = v[1:] or v
    return f"{_f(_med(warm), 0)} (cold {_f(v[0], 0)}; {len(warm)} warm: {', '.join(_f(x, 0) for x in warm)})"


def _mark(res: Result, key: str) -> str:
    vals = [m[key] for m in res.connect_marks[1:] or res.connect_marks if key in m]
    return _f(_med(vals), 0) if vals else "-"


def _p50(values: list[float]) -> float | None:
    return percentiles(values, (0.5,))[0] if values else None


def verdict(value: float | None, target: float) -> str:
    return "-" if value is None else ("met" if value <= target else "missed")


def table(runs: list[Result], base: Result) -> str:
    """One column per widget run (RTP audio, data-channel audio), then plain aiortc, target, reference."""

    def missed(r: Result, kind: str) -> str:
        m = r.missed_burst if kind == "burst" else r.missed_echo
        return f" ({m}/{r.bursts} missed)" if m else ""

    def target(limit: float, value: Any) -> str:
        return f"<= {limit:.0f} (" + ", ".join(f"{r.audio_transport} {verdict(value(r), limit)}" for r in runs) + ")"

    def connect_p50(r: Result) -> float | None:
        return _med(r.connect_ms[1:] or r.connect_ms)

    def jb(x: Result) -> str:
        rs = x.receiver or {}
        if not rs.get("jb_emitted"):
            return "- (no RTP audio received)" if x.audio_transport == "datachannel" else "-"
        return (f"{rs.get('jitter_buffer_target')} / {1000 * rs['jb_delay_s'] / rs['jb_emitted']:.1f} / "
                f"{rs['jb_emitted']}")

    def marks(r: Result) -> str:
        return " / ".join(_mark(r, k) for k in ("answer", "connected", "dc_open"))

    rows: list[tuple[str, list[str], str, str, str]] = [
        ("**burst -> result on the page**, p50 / p95 ms", [_pct(r.burst_ms) + missed(r, "burst") for r in runs],
         _pct(base.burst_ms) + missed(base, "burst"), target(TARGETS["burst"], lambda r: _p50(r.burst_ms)),
         REFERENCE["burst"]),
        ("- page -> server receive", [_pct(r.up_ms) for r in runs], _pct(base.up_ms) + " (incl. its pipeline)", "", ""),
        ("- server receive -> result sent (bridge + node + bridge)", [_pct(r.pipe_ms) for r in runs],
         "(in the line above)", "", ""),
        ("- result sent -> on the page (data channel)", [_pct(r.down_ms) for r in runs], _pct(base.down_ms), "", ""),
        ("**echo round trip (AudioContext clock)**, p50 / p95 ms", [_pct(r.echo_ms) + missed(r, "echo") for r in runs],
         _pct(base.echo_ms) + missed(base, "echo"), target(TARGETS["echo"], lambda r: _p50(r.echo_ms)),
         REFERENCE["echo"]),
        ("- server receive -> echo onset heard on the page", [_pct(r.echo_back_ms) for r in runs], "-", "", ""),
        ("**createOffer -> first frame at the pipeline**, ms: median warm (cold)", [_connect(r) for r in runs],
         _connect(base), target(TARGETS["connect"], connect_p50), REFERENCE["connect"]),
        ("- createOffer -> answer applied / ICE connected / data channel open, ms (median)",
         [marks(r) for r in runs], marks(base) + f" (complete gathering at {_mark(base, 'gathered')})", "", ""),
        ("kernel process CPU while measuring and reconnecting, % of one core (whole kernel: transport, pipeline, "
         "ipykernel)",
         [_f((r.server or {}).get("kernel_cpu_pct")) if isinstance(r.server, dict) else "-" for r in runs],
         "-", "", ""),
        ("browser receive jitter buffer: target set / avg delay ms / emitted", [jb(r) for r in runs], jb(base), "",
         "Chrome held about 34 ms"),
        ("clock alignment: best ping RTT / drift over the run, ms",
         [f"{_f(r.clock.get('best_rtt_ms'))} / {_f(r.clock.get('drift_ms'))}" for r in runs],
         f"{_f(base.clock.get('best_rtt_ms'))} / {_f(base.clock.get('drift_ms'))}", "", ""),
    ]
    heads = " | ".join(f"ours: widget in JupyterLab + kernel, audio_transport={r.audio_transport!r}" for r in runs)
    lines = [f"| figure | {heads} | plain aiortc + minimal page (same run) | target | "
             "reference (plain aiortc, elsewhere) |",
             "|---" * (4 + len(runs)) + "|"]
    lines += [f"| {a} | {' | '.join(b)} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def details(runs: list[Result], base: Result) -> str:
    out = []
    for r in (base, *runs):
        line = (f"- **{r.impl}**: bursts counted {r.bursts}, level results {len(r.burst_ms)}, echoes {len(r.echo_ms)}; "
                f"connect marks (ms after createOffer) {r.connect_marks}; page receiver {r.receiver}")
        if r.error:
            line += f"; ERROR {r.error}"
        out.append(line)
        if r.impl == "baseline":
            out.append("  baseline server: "
                       f"{ {k: v for k, v in (r.server or {}).items() if k != 'first_frame_wall_us'} }")
        elif isinstance(r.server, dict):
            peers = r.server.get("peers") or [{}]
            p = peers[-1] or {}
            keep = {k: p.get(k) for k in ("jitter", "bridge", "datachannel", "audio_out", "dc_audio") if k in p}
            out.append(f"  kernel peer (last connection): {keep}")
            dc = (r.server.get("browser") or {}).get("dc_audio")
            if dc:
                out.append(f"  widget data-channel audio (last connection): {dc}")
            else:
                out.append("  returned audio, frame hand-off intervals over the whole run: "
                           f"{r.server.get('send_pattern')}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 bursts, 3 connects (about 1 minute)")
    parser.add_argument("--bursts", type=int, help="bursts per run (default 30, quick 12)")
    parser.add_argument("--connects", type=int, help="connections per run (default 6, quick 3)")
    parser.add_argument("--jitter-ms", type=float, default=None,
                        help="jitterBufferTarget for the widget (default: stream()'s loopback default)")
    parser.add_argument("--baseline-jitter-ms", type=float, default=None,
                        help="jitterBufferTarget on the baseline page (default: the browser's own)")
    parser.add_argument("--track-kw", help="diagnostic: JSON keyword arguments for the kernel's PipelineAudioTrack")
    parser.add_argument("--peer-kw", help="diagnostic: JSON PeerConfig audio settings for the widget's peer, e.g. "
                        "'{\"audio_out_pacing\": \"immediate\", \"audio_ptime_ms\": null, \"audio_out_frame_ms\": 20}'")
    parser.add_argument("--opus-ptime", type=int, help="diagnostic: add a=ptime:N to the answers (both pages)")
    parser.add_argument("--audio-transport", nargs="+", default=["rtp", "datachannel"],
                        choices=["rtp", "datachannel"], help="widget runs, one per audio_transport (default: both)")
    parser.add_argument("--worklet-capture", action="store_true",
                        help="diagnostic: hide MediaStreamTrackProcessor (as in Firefox/Safari): data-channel audio "
                        "is captured by the AudioWorklet")
    parser.add_argument("--skip-baseline", action="store_true", help="diagnostic: only the widget")
    parser.add_argument("--no-write", action="store_true", help="print only; do not touch results.md")
    args = parser.parse_args()
    n_bursts = args.bursts or (12 if args.quick else 30)
    n_connects = args.connects or (3 if args.quick else 6)
    log_dir = Path(tempfile.mkdtemp(prefix="rm-browser-bench-"))
    if os.environ.get("REMOTEMEDIA_BENCH_NO_NS") is None and _has_non_loopback():
        print("warning: interfaces other than lo are up; run it in a loopback-only namespace (see the docstring)")
    from playwright.sync_api import sync_playwright

    from remotemedia_nbrtc.stream import LOOPBACK_JITTER_BUFFER_MS

    jitter = args.jitter_ms if args.jitter_ms is not None else LOOPBACK_JITTER_BUFFER_MS
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_init_script(path=str(PAGE_JS))
            if args.worklet_capture:
                context.add_init_script("delete window.MediaStreamTrackProcessor;")
            if args.opus_ptime:
                context.add_init_script(f"window.__rmBench.ptime = {int(args.opus_ptime)};")
            print(f"baseline: plain aiortc + minimal page, {n_bursts} bursts, {n_connects} connects ...", flush=True)
            base = (Result("baseline", error="skipped") if args.skip_baseline else
                    run_baseline(context, log_dir, n_bursts, n_connects, args.baseline_jitter_ms))
            print(f"  burst {_pct(base.burst_ms)}  echo {_pct(base.echo_ms)}  connect {_connect(base)}", flush=True)
            runs = []
            for transport in args.audio_transport:
                print(f"ours: widget in JupyterLab, audio_transport={transport!r}, jitterBufferTarget {jitter} ms ...",
                      flush=True)
                ours = run_widget(context, log_dir, n_bursts, n_connects, jitter, json.loads(args.track_kw or "{}"),
                                  json.loads(args.peer_kw or "{}"), transport)
                print(f"  burst {_pct(ours.burst_ms)}  echo {_pct(ours.echo_ms)}  connect {_connect(ours)}", flush=True)
                runs.append(ours)
        finally:
            browser.close()
    text = table(runs, base)
    print("\n" + text + "\n\n" + details(runs, base) + f"\n\nlogs: {log_dir}; {time.monotonic() - started:.0f} s")
    (log_dir / "raw.json").write_text(json.dumps({"ours": [r.__dict__ for r in runs], "baseline": base.__dict__},
                                                 default=str))
    body = (
        f"Headless Chromium ({_chromium_version()}), one page per server, {n_bursts} bursts of 20 ms 880 Hz "
        f"(amplitude 0.5) every {PERIOD_MS} ms plus a random 0-20 ms phase, each started at an exact "
        "AudioContext time into a "
        "MediaStreamDestination track that replaces the mic (the widget's bench hook, `window.__rmBench`), the "
        f"first {SKIP_BURSTS} not counted; {n_connects} connections per server. **ours**: JupyterLab + the "
        "extension + a kernel running `rm.stream(pipeline, loopback_only=True, options=StreamOptions(jitter_buffer_ms="
        f"{jitter}, audio_transport=...))`, pipeline `AudioLevelNode(passthrough=True)` + server wall-clock stamps "
        "(level results on the data channel, the audio back), the widget's own signaling (trickle ICE) and "
        "Stop/Start for reconnects; one run per audio transport: `'rtp'` (the default: Opus media tracks both "
        "ways, the browser's encoder and receive buffer; what `'auto'` picks across networks) and `'datachannel'` "
        "(what the default `'auto'` picks when Jupyter is opened via localhost: the widget reads the burst track's "
        "10 ms chunks with MediaStreamTrackProcessor, sends pcm16 on the unreliable `rm-audio` data channel, and "
        "plays the returned pcm16 from its own adaptive AudioWorklet buffer in the page's AudioContext; the "
        "bench's onset detector listens to that worklet's output). **plain aiortc**: "
        "`baseline_aiortc.py serve --workload audio_echo` (aiortc's "
        "receiver and jitter buffer, levels + the track relayed back), a minimal page that waits for complete ICE "
        "gathering and POSTs the offer, browser jitter buffer at its default. All on 127.0.0.1 (run in a "
        "loopback-only network namespace).\n\n"
        "Method: burst -> result = from the moment the context rendered the burst (context time mapped to "
        "`performance.now()` by polling `currentTime` between bursts, smallest difference) to the first level "
        f"result above {LEVEL_THRESHOLD_DBFS:.0f} dBFS arriving on the page. Echo = returned onset (peak > 0.1) "
        "found by an AudioWorklet on the received track (datachannel: on the widget's playout worklet), minus "
        "the scheduled time, both on the AudioContext clock. Stages use the server's wall clock aligned to the page "
        "by the fastest of 50 data-channel pings "
        "(25 before, 25 after the bursts; the project's latency probe, or the same answer in the baseline "
        "server). createOffer -> first frame = page clock at `createOffer()` to the server's stamp on the first "
        "received frame (ours: the pipeline node's first input; baseline: first `track.recv()`). Reference: the "
        "issue's plain-aiortc figures in headless Chromium 156, measured elsewhere (in brackets: with the "
        "server's receive path released on arrival).\n\n"
        + text + "\n\n### Details\n\n" + details(runs, base)
    )
    diagnostic = args.track_kw or args.peer_kw or args.opus_ptime or args.skip_baseline or args.worklet_capture
    if not args.no_write and not diagnostic and not any(r.error and not r.burst_ms for r in runs):
        cmd = ("unshare -n sh -c 'ip link set lo up && exec \"$@\"' sh .venv/bin/python -m bench.browser_latency"
               + (" --quick" if args.quick else ""))
        write_section("Browser latency (headless Chromium)", body, command=cmd)
    return 0 if not (any(r.error for r in runs) or base.error) else 1


def _chromium_version() -> str:
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "chromium"


def _has_non_loopback() -> bool:
    import socket

    return any(name != "lo" for _, name in socket.if_nameindex())


if __name__ == "__main__":
    sys.exit(main())
