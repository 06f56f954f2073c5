"""Transport latency: this project's WebRTC path beside plain aiortc, same workloads, same run.

Every server runs in its own process (a fresh one per workload); the client (ClientPeer for ours,
plain aiortc for the baseline) runs in this process; all traffic on 127.0.0.1, ICE loopback-only.
Send and receive times share one clock (``time.monotonic_ns``, system-wide on Linux), so
client-to-server-to-client latencies need no clock sync. See bench/README.md for each figure.

    .venv/bin/python bench/latency.py [--quick] [--duration S] [--soak [--soak-duration S]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from baseline_aiortc import PlainClient
from procstat import ProcSampler
from report import percentiles, write_section
from servers import MANIFESTS, JupyterKernel, ServerProc

from remotemedia_nbrtc.runtime import now_us
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.config import IceConfig
from remotemedia_nbrtc.transport.sources import SyntheticVideoSource, ToneBurstSource
from remotemedia_nbrtc.transport.stagetrace import ENV_VAR as TRACE_ENV

ICE = IceConfig(loopback_only=True)
WARMUP_S = 1.0  # bursts / frames sent in the first second after connecting are not counted
TAIL_S = 1.0  # nor those sent in the last second (their results may still be in flight)
LEVEL_THRESHOLD_DBFS = -30.0  # a 0.5-amplitude burst is about -9 dBFS RMS; silence is far below -60
ECHO_PEAK_THRESHOLD = 0.1
BURST_MS, PERIOD_MS = 20, 500
ANCHORS = {  # plain aiortc figures from the issue, for context
    "audio": "82 ms p50", "echo": "164-168 ms", "video640": "43-45 ms", "connect": "131 ms",
}


@dataclass
class Run:
    """One workload against one server."""

    impl: str  # "ours" | "baseline" | "jupyter"
    workload: str  # "audio" | "echo" | "video640" | "video720"
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    sent_at_s: list[float] = field(default_factory=list)  # send time (s since connect) of each latency
    expected: int = 0
    missed: int = 0
    connect_ms: float | None = None  # connect() start -> first result computed at the server
    connected_ms: float | None = None  # connect() start -> client sees the connection (and data channel) up
    fps_in: float | None = None
    fps_out: float | None = None
    slope_ms_per_min: float | None = None
    proc: dict[str, Any] = field(default_factory=dict)
    server_stats: Any = None
    error: str | None = None
    client_marks: dict[str, float] = field(default_factory=dict)
    stages: dict[str, list[float]] = field(default_factory=dict)  # stage -> per-burst ms since previous stage
    offsets: dict[str, list[float]] = field(default_factory=dict)  # stage -> onset position in its frame, ms
    traced_total_ms: list[float] = field(default_factory=list)  # per burst: sum of the stages
    traces: dict[str, Any] = field(default_factory=dict)  # raw stage stamps (raw.json only)

    @property
    def pct(self) -> list[float]:
        return percentiles(self.latencies_ms)


# -- analysis --------------------------------------------------------------------------------------
def _window(sent_us: int, connected_us: int, end_us: int) -> bool:
    return connected_us + WARMUP_S * 1e6 <= sent_us <= end_us - TAIL_S * 1e6


def burst_latencies(run: Run, onsets: list[tuple[int, int]], hits: list[tuple[int, bool]],
                    connected_us: int, end_us: int) -> None:
    """For each counted burst: first loud result received after its send time, before the next burst."""
    hits = sorted(hits)
    times = np.array([t for t, _ in hits], dtype=np.int64)
    sends = [sent for _, sent in onsets]
    for i, sent in enumerate(sends):
        if not _window(sent, connected_us, end_us):
            continue
        run.expected += 1
        limit = sends[i + 1] if i + 1 < len(sends) else end_us
        j = int(np.searchsorted(times, sent))
        while j < len(hits) and hits[j][0] < limit and not hits[j][1]:
            j += 1
        if j < len(hits) and hits[j][0] < limit:
            run.latencies_ms.append((hits[j][0] - sent) / 1000)
            run.sent_at_s.append((sent - connected_us) / 1e6)
        else:
            run.missed += 1


def video_latencies(run: Run, source: SyntheticVideoSource, results: list[tuple[int, int]],
                    connected_us: int, end_us: int) -> None:
    """Latency per frame number (first result wins); fps in/out over the counted window; slope."""
    first: dict[int, int] = {}
    for recv, number in results:
        first.setdefault(number, recv)
    counted = {n: s for n, s in source.sent_us.items() if _window(s, connected_us, end_us)}
    run.expected = len(counted)
    for n, sent in sorted(counted.items()):
        if n in first and first[n] >= sent:
            run.latencies_ms.append((first[n] - sent) / 1000)
            run.sent_at_s.append((sent - connected_us) / 1e6)
        else:
            run.missed += 1
    span = (end_us - connected_us) / 1e6 - WARMUP_S - TAIL_S
    if span > 0:
        run.fps_in = len(counted) / span
        lo, hi = connected_us + WARMUP_S * 1e6, end_us - TAIL_S * 1e6
        run.fps_out = sum(1 for recv in first.values() if lo <= recv <= hi) / span
    if len(run.latencies_ms) >= 10:
        run.slope_ms_per_min = float(np.polyfit(np.array(run.sent_at_s) / 60.0, run.latencies_ms, 1)[0])


# Per-stage breakdown of the audio path (``--trace`` workloads: REMOTEMEDIA_STAGE_TRACE in the server,
# ClientPeer(stage_trace=True)). Each stage: (trace, stage name, what the time since the previous stage is).
# "c" = the client's trace (this process), "s" = the server peer's; see remotemedia_nbrtc/transport/stagetrace.py.
_IN_STAGES = [
    ("c", "encoded", "client: Opus encode (aiortc executor hop) + SRTP + UDP send"),
    ("s", "rtp_arrival", "loopback UDP + server ICE/DTLS/SRTP receive"),
    ("s", "jitter_release", "server low-latency jitter buffer"),
    ("s", "decoded", "server decoder thread (queue + Opus decode) + hop back to the RTC loop + track queue"),
    ("s", "reader", "server TrackReader: convert (+ resample if the pipeline asks) to AudioData"),
    ("s", "lane", "RTC loop -> pipeline loop (bridge lane, call_soon_threadsafe)"),
]
ECHO_STAGES = _IN_STAGES + [
    ("s", "output", "pipeline: session input queue -> PassThrough -> output queue -> bridge pump"),
    ("s", "push", "pipeline loop -> RTC loop (call_soon_threadsafe) -> PipelineAudioTrack.push"),
    ("s", "out", "PipelineAudioTrack: queued -> frame returned by recv (pacing)"),
    ("s", "sent", "server: Opus encode (aiortc executor hop) + SRTP + UDP send"),
    ("c", "rtp_arrival", "loopback UDP + client ICE/DTLS/SRTP receive"),
    ("c", "jitter_release", "client low-latency jitter buffer"),
    ("c", "decoded", "client decoder thread (queue + Opus decode) + hop back to the RTC loop + track queue"),
    ("c", "reader", "client TrackReader: s16 stereo -> float mono 48 kHz (= echo result time)"),
]
AUDIO_STAGES = _IN_STAGES + [
    ("result", "result", "pipeline: AudioLevelNode -> data channel -> client (= result time)"),
]


_UPPER_BOUND = {"c.encoded", "s.sent"}


def stage_breakdown(run: Run, stages: list[tuple[str, str, str]], source: ToneBurstSource,
                    traces: dict[str, dict[str, list[list[float]]]], results: list[int],
                    connected_us: int, end_us: int) -> None:
    """Chain each counted burst through the stage stamps: first stamp at or after the previous stage's."""
    run.traces = {"traces": traces, "onsets": source.onsets, "encoded": source.encoded, "results": results}
    encoded = dict(source.encoded)
    sends = [sent for _, sent in source.onsets]
    events: dict[str, np.ndarray] = {}
    offsets: dict[str, dict[int, float]] = {}
    for side, name, _ in stages:
        key = f"{side}.{name}"
        if side == "result":
            events[key] = np.array(sorted(results), dtype=np.int64)
            continue
        rows = sorted(traces.get(side, {}).get(name, []))
        events[key] = np.array([r[0] for r in rows], dtype=np.int64)
        offsets[key] = {int(r[0]): float(r[2]) for r in rows}
    for i, (onset, sent) in enumerate(source.onsets):
        if not _window(sent, connected_us, end_us) or onset not in encoded:
            continue
        limit = sends[i + 1] if i + 1 < len(sends) else end_us
        chain = [("c.src", sent), ("c.encoded", encoded[onset])]
        for side, name, _ in stages[1:]:
            key = f"{side}.{name}"
            times = events[key]
            # "sent" stamps are taken when the sender asks for the next frame, which can be after the packet
            # already arrived at the other process: search from the stage before, then clamp (below)
            prev = chain[-2][1] if chain[-1][0] in _UPPER_BOUND else chain[-1][1]
            j = int(np.searchsorted(times, prev))
            if j >= len(times) or times[j] >= limit:
                break
            chain.append((key, int(times[j])))
        else:
            chain = [(key, min(t, chain[i + 1][1]) if key in _UPPER_BOUND and i + 1 < len(chain) else t)
                     for i, (key, t) in enumerate(chain)]
            for (_, prev), (key, t) in zip(chain, chain[1:]):
                run.stages.setdefault(key, []).append((t - prev) / 1000)
                if key in offsets:
                    run.offsets.setdefault(key, []).append(offsets[key].get(t, float("nan")))
            run.traced_total_ms.append((chain[-1][1] - sent) / 1000)


