"""Burst -> result latency through the WebSocket media fallback, beside the WebRTC path, same run.

One real ``jupyter server`` subprocess with the extension and one kernel running
``serve(bench/workloads/audio_level.yaml)`` (bench/servers.py ``JupyterKernel``). Against that same
session, one after the other: ClientPeer (WebRTC), then WebSocketMediaClient with pcm16 at 48 kHz,
pcm16 at 16 kHz and Opus. Same source (20 ms 880 Hz bursts every 500 ms), same analysis as
bench/latency.py (first result above -30 dBFS after each burst; first/last second not counted).

    .venv/bin/python bench/ws_fallback.py [--duration S] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from latency import BURST_MS, ICE, LEVEL_THRESHOLD_DBFS, PERIOD_MS, Run, _collect_ours, burst_latencies
from report import write_section
from servers import MANIFESTS, JupyterKernel

from remotemedia_nbrtc.runtime import now_us
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.standalone.websocket_client import WebSocketMediaClient
from remotemedia_nbrtc.transport.sources import ToneBurstSource

VARIANTS = [("webrtc", {}), ("ws pcm16 48k", {"audio_codec": "pcm16", "audio_rate": 48000}),
            ("ws pcm16 16k", {"audio_codec": "pcm16", "audio_rate": 16000}), ("ws opus", {"audio_codec": "opus"})]


async def one(kernel: JupyterKernel, name: str, options: dict[str, Any], duration: float) -> tuple[Run, Any]:
    run = Run(name, "audio", duration)
    source = ToneBurstSource(burst_ms=BURST_MS, period_ms=PERIOD_MS, amplitude=0.5)
    client: Any = None
    stats: Any = None
    try:
        t0 = now_us()
        if name == "webrtc":
            client = await ClientPeer.connect(kernel.ws_url, token=kernel.token, audio=source, ice=ICE,
                                              receive_media=False, timeout_s=20)
        else:
            client = await WebSocketMediaClient.connect(kernel.ws_url, token=kernel.token, audio=source, **options)
        connected = now_us()
        run.connected_ms = (connected - t0) / 1000
        outputs: list[tuple[int, dict[str, Any]]] = []
        await _collect_ours(client, outputs, time.monotonic() + duration)
        hits: list[tuple[int, bool]] = []
        for recv_us, msg in outputs:
            value = msg.get("value")
            if msg.get("type") == "json" and isinstance(value, dict) and value.get("kind") == "level":
                hits.append((recv_us, value["rms_dbfs"] > LEVEL_THRESHOLD_DBFS))
        end = now_us()
        if name != "webrtc":
            stats = await client.call("media.stats")
            stats = {k: stats[k] for k in ("audio_frames_in", "seq_gaps", "decode_errors")} | {
                "audio_drops": stats["bridge"]["audio_drops"], "client_dropped": client.counters["audio_dropped"],
                "kbit_s_up": round(client.counters["bytes_sent"] * 8 / 1000 / duration, 1)}
        burst_latencies(run, source.onsets, hits, connected, end)
    except Exception as exc:  # noqa: BLE001 - report the failure in the table, keep benchmarking
        run.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        if client is not None:
            await asyncio.wait_for(client.close(), 15)
    return run, stats


def _row(run: Run, stats: Any) -> str:
    if run.error:
        return f"| {run.impl} | error: {run.error} | | | |"
    p50, p95, p99 = run.pct
    extra = "" if stats is None else ", ".join(f"{k} {v}" for k, v in stats.items())
    return (f"| {run.impl} | {p50:.1f} / {p95:.1f} / {p99:.1f} | {len(run.latencies_ms)}/{run.expected} "
            f"| {run.connected_ms:.0f} | {extra} |")


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="rm-bench-ws-") as tmp:
        kernel = await asyncio.to_thread(JupyterKernel, MANIFESTS["audio"], Path(tmp))
        try:
            rows = []
            for name, options in VARIANTS:
                run, stats = await one(kernel, name, options, args.duration)
                rows.append(_row(run, stats))
                print(rows[-1], flush=True)
        finally:
            await asyncio.to_thread(kernel.stop)
    body = (
        "A real `jupyter server` subprocess with the extension, one kernel running "
        "`serve(bench/workloads/audio_level.yaml)`; each client connects to the extension's "
        f"`remotemedia/ws/<sid>` with the token and streams 20 ms 880 Hz bursts every {PERIOD_MS} ms for "
        f"{args.duration:.0f} s. WebRTC = ClientPeer (Opus over RTP, loopback ICE); ws = WebSocketMediaClient "
        "(binary frames on the signaling WebSocket, relayed by the extension over the kernel link). "
        "Latency = burst handed to the sender -> first level result above -30 dBFS received by the client; "
        "first and last second not counted. Goal for the fallback: p50 <= 60 ms.\n\n"
        "| path | burst -> result p50 / p95 / p99 ms | measured / counted | connect ms | kernel side |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(body)
    if not args.no_write:
        write_section("WebSocket media fallback vs WebRTC (Jupyter)", body)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results.md alone")
    sys.exit(asyncio.run(main(parser.parse_args())))
