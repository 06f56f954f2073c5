"""Loss and jitter: audio burst -> result under client-side packet loss and jitter, ours beside plain aiortc.

The same seeded impairment is applied to the client's outgoing RTP in this (client-only) process for both
servers, each in a fresh process of its own (ours: ``bench/serve_ours.py``, plain aiortc:
``bench/baseline_aiortc.py``; see ``bench/latency.py`` for the method, reused here)::

    .venv/bin/python bench/lossy.py [--duration 20] [--profiles clean,uniform,spike] [--seed 7] [--no-write]

Profiles (``PROFILES``): ``clean`` (no impairment, reference in the same run); ``uniform``: 2 % of RTP packets
dropped (one in every 50, random position), every kept one delayed by a random 0-20 ms (uniform);
``spike``: 2 % dropped, 10 % delayed by exactly 20 ms (``tests/transport/test_lossy_webrtc.py``'s shim).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import logging
import random
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket, is_rtcp
from baseline_aiortc import PlainClient
from latency import ICE, LEVEL_THRESHOLD_DBFS, Run, _collect_ours, _cpu, _lat, _ms, burst_latencies, close_run
from procstat import ProcSampler
from report import write_section
from servers import ServerProc

from remotemedia_nbrtc.runtime import now_us
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.sources import ToneBurstSource

RATE = 48000
FRAME = 960  # samples per 20 ms Opus packet
OPUS_LOOKAHEAD = 312  # 6.5 ms: the decoded burst starts this much later than the sent one
BURST_MS, GAP_MS = 20, (200, 500)
# Burst k has amplitude TAG_AMPLITUDES[k % 3] (peaks -6 / -9 / -12 dBFS): a level result is attributed to a
# burst only if its peak_dbfs is within TAG_TOLERANCE_DB of that burst's, so a result that arrives after the
# next burst (plain aiortc's receive buffer lags ~300 ms once a packet is lost) is not taken for that burst's.
TAG_AMPLITUDES = (0.5, 0.354, 0.25)
TAG_TOLERANCE_DB = 1.5


@dataclass(frozen=True)
class Profile:
    name: str
    loss: float = 0.0  # fraction of RTP packets dropped
    uniform_ms: float = 0.0  # every kept packet delayed by U(0, uniform_ms)
    spike_fraction: float = 0.0  # this fraction of packets delayed by spike_ms
    spike_ms: float = 0.0

    def describe(self) -> str:
        if not (self.loss or self.uniform_ms or self.spike_fraction):
            return "no impairment"
        parts = [f"{self.loss:.0%} of RTP packets dropped"]
        if self.uniform_ms:
            parts.append(f"every kept packet delayed by a random 0-{self.uniform_ms:.0f} ms (uniform)")
        if self.spike_fraction:
            parts.append(f"{self.spike_fraction:.0%} delayed by {self.spike_ms:.0f} ms")
        return ", ".join(parts)


PROFILES = {
    "clean": Profile("clean"),
    "uniform": Profile("uniform", loss=0.02, uniform_ms=20.0),
    "spike": Profile("spike", loss=0.02, spike_fraction=0.10, spike_ms=20.0),
}


class Impairment:
    """Drops / delays the client's outgoing RTP: replaces ``RTCDtlsTransport._send_rtp`` while installed.

    Class-wide, but this process holds only the bench client (every server is a subprocess), so it touches
    exactly the client's outgoing RTP, for ours and plain aiortc alike. RTCP and the data channel (SCTP,
    ``_send_data``) pass untouched. Rates are exact per block of ``BLOCK`` packets (2 % = one packet in every
    50, at a seeded random position; spike 10 % = five others of the 50), uniform delays one seeded draw per
    packet: packet n (in send order) meets the same fate in every run with the same seed. Delayed packets
    are sent from a task (the sender is not held up), so a packet delayed more than the 20 ms packet spacing
    arrives after its successor.
    """

    BLOCK = 50

    def __init__(self, profile: Profile, seed: int) -> None:
        self.profile = profile
        self.rng = random.Random(seed)
        self.sent = self.dropped = self.delayed = self.rtcp = 0
        self.delays_ms: list[float] = []
        self.dropped_ts: list[int] = []  # RTP timestamps of dropped packets, relative to the first packet
        self.packets: list[tuple[int, int, float | None]] = []  # (relative RTP ts, send us, delay ms or None=dropped)
        self._ts0: int | None = None
        self._drop_at: set[int] = set()  # positions in the current block
        self._spike_at: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[Impairment]:
        real = RTCDtlsTransport._send_rtp
        me = self

        async def send_rtp(transport: RTCDtlsTransport, data: bytes) -> None:
            await me._send(real, transport, data)

        RTCDtlsTransport._send_rtp = send_rtp  # type: ignore[method-assign]
        try:
            yield self
        finally:
            RTCDtlsTransport._send_rtp = real  # type: ignore[method-assign]

    async def _send(self, real: Any, transport: RTCDtlsTransport, data: bytes) -> None:
        p = self.profile
        if is_rtcp(data):
            self.rtcp += 1
            await real(transport, data)
            return
        self.sent += 1
        ts = struct.unpack_from("!I", data, 4)[0]
        if self._ts0 is None:
            self._ts0 = ts
        rel = (ts - self._ts0) & 0xFFFFFFFF
        pos = (self.sent - 1) % self.BLOCK
        if pos == 0:
            drops, spikes = round(p.loss * self.BLOCK), round(p.spike_fraction * self.BLOCK)
            chosen = self.rng.sample(range(self.BLOCK), drops + spikes)
            self._drop_at, self._spike_at = set(chosen[:drops]), set(chosen[drops:])
        spread = self.rng.random()
        if pos in self._drop_at:
            self.dropped += 1
            self.dropped_ts.append(rel)
            self.packets.append((rel, now_us(), None))
            return
        delay_ms = p.uniform_ms * spread
        if pos in self._spike_at:
            delay_ms += p.spike_ms
        self.packets.append((rel, now_us(), delay_ms))
        if delay_ms <= 0:
            await real(transport, data)
            return
        self.delayed += 1
        self.delays_ms.append(delay_ms)
        task = asyncio.ensure_future(self._later(real, transport, data, delay_ms / 1000))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _later(real: Any, transport: RTCDtlsTransport, data: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(Exception):  # the connection closed meanwhile
            await real(transport, data)

    def touched(self, onset: int) -> bool:
        """Approximately: did a dropped packet carry part of the burst starting at sample ``onset``?

        The first RTP packet carries source frame 0 (aiortc's Opus encoder rebases its pts); the decoded
        burst covers [onset + lookahead, onset + lookahead + 20 ms)."""
        lo, hi = onset + OPUS_LOOKAHEAD, onset + OPUS_LOOKAHEAD + BURST_MS * RATE // 1000
        return any(ts < hi and ts + FRAME > lo for ts in self.dropped_ts)

    def summary(self) -> str:
        d = np.array(self.delays_ms) if self.delays_ms else np.zeros(1)
        return (
            f"{self.sent} sent / {self.dropped} dropped ({self.dropped / max(1, self.sent):.1%}) / "
            f"{self.delayed} delayed (mean {d.mean():.1f} ms)"
        )


class RandomBurstSource(ToneBurstSource):
    """``ToneBurstSource`` with a random gap (uniform in ``gap_ms``, seeded, sample-exact) between bursts, and
    burst k at amplitude ``TAG_AMPLITUDES[k % 3]`` (:meth:`tag`).

    Onsets fall anywhere in a 20 ms frame, so a burst usually spans two Opus packets."""

    def __init__(self, seed: int, gap_ms: tuple[int, int] = GAP_MS, burst_ms: float = BURST_MS) -> None:
        super().__init__(burst_ms=burst_ms, period_ms=gap_ms[1], amplitude=TAG_AMPLITUDES[0])
        self._rng = random.Random(seed)
        self._gap = (gap_ms[0] * RATE // 1000, gap_ms[1] * RATE // 1000)
        self.starts: list[int] = [self._next_gap()]

    def tag(self, onset: int) -> int:
        return self.starts.index(onset) % len(TAG_AMPLITUDES)

    def _next_gap(self) -> int:
        return self._rng.randint(*self._gap)

    def _extend(self, upto: int) -> None:
        while self.starts[-1] < upto:
            self.starts.append(self.starts[-1] + self._next_gap())

    def _samples(self, start: int, count: int) -> np.ndarray:
        self._extend(start + count)
        idx = start + np.arange(count)
        starts = np.array(self.starts)
        k = np.searchsorted(starts, idx, side="right") - 1
        k0 = np.clip(k, 0, None)
        on = (k >= 0) & (idx - starts[k0] < self.burst_samples)
        amplitude = np.array(TAG_AMPLITUDES)[k0 % len(TAG_AMPLITUDES)]
        tone = amplitude * np.sin(2 * np.pi * self.freq * idx / self.sample_rate)
        return np.where(on, tone, 0.0).astype(np.float32)

    def _on_sent(self, start: int, count: int) -> None:
        sent = now_us()
        i = bisect.bisect_left(self.starts, start)
        while i < len(self.starts) and self.starts[i] < start + count:
            self.onsets.append((self.starts[i], sent))
            self._pending.append(self.starts[i])
            i += 1


@dataclass
class LossyRun:
    run: Run
    link: Impairment
    frames_per_s: float | None = None  # audio frames into the server's pipeline / recv loop
    results_per_s: float | None = None  # data-channel results received by the client
    touched: int = 0  # counted bursts that lost part of their audio
    touched_hits: int = 0
    touched_ms: list[float] = field(default_factory=list)
    source: RandomBurstSource | None = None
    untagged: Run = field(default_factory=lambda: Run("", "", 0.0))  # latency.py's rule: any burst's result
    replay: dict[str, Any] | None = None  # plain aiortc: the shim's arrivals replayed through aiortc's buffer

    def jitter(self) -> dict[str, Any]:
        stats = self.run.server_stats
        peers = stats.get("peers") if isinstance(stats, dict) else None
        return ((peers[0] or {}).get("jitter", {}).get("audio", {})) if peers else {}


def tagged_latencies(
    run: Run, source: RandomBurstSource, levels: list[tuple[int, float, float]], connected_us: int, end_us: int
) -> None:
    """``latency.burst_latencies`` once per amplitude tag: burst k's result is the first level above the
    threshold whose peak matches burst k's amplitude, before the next burst of the same tag (>= 600 ms)."""
    for tag, amplitude in enumerate(TAG_AMPLITUDES):
        peak = 20 * np.log10(amplitude)
        onsets = [(onset, sent) for onset, sent in source.onsets if source.tag(onset) == tag]
        hits = [(t, rms > LEVEL_THRESHOLD_DBFS and abs(pk - peak) < TAG_TOLERANCE_DB) for t, rms, pk in levels]
        burst_latencies(run, onsets, hits, connected_us, end_us)
    order = np.argsort(run.sent_at_s, kind="stable")
    run.sent_at_s = [run.sent_at_s[i] for i in order]
    run.latencies_ms = [run.latencies_ms[i] for i in order]


def aiortc_buffer_replay(link: Impairment) -> dict[str, Any]:
    """Feed the shim's kept packets, in arrival order (send + delay), to a fresh aiortc
    ``JitterBuffer(capacity=16, prefetch=4)`` (what the plain-aiortc server's receiver uses for audio):
    frames released, and how long each released packet waited (until the arrival that released it)."""
    arrivals = sorted((sent + delay * 1000, ts // FRAME) for ts, sent, delay in link.packets if delay is not None)
    arrived = {seq: t for t, seq in arrivals}
    buffer = JitterBuffer(capacity=16, prefetch=4)
    holds: list[float] = []
    for t, seq in arrivals:
        packet = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=seq * FRAME)
        packet._data = b""  # type: ignore[attr-defined]
        _, frame = buffer.add(packet)
        if frame is not None:
            holds.append((t - arrived[frame.timestamp // FRAME]) / 1000)
    p50, p95 = np.percentile(holds, [50, 95]) if holds else (float("nan"),) * 2
    return {
        "received": len(arrivals),
        "released": len(holds),
        "hold_p50_ms": float(p50),
        "hold_p95_ms": float(p95),
        "hold_max_ms": max(holds, default=float("nan")),
    }


async def run_one(impl: str, profile: Profile, duration: float, seed: int, log_dir: Path) -> LossyRun:
    """One impaired audio-level run; ``latency.burst_latencies`` computes the figures."""
    run = Run(impl, profile.name, duration)
    out = LossyRun(run, Impairment(profile, seed))
    server: Any = None
    client: Any = None
    log_dir = log_dir / profile.name
    log_dir.mkdir(exist_ok=True)
    try:
        server = await asyncio.to_thread(ServerProc.ours if impl == "ours" else ServerProc.baseline, "audio", log_dir)
        source = out.source = RandomBurstSource(seed)
        with out.link.installed():
            t0 = now_us()
            if impl == "ours":
                client = await ClientPeer.connect(
                    f"ws://127.0.0.1:{server.port}/ws", audio=source, ice=ICE, receive_media=False, timeout_s=20
                )
            else:
                client = await PlainClient.connect(f"http://127.0.0.1:{server.port}/offer", audio=source)
            connected = now_us()
            run.connected_ms = (connected - t0) / 1000
            sampler = ProcSampler(server.pid).start()
            outputs: list[tuple[int, dict[str, Any]]] = []
            if impl == "ours":
                await _collect_ours(client, outputs, time.monotonic() + duration)
            else:
                await asyncio.sleep(duration)
                outputs = list(client.outputs)
            end = now_us()
            run.proc = await sampler.stop()
            run.server_stats = await asyncio.to_thread(server.stats)
        span = (end - connected) / 1e6
        levels = [
            (t, m["value"]["rms_dbfs"], m["value"]["peak_dbfs"])
            for t, m in outputs
            if m.get("type") == "json" and isinstance(m.get("value"), dict) and m["value"].get("kind") == "level"
        ]
        out.results_per_s = len(levels) / span
        tagged_latencies(run, source, levels, connected, end)
        burst_latencies(
            out.untagged, source.onsets, [(t, rms > LEVEL_THRESHOLD_DBFS) for t, rms, _ in levels], connected, end
        )
        if impl == "baseline":
            out.replay = aiortc_buffer_replay(out.link)
        stats = run.server_stats
        frames = (
            (stats["peers"][0] or {}).get("frames_in", {}).get("audio", {}).get("frames")
            if impl == "ours" and stats.get("peers")
            else stats.get("frames")
        )
        out.frames_per_s = None if frames is None else frames / span
        # split the counted bursts by whether a dropped packet carried part of them (sent_at_s maps back)
        by_sent = {round(s, 6): lat for s, lat in zip(run.sent_at_s, run.latencies_ms)}
        for onset, sent in source.onsets:
            if connected + 1e6 <= sent <= end - 1e6 and out.link.touched(onset):
                out.touched += 1
                lat = by_sent.get(round((sent - connected) / 1e6, 6))
                if lat is not None:
                    out.touched_hits += 1
                    out.touched_ms.append(lat)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        run.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        await close_run(run, client, server)
    return out


# -- report ------------------------------------------------------------------------------------------
def _hits(r: LossyRun | None) -> str:
    if r is None or not r.run.expected:
        return "-"
    hits = r.run.expected - r.run.missed
    return f"{hits} / {r.run.expected} ({hits / r.run.expected:.1%})"


def _touched(r: LossyRun | None) -> str:
    if r is None or not r.touched:
        return "-" if r is None else "0"
    p50 = _ms(float(np.median(r.touched_ms))) if r.touched_ms else "-"
    return f"{r.touched_hits} / {r.touched} with a result, p50 {p50} ms"


def _jitter(r: LossyRun | None) -> str:
    if r is None:
        return "-"
    if r.run.impl == "baseline":
        x = r.replay
        if not x:
            return "-"
        return (
            f"replayed: {x['received'] - x['released']} of {x['received']} received never released / hold "
            f"p50 {x['hold_p50_ms']:.0f}, p95 {x['hold_p95_ms']:.0f}, max {x['hold_max_ms']:.0f} ms"
        )
    j = r.jitter()
    if not j:
        return "-"
    return (
        f"{j.get('lost', 0)} / {j.get('late', 0)} / {j.get('max_hold_ms', 0):.1f} ms "
        f"(target {j.get('target_ms', 0):.1f} ms, measured jitter {j.get('jitter_ms', 0):.1f} ms)"
    )


def table(runs: dict[tuple[str, str], LossyRun], profiles: list[Profile]) -> str:
    lines = ["| impairment (client -> server RTP) | figure | ours | plain aiortc (same run) |", "|---|---|---|---|"]
    for p in profiles:
        o, b = runs.get(("ours", p.name)), runs.get(("baseline", p.name))
        label = f"**{p.name}**: {p.describe()}"
        rows = [
            ("burst -> result, p50 / p95 / p99 ms", _lat(o and o.run), _lat(b and b.run)),
            (
                "max ms",
                _ms(max(o.run.latencies_ms)) if o and o.run.latencies_ms else "-",
                _ms(max(b.run.latencies_ms)) if b and b.run.latencies_ms else "-",
            ),
            ("bursts with a result (hits / bursts)", _hits(o), _hits(b)),
            (
                "untagged rule of latency.py (any burst's result before the next burst): p50 / p95 / p99 ms",
                _lat(o and o.untagged),
                _lat(b and b.untagged),
            ),
        ]
        if p.loss:
            rows.append(("bursts that lost a packet (approx.): with a result, p50", _touched(o), _touched(b)))
        rows += [
            (
                "RTP packets: sent / dropped / delayed (shim)",
                o.link.summary() if o else "-",
                b.link.summary() if b else "-",
            ),
            (
                "audio frames/s into the server pipeline (ours) / recv loop (plain); results/s at the client",
                f"{_ms(o and o.frames_per_s)} / {_ms(o and o.results_per_s)}",
                f"{_ms(b and b.frames_per_s)} / {_ms(b and b.results_per_s)}",
            ),
            (
                "server receive buffer (ours: counters lost / late / max hold; plain: aiortc's buffer replayed)",
                _jitter(o),
                _jitter(b),
            ),
            ("server CPU (% of one core) / RSS", _cpu(o and o.run), _cpu(b and b.run)),
        ]
        for i, (fig, a, c) in enumerate(rows):
            lines.append(f"| {label if i == 0 else ''} | {fig} | {a} | {c} |")
    return "\n".join(lines)


def details(runs: list[LossyRun]) -> str:
    out = []
    for r in runs:
        line = (
            f"- **{r.run.impl} {r.run.workload}**: counted {r.run.expected}, measured {len(r.run.latencies_ms)}, "
            f"missed {r.run.missed}; connected in {_ms(r.run.connected_ms, 0)} ms; shim: {r.link.summary()}, "
            f"{r.link.rtcp} RTCP passed"
        )
        if r.run.error:
            line += f"; ERROR {r.run.error}"
        stats = r.run.server_stats
        if r.run.impl == "ours" and isinstance(stats, dict) and stats.get("peers"):
            p = stats["peers"][0] or {}
            line += f"  \n  server jitter buffer: {p.get('jitter', {}).get('audio')}; frames_in {p.get('frames_in')}"
        else:
            line += f"  \n  server: {stats}"
        out.append(line)
    return "\n".join(out)


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    log_dir = Path(tempfile.mkdtemp(prefix="rm-lossy-logs-"))
    profiles = [PROFILES[name] for name in args.profiles.split(",")]
    runs: dict[tuple[str, str], LossyRun] = {}
    for p in profiles:
        for impl in ("baseline", "ours"):
            print(f"running {impl} {p.name} ({args.duration:.0f} s): {p.describe()} ...", flush=True)
            runs[(impl, p.name)] = r = await run_one(impl, p, args.duration, args.seed, log_dir)
            print(
                f"  {impl} {p.name}: {_lat(r.run)}; hits {_hits(r)}; shim {r.link.summary()}; jitter {_jitter(r)}",
                flush=True,
            )
    text = table(runs, profiles)
    print()
    print(text)
    print()
    lo, hi = GAP_MS
    body = (
        f"Audio burst -> result as in *Transport latency* (`bench/latency.py`: `AudioLevelNode`, first level above "
        f"{LEVEL_THRESHOLD_DBFS:.0f} dBFS received on the data channel; `latency.burst_latencies` does the "
        f"matching), with {BURST_MS} ms 880 Hz bursts after a random {lo}-{hi} ms gap (seeded, sample-exact, so "
        "the onset falls anywhere in a 20 ms frame), "
        f"{args.duration:.0f} s per run, a fresh server process per run, first and last second not counted. "
        "Bursts cycle through three amplitudes (peaks -6 / -9 / -12 dBFS) and a result counts for a burst only if "
        f"its `peak_dbfs` is within {TAG_TOLERANCE_DB} dB of that burst's, before the next burst of the same "
        'amplitude (>= 600 ms later); "bursts with a result" is hits / counted bursts under that rule. Without '
        "the tag (latency.py's rule, one row below) a result arriving after the next burst was sent is taken for "
        "the next burst's: harmless for ours, but plain aiortc's receive buffer falls ~14 packets (~280 ms) behind "
        "at the first lost packet, more than the shorter gaps.\n\n"
        "Impairment: a shim in the bench (client-only) process replaces aiortc's `RTCDtlsTransport._send_rtp` "
        "(before SRTP) and drops or delays the client's outgoing audio RTP packets; RTCP and the data channel "
        "pass untouched; delayed packets are sent from a task, so one delayed past the 20 ms packet spacing "
        f"arrives after its successor. Loss is exactly 2 % in both lossy profiles: one packet in every block of "
        "50, at a random position; the 20 ms of jitter is either every kept packet delayed by U(0, 20) ms "
        "(`uniform`: 20 ms peak-to-peak, no reordering at 20 ms spacing) or five other packets of each 50 (10 %) "
        "delayed by exactly 20 ms (`spike`: the rates of the shim in `tests/transport/test_lossy_webrtc.py`; such a "
        f"packet arrives with or after the next one). RNG seed {args.seed} for the burst schedule and the packet "
        "fates, drawn per packet in send order, and packet n carries source frame n in both runs: ours and plain "
        "aiortc see the same packets dropped and delayed, on the same bursts. `clean` is the same workload unimpaired, "
        "same run. "
        '"bursts that lost a packet": counted bursts whose decoded audio (onset + 6.5 ms Opus lookahead, 20 '
        "ms) overlapped a dropped packet's 20 ms (approximate). Receive buffer, ours (`ServerPeer.stats()`): "
        "`lost` = packets given up on (gap skipped after the reorder wait), `late` = arrived after their slot was "
        "skipped, max hold = longest a packet waited for a missing predecessor. Plain aiortc has no counters: "
        "its `JitterBuffer(capacity=16, prefetch=4)` is fed offline with the shim's kept packets in arrival "
        "order (send time + delay): packets never released, and each released packet's wait from its arrival "
        "to the arrival that released it.\n\n" + text + "\n\n### Details\n\n" + details(list(runs.values()))
    )
    if not args.no_write:
        write_section("Loss and jitter", body)
    print(f"server logs: {log_dir}")
    return 0 if all(not r.run.error for r in runs.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (default 20)")
    parser.add_argument("--profiles", default="clean,uniform,spike", help=f"comma-separated of {', '.join(PROFILES)}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch results.md")
    sys.exit(asyncio.run(main(parser.parse_args())))