def breakdown_table(run: Run | None, stages: list[tuple[str, str, str]], title: str) -> str:
    if run is None:
        return f"{title}: not run."
    if not run.traced_total_ms:
        return f"{title}: no burst traced through every stage ({run.error or 'no stamps'})."
    lines = [f"{title}: {len(run.traced_total_ms)} bursts traced through every stage; end-to-end "
             f"p50 {np.median(run.traced_total_ms):.1f} ms (the same run's measured latency: {_lat(run)}).", "",
             "| stage (time since the previous stage) | p50 ms | p95 ms | cumulative p50 ms "
             "| onset at ms into frame (p50) |",
             "|---|---|---|---|---|"]
    cumulative = 0.0
    for side, name, label in stages:
        key = f"{side}.{name}"
        values = run.stages.get(key, [])
        if not values:
            continue
        p = percentiles(values)
        cumulative += p[0]
        offs = [v for v in run.offsets.get(key, []) if not math.isnan(v)]
        off = f"{np.median(offs):.1f}" if offs else ""
        lines.append(f"| `{key}` {label} | {p[0]:.2f} | {p[1]:.2f} | {cumulative:.1f} | {off} |")
    return "\n".join(lines)


@contextlib.contextmanager
def _trace_env(on: bool):
    """Server subprocesses inherit this process's environment: switch their stage trace on for one start."""
    old = os.environ.get(TRACE_ENV)
    if on:
        os.environ[TRACE_ENV] = "1"
    else:
        os.environ.pop(TRACE_ENV, None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TRACE_ENV, None)
        else:
            os.environ[TRACE_ENV] = old


