"""Many concurrent clients against one standalone server, one OS process per client.

    .venv/bin/python bench/load.py [--clients 10] [--seconds 10] [--workload echo] [--write]

The server is ``bench/serve_ours.py`` (the standalone WebRTCServer, loopback-only ICE) in its own process.
Each client is this script's ``client`` mode in its own process: a ClientPeer sending a 440 Hz tone
(20 ms frames, 50/s) and counting the audio chunks that come back. All clients connect first, then
measure the same window (after 1 s of warm-up); the server's CPU is sampled over that window
(100 % = one core). With all clients in one process, the clients' own event loop was the limit,
not the server (issue 17: 16.5 chunks/s each at 49 % server CPU).

``--write`` replaces the "## Load" section of bench/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procstat import ProcSampler
from servers import ServerProc, _env

BENCH = Path(__file__).resolve().parent

WARMUP_S = 1.0
FULL_RATE = 50.0  # 20 ms chunks per second


async def client_main(url: str, seconds: float) -> None:
    """One client: connect, say ready, wait for "go", measure, print one JSON line."""
    import psutil

    from remotemedia_nbrtc.standalone import ClientPeer
    from remotemedia_nbrtc.transport import ToneSource
    from remotemedia_nbrtc.transport.config import IceConfig

    started = time.monotonic()
    client = await ClientPeer.connect(url, audio=ToneSource(440.0), ice=IceConfig(loopback_only=True))
    connect_s = time.monotonic() - started
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    await asyncio.sleep(WARMUP_S)
    me = psutil.Process()
    cpu0, n0, t0 = sum(me.cpu_times()[:2]), len(client.received_audio), time.monotonic()
    await asyncio.sleep(seconds)
    n1, t1, cpu1 = len(client.received_audio), time.monotonic(), sum(me.cpu_times()[:2])
    print(json.dumps({"chunks_per_s": (n1 - n0) / (t1 - t0), "connect_s": connect_s, "state": client.connection_state,
                      "client_cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0)}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "close": stay connected until the server is sampled
    await client.close()


def _server_frames_in(stats: dict[str, Any]) -> int:
    return sum(p.get("frames_in", {}).get("audio", {}).get("frames", 0) for p in stats.get("peers", []))


def _read_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            return json.loads(line)  # type: ignore[no-any-return]
    raise RuntimeError(f"client {proc.pid} gave no answer (exit {proc.poll()})")


async def run(clients: int, seconds: float, workload: str) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="rm-load-"))
    server = ServerProc.ours(workload, log_dir)
    procs: list[subprocess.Popen[str]] = []
    try:
        url = f"ws://127.0.0.1:{server.port}/ws"
        for i in range(clients):
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "client", "--url", url, "--seconds", str(seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log_dir / f"client{i}.log", "wb"),  # noqa: SIM115
                env=_env(), text=True, bufsize=1))
        loop = asyncio.get_running_loop()
        for proc in procs:
            await loop.run_in_executor(None, _read_json, proc, 60.0)  # ready
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        await asyncio.sleep(WARMUP_S)
        in0 = _server_frames_in(await loop.run_in_executor(None, server.stats))
        sampler = ProcSampler(server.pid).start()
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        cpu = await sampler.stop()
        in1 = _server_frames_in(await loop.run_in_executor(None, server.stats))
        server_in_rate = (in1 - in0) / (time.monotonic() - t0) / clients
        results = [await loop.run_in_executor(None, _read_json, proc, 30.0) for proc in procs]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("close\n")
            proc.stdin.flush()
    finally:
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
    rates = [r["chunks_per_s"] for r in results]
    server_cores = cpu["cpu_pct"] / 100.0
    return {
        "clients": clients,
        "seconds": seconds,
        "workload": workload,
        "rates": rates,
        "min_rate": min(rates),
        "mean_rate": sum(rates) / len(rates),
        "connected": sum(r["state"] == "connected" for r in results),
        "connect_s_max": max(r["connect_s"] for r in results),
        "client_cpu_pct_mean": sum(r["client_cpu_pct"] for r in results) / len(results),
        "server_in_per_client": server_in_rate,
        "server_cpu_pct": cpu["cpu_pct"],
        "server_rss_mb": cpu["peak_rss_mb"],
        # full-rate-equivalent sessions (received chunks / 50 per s) per core of server CPU
        "sessions_per_core": sum(rates) / FULL_RATE / server_cores if server_cores > 0 else float("inf"),
        "loadavg_1m_at_start": load0,
        "cores": os.cpu_count(),
    }


def markdown(runs: list[dict[str, Any]], command: str) -> str:
    r = runs[0]
    lines = [
        "## Load",
        "",
        f"`{command}`",
        "",
        f"One standalone server process (`bench/serve_ours.py`, workload `{r['workload']}`: audio in -> the same "
        f"audio back); {r['clients']} clients, **one OS process each** (ClientPeer + a 440 Hz tone, 20 ms frames, "
        f"{FULL_RATE:g}/s), all on 127.0.0.1 with loopback-only ICE. All clients connect, then measure the same "
        f"{r['seconds']:g} s window after {WARMUP_S:g} s of warm-up; server CPU over that window (100 % = one core). "
        f"The machine has {r['cores']} cores shared with other work, so the clients' own CPU competes with the "
        "server's; the 1-min load average at the start of each run is in the table.",
        "",
        "| clients | connected | audio chunks/s back per client (min / mean; full = 50) | clients at >= 95 % | "
        "frames/s the server received per client | "
        "server CPU | server peak RSS | client CPU each (mean) | load avg | sessions per core |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        full = sum(rate >= 0.95 * FULL_RATE for rate in r["rates"])
        lines.append(
            f"| {r['clients']} | {r['connected']} | {r['min_rate']:.1f} / {r['mean_rate']:.1f} | {full} | "
            f"{r['server_in_per_client']:.1f} | {r['server_cpu_pct']:.0f} % | {r['server_rss_mb']:.0f} MB | "
            f"{r['client_cpu_pct_mean']:.0f} % | {r['loadavg_1m_at_start']:.1f} | {r['sessions_per_core']:.1f} |"
        )
    lines += [
        "",
        "Sessions per core = full-rate-equivalent echo sessions (sum of the clients' chunks/s / 50) per core of "
        "server CPU. Per-client rates, last run: " + ", ".join(f"{x:.1f}" for x in runs[-1]["rates"]) + ".",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = BENCH / "results.md"
    doc = path.read_text()
    start = doc.find("\n## Load\n")
    if start >= 0:
        end = doc.find("\n## ", start + 1)
        doc = doc[: start + 1] + text + (doc[end + 1 :] if end >= 0 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    client = sub.add_parser("client")
    client.add_argument("--url", required=True)
    client.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="10", help="client count, or a comma list for a sweep (2,5,10)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workload", default="echo")
    parser.add_argument("--write", action="store_true", help='replace the "## Load" section of bench/results.md')
    args = parser.parse_args()
    if args.mode == "client":
        asyncio.run(client_main(args.url, args.seconds))
        return
    runs = [asyncio.run(run(int(n), args.seconds, args.workload)) for n in str(args.clients).split(",")]
    print(json.dumps(runs, indent=1))
    command = "python bench/load.py " + " ".join(sys.argv[1:])
    text = markdown(runs, command)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