BREAKDOWN_INTRO = (
    "Where the audio latency goes, stage by stage: the `*_trace` workloads of `bench/latency.py` (same bursts as "
    "Transport latency, separate runs) with the stage trace on in both peers (`REMOTEMEDIA_STAGE_TRACE=1` in the "
    "server, `ClientPeer(stage_trace=True)`; `remotemedia_nbrtc/transport/stagetrace.py`). Each stage stamps "
    "`now_us()` when a burst onset passes it (first frame with peak >= 0.1 after a quiet one; the RTP arrival and "
    "jitter-buffer release stamps are those of the packet whose decoded frame is that onset); client and server "
    "share the system-wide monotonic clock. A burst counts when it is traced through every stage; each row is "
    "the time since the previous row. \"onset at ms into frame\" is where the burst starts inside the frame that "
    "carries it at that stage: Opus's 6.5 ms lookahead moves it later at each encode/decode, and once it passes "
    "the end of a 20 ms frame the onset is carried by the next frame."
)


def _first_result_ms(outputs: list[tuple[int, dict[str, Any]]], t0_wall_us: int) -> float | None:
    # ts_us is the server's wall clock when it encoded the result: first frame through the pipeline
    for _, msg in outputs:
        if msg.get("type") == "json" and "ts_us" in msg:
            return (msg["ts_us"] - t0_wall_us) / 1000
    return None


# -- one workload against one server ------------------------------------------------------------------
def _sources(workload: str, duration: float) -> tuple[ToneBurstSource | None, SyntheticVideoSource | None]:
    if not workload.startswith("video"):
        return ToneBurstSource(burst_ms=BURST_MS, period_ms=PERIOD_MS, amplitude=0.5), None
    size = (640, 480) if workload == "video640" else (1280, 720)
    return None, SyntheticVideoSource(*size, fps=30.0)


async def _collect_ours(client: ClientPeer, outputs: list[tuple[int, dict[str, Any]]], until: float) -> None:
    while time.monotonic() < until:
        try:
            msg = await client.next_output(timeout=max(0.05, until - time.monotonic()))
        except TimeoutError:
            continue
        if msg is None:
            return
        outputs.append((msg["recv_us"], msg))


CONNECTS = 6


async def run_connects(impl: str, log_dir: Path, count: int = CONNECTS) -> Run:
    """``count`` connections in a row to one fresh audio server; each until its first result arrives.

    ``latencies_ms`` holds start -> first result at the server (its wall-clock stamp); ``sent_at_s`` is
    reused for start -> client connected. The first connection pays the server's cold start.
    """
    run = Run(impl, "connect", 0.0)
    server: Any = None
    try:
        server = await asyncio.to_thread(ServerProc.ours if impl == "ours" else ServerProc.baseline, "audio", log_dir)
        sampler = ProcSampler(server.pid).start()
        for _ in range(count):
            source = ToneBurstSource(burst_ms=BURST_MS, period_ms=PERIOD_MS, amplitude=0.5)
            t0_wall, t0 = time.time_ns() // 1000, now_us()
            outputs: list[tuple[int, dict[str, Any]]] = []
            if impl == "ours":
                client: Any = await ClientPeer.connect(f"ws://127.0.0.1:{server.port}/ws", audio=source, ice=ICE,
                                                       receive_media=False, timeout_s=20)
                connected = now_us()
                msg = await client.next_output(timeout=5)
                if msg is not None:
                    outputs.append((msg["recv_us"], msg))
            else:
                client = await PlainClient.connect(f"http://127.0.0.1:{server.port}/offer", audio=source)
                connected = now_us()
                deadline = time.monotonic() + 5
                while not client.outputs and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                outputs = list(client.outputs)
            await client.close()
            first = _first_result_ms(outputs, t0_wall)
            run.expected += 1
            if first is None:
                run.missed += 1
            else:
                run.latencies_ms.append(first)
                run.sent_at_s.append((connected - t0) / 1000)
            await asyncio.sleep(0.3)
        run.proc = await sampler.stop()
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
    return run


async def run_workload(impl: str, workload: str, duration: float, log_dir: Path) -> Run:
    run = Run(impl, workload, duration)
    kind = "video" if workload.startswith("video") else "echo" if workload.startswith("echo") else "audio"
    traced = workload.endswith("_trace")
    server: Any = None
    client: Any = None
    try:
        if impl == "ours":
            with _trace_env(traced):
                server = await asyncio.to_thread(ServerProc.ours, kind, log_dir)
            url = f"ws://127.0.0.1:{server.port}/ws"
        elif impl == "baseline":
            server = await asyncio.to_thread(ServerProc.baseline, kind, log_dir)
            url = f"http://127.0.0.1:{server.port}/offer"
        else:
            server = await asyncio.to_thread(JupyterKernel, MANIFESTS[kind], log_dir)
            url = server.ws_url
        audio, video = _sources(workload, duration)
        t0_wall, t0 = time.time_ns() // 1000, now_us()
        if impl == "baseline":
            client = await PlainClient.connect(url, audio=audio, video=video, receive_audio=kind == "echo")
        else:
            client = await ClientPeer.connect(url, token=getattr(server, "token", None), audio=audio, video=video,
                                              ice=ICE, receive_media=kind == "echo", timeout_s=20,
                                              low_latency_receive=workload != "echo_aiortc_rx", stage_trace=traced)
        connected = now_us()
        run.client_marks = dict(getattr(client, "marks", {}))
        run.connected_ms = (connected - t0) / 1000
        sampler = ProcSampler(server.pid).start()
        outputs: list[tuple[int, dict[str, Any]]] = []
        until = time.monotonic() + duration
        if impl == "baseline":
            await asyncio.sleep(duration)
            outputs = list(client.outputs)
        else:
            await _collect_ours(client, outputs, until)
        end = now_us()
        run.proc = await sampler.stop()
        run.server_stats = await asyncio.to_thread(server.stats if impl != "jupyter" else server.peer_stats)
        run.connect_ms = _first_result_ms(outputs, t0_wall)
        if kind == "audio":
            hits = [(t, m["value"]["rms_dbfs"] > LEVEL_THRESHOLD_DBFS) for t, m in outputs
                    if m.get("type") == "json" and isinstance(m.get("value"), dict)
                    and m["value"].get("kind") == "level"]
            burst_latencies(run, audio.onsets, hits, connected, end)
            if traced:
                stage_breakdown(run, AUDIO_STAGES, audio, {"s": _server_trace(run.server_stats)},
                                [t for t, loud in hits if loud], connected, end)
        elif kind == "echo":
            if impl == "baseline":
                chunks = list(client.audio_chunks)
            else:
                chunks = [(a.arrival_ts_us, float(np.max(np.abs(a.samples))) if a.samples.size else 0.0)
                          for a in list(client.received_audio)]
            burst_latencies(run, audio.onsets, [(t, p > ECHO_PEAK_THRESHOLD) for t, p in chunks], connected, end)
            if traced:
                stage_breakdown(run, ECHO_STAGES, audio, {"s": _server_trace(run.server_stats),
                                                          "c": client.trace.as_dict()}, [], connected, end)
        else:
            results = [(t, m["value"]["source_frame_number"]) for t, m in outputs
                       if m.get("type") == "json" and isinstance(m.get("value"), dict)
                       and "source_frame_number" in m["value"]]
            video_latencies(run, video, results, connected, end)
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        await close_run(run, client, server)
    return run


async def close_run(run: Run, client: Any, server: Any) -> None:
    """Close a workload's client (a failure is added to ``run.error``) and stop its server process."""
    if client is not None:
        try:
            await asyncio.wait_for(client.close(), 15)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            run.error = (run.error or "") + f" (client close: {exc!r})"
    if server is not None:
        await asyncio.to_thread(server.stop)


def _server_trace(stats: Any) -> dict[str, Any]:
    peers = stats.get("peers") if isinstance(stats, dict) and "peers" in stats else stats
    return (peers[0] or {}).get("trace", {}) if peers else {}


# -- report ------------------------------------------------------------------------------------------
def _ms(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _lat(run: Run | None, n: int = 3) -> str:
    if run is None:
        return "not run"
    if run.error and not run.latencies_ms:
        return f"failed ({run.error[:80]})"
    p = run.pct
    text = " / ".join(_ms(v) for v in p[:n])
    if run.missed:
        text += f" ({run.missed}/{run.expected} missed)"
    return text


def _cpu(run: Run | None) -> str:
    if run is None or not run.proc:
        return "-"
    return f"{run.proc['cpu_pct']:.0f} % / {run.proc['rss_mb']:.0f} MB"


def table(runs: dict[tuple[str, str], Run]) -> str:
    def get(impl: str, wl: str) -> Run | None:
        return runs.get((impl, wl))

    rows: list[tuple[str, str, str, str]] = []
    for wl, label, anchor in (("audio", "audio burst -> result, p50 / p95 / p99 ms", ANCHORS["audio"]),
                              ("echo", "echo round trip, p50 / p95 / p99 ms", ANCHORS["echo"]),
                              ("echo_aiortc_rx", "echo, ClientPeer(low_latency_receive=False): aiortc's "
                               "default receive buffer at the client (diagnostic)", ""),
                              ("video640", "video 640x480@30 -> result, p50 / p95 / p99 ms", ANCHORS["video640"]),
                              ("video720", "video 1280x720@30 -> result, p50 / p95 / p99 ms", "")):
        if get("ours", wl) is None and get("baseline", wl) is None:
            continue
        rows.append((label, _lat(get("ours", wl)), _lat(get("baseline", wl)), anchor))
        if wl.startswith("video"):
            def fps(r: Run | None) -> str:
                return "-" if r is None else f"{_ms(r.fps_in)} / {_ms(r.fps_out)}"

            def slope(r: Run | None) -> str:
                return "-" if r is None else _ms(r.slope_ms_per_min, 2)

            rows.append((f"{wl}: fps in / out", fps(get("ours", wl)), fps(get("baseline", wl)), ""))
            rows.append((f"{wl}: latency slope, ms per minute", slope(get("ours", wl)), slope(get("baseline", wl)), ""))
    o, b = get("ours", "connect"), get("baseline", "connect")
    if o or b:
        def conn(r: Run | None, values: str) -> str:
            if r is None:
                return "not run"
            if r.error and not r.latencies_ms:
                return f"failed ({r.error[:80]})"
            v = r.latencies_ms if values == "first" else r.sent_at_s
            if not v:
                return "-"
            return f"{np.median(v[1:] or v):.0f} (cold {v[0]:.0f})"

        rows.append((f"connect, start -> first audio result at server, ms: median of {CONNECTS - 1} warm (first, cold)",
                     conn(o, "first"), conn(b, "first"), ANCHORS["connect"]))
        rows.append(("connect, start -> client sees connected + data channel open, ms", conn(o, "conn"),
                     conn(b, "conn"), ""))
    for wl in ("audio", "echo", "echo_aiortc_rx", "video640", "video720"):
        o, b = get("ours", wl), get("baseline", wl)
        if o or b:
            rows.append((f"server CPU (% of one core) / RSS: {wl}", _cpu(o), _cpu(b), ""))
    lines = ["| figure | ours | plain aiortc (same run) | issue anchor (plain aiortc) |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def jupyter_table(run: Run | None, standalone: Run | None) -> str:
    if run is None:
        return "Through the Jupyter extension: not run."
    lines = ["| figure | ours via jupyter server + kernel | ours standalone (same run) |", "|---|---|---|",
             f"| audio burst -> result, p50 / p95 / p99 ms | {_lat(run)} | {_lat(standalone)} |",
             f"| connect: start -> first result at kernel, ms | {_ms(run.connect_ms, 0)} | "
             f"{_ms(standalone and standalone.connect_ms, 0)} |",
             f"| connect: start -> client connected, ms | {_ms(run.connected_ms, 0)} | "
             f"{_ms(standalone and standalone.connected_ms, 0)} |",
             f"| kernel / server CPU (% of one core) / RSS | {_cpu(run)} | {_cpu(standalone)} |"]
    return "\n".join(lines)


def _stats_note(run: Run) -> str:
    """The counters of our server peer that show loss, drops or errors."""
    stats = run.server_stats
    peers = stats.get("peers") if isinstance(stats, dict) and "peers" in stats else stats
    if run.impl == "baseline":
        return f"baseline server: {stats}; client connect marks (ms): {run.client_marks}"
    if not peers:
        return f"{run.impl} server: no live peer at the end ({stats})"
    p = peers[0] or {}
    keep = {k: p.get(k) for k in ("frames_in", "jitter", "bridge", "datachannel", "unrouted_outputs",
                                  "audio_out", "video_out") if k in p}
    return f"{run.impl} server peer: {keep}"


def details(runs: list[Run]) -> str:
    out = []
    for r in runs:
        if r.workload == "connect":
            out.append(f"- **{r.impl} connect** x{r.expected}: start -> first result at server (ms) "
                       f"{[round(v) for v in r.latencies_ms]}; start -> client connected (ms) "
                       f"{[round(v) for v in r.sent_at_s]}" + (f"; ERROR {r.error}" if r.error else ""))
            continue
        line = (f"- **{r.impl} {r.workload}** ({r.duration_s:.0f} s): counted {r.expected}, measured "
                f"{len(r.latencies_ms)}, missed {r.missed}")
        if r.latencies_ms:
            line += f", max {max(r.latencies_ms):.1f} ms"
        line += f"; this run's connect: first result {_ms(r.connect_ms, 0)} ms, connected {_ms(r.connected_ms, 0)} ms"
        if r.error:
            line += f"; ERROR {r.error}"
        out.append(line + f"  \n  {_stats_note(r)}")
    return "\n".join(out)


def _dump(runs: list[Run], log_dir: Path) -> None:
    """Every latency with its send time, for looking at outliers (not part of results.md)."""
    import json

    raw = [{"impl": r.impl, "workload": r.workload, "sent_at_s": r.sent_at_s, "latency_ms": r.latencies_ms,
            "error": r.error, "trace": r.traces} for r in runs]
    (log_dir / "raw.json").write_text(json.dumps(raw))


def print_table(text: str) -> None:
    print()
    print(text)
    print()


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    log_dir = Path(tempfile.mkdtemp(prefix="rm-bench-logs-"))
    duration = args.duration or (4.0 if args.quick else 15.0)
    workloads = (["audio", "audio_trace", "echo", "echo_trace", "echo_aiortc_rx", "video640"]
                 + ([] if args.quick else ["video720"]))
    if args.only:
        workloads = [w for w in workloads if w in args.only.split(",")]
    runs: dict[tuple[str, str], Run] = {}
    if not args.soak:
        for wl in workloads:
            for impl in ("baseline", "ours"):
                if (wl == "echo_aiortc_rx" or wl.endswith("_trace")) and impl == "baseline":
                    continue
                if args.ours_only and impl == "baseline":
                    continue
                print(f"running {impl} {wl} ({duration:.0f} s) ...", flush=True)
                runs[(impl, wl)] = r = await run_workload(impl, wl, duration, log_dir)
                print(f"  {impl} {wl}: {_lat(r)}", flush=True)
        if not args.only or "connect" in args.only.split(","):
            for impl in ("baseline", "ours"):
                print(f"running {impl} connect x{CONNECTS} ...", flush=True)
                runs[(impl, "connect")] = r = await run_connects(impl, log_dir)
                print(f"  {impl} connect: {[round(v) for v in r.latencies_ms]} ms", flush=True)
        jupyter: Run | None = None
        if not args.no_jupyter:
            print(f"running jupyter audio ({duration:.0f} s) ...", flush=True)
            jupyter = await run_workload("jupyter", "audio", duration, log_dir)
            print(f"  jupyter audio: {_lat(jupyter)}", flush=True)
        main_table = table(runs)
        jt = jupyter_table(jupyter, runs.get(("ours", "audio")))
        breakdown = (breakdown_table(runs.get(("ours", "echo_trace")), ECHO_STAGES, "**Echo round trip**") + "\n\n"
                     + breakdown_table(runs.get(("ours", "audio_trace")), AUDIO_STAGES, "**Audio burst -> result**"))
        print_table(main_table + "\n\n" + jt + "\n\n" + breakdown)
        all_runs = list(runs.values()) + ([jupyter] if jupyter else [])
        _dump(all_runs, log_dir)
        body = (
            f"Each workload ran {duration:.0f} s against a fresh server process (ours: `bench/serve_ours.py`, the "
            "standalone WebRTCServer; baseline: `bench/baseline_aiortc.py`, plain aiortc), the client in the bench "
            "process, all on 127.0.0.1 with loopback-only ICE. The first and last second of each run are not "
            f"counted. Audio: {BURST_MS} ms 880 Hz bursts every {PERIOD_MS} ms; latency = burst sent -> first result "
            f"above {LEVEL_THRESHOLD_DBFS:.0f} dBFS received (audio), or first returned audio chunk with peak > "
            f"{ECHO_PEAK_THRESHOLD} received (echo). Video: SyntheticVideoSource at 30 fps, "
            "latency = frame sent -> its "
            "stats result received (frame matched by the number drawn in its pixels). Connect: from the start of "
            "the client's connect (ours: WebSocket + announce + offer; baseline: offer + HTTP POST) to the server's "
            "wall-clock stamp on the first result, i.e. first frame through the pipeline. CPU is the server process "
            "over the run (100 % = one core). Anchors: the issue's plain-aiortc figures, measured elsewhere.\n\n"
            + main_table + "\n\n### Through the Jupyter extension\n\n"
            "A real `jupyter server` subprocess with the extension, a kernel started by REST running "
            "`serve(bench/workloads/audio_level.yaml)`, ClientPeer connected to the extension's WebSocket with the "
            "token; CPU is the kernel process.\n\n" + jt + "\n\n### Details\n\n" + details(all_runs)
        )
        if not args.only:
            write_section("Transport latency", body)
            write_section("Latency breakdown", BREAKDOWN_INTRO + "\n\n" + breakdown)
        print(f"server logs: {log_dir}")
        return 0 if all(not r.error for r in all_runs) else 1
    soak = args.soak_duration
    for impl in ("baseline", "ours"):
        print(f"running {impl} video640 soak ({soak:.0f} s) ...", flush=True)
        runs[(impl, "video640")] = await run_workload(impl, "video640", soak, log_dir)
    main_table = table(runs)
    print_table(main_table)
    _dump(list(runs.values()), log_dir)
    body = (f"640x480@30 video for {soak:.0f} s per server (see Transport latency for the method). The slope is "
            "a linear fit of latency against send time; a growing queue shows as a positive slope.\n\n"
            + main_table + "\n\n### Details\n\n" + details(list(runs.values())))
    write_section("Transport soak", body)
    return 0 if all(not r.error for r in runs.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per workload, no 1280x720")
    parser.add_argument("--duration", type=float, help="seconds per workload (default 15, quick 4)")
    parser.add_argument("--soak", action="store_true", help="only the 640x480 video workload, for --soak-duration")
    parser.add_argument("--soak-duration", type=float, default=600.0)
    parser.add_argument("--only", help="comma-separated workloads (audio,echo,echo_aiortc_rx,video640,video720); "
                        "does not write results.md")
    parser.add_argument("--no-jupyter", action="store_true", help="skip the run through the Jupyter extension")
    parser.add_argument("--ours-only", action="store_true", help="skip the plain-aiortc runs (debugging)")
    sys.exit(asyncio.run(main(parser.parse_args())))
