"""Kernel CPU of the stream widget's live plot: matplotlib PNGs vs the data drawn by the widget.

A real Jupyter kernel (``jupyter server`` subprocess, the extension loaded) makes a ``StreamWidget`` and a
``LivePlot`` as ``rm.stream`` does, then for ``--seconds`` feeds level-meter outputs (``rms_dbfs``,
``peak_dbfs``, a ``has_speech`` flag) at a real-time rate and ticks the plot every 50 ms like the stream's
display thread, with at most 10 updates a second. Each update goes out on the widget's comm (iopub, as
binary buffers), so serialisation and sending count. Kernel CPU = CPU time of the kernel process (all its
threads) over the run, minus the same idle kernel measured alone (100 % = one core).

Modes: ``png`` (``LivePlot(sink=widget.send_plot)``: matplotlib Agg renders each frame to PNG in the
kernel) and ``data`` (``LivePlot(data_sink=widget.send_plot_data)``: the window's points as float32
buffers; the widget draws them on a canvas).

    python bench/plot_cpu.py            # writes the "Live plot kernel CPU" section of bench/results.md
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from report import write_section

KERNEL_CODE = """
import json, os, time, threading
from remotemedia_nbrtc.display.live import LivePlot
from remotemedia_nbrtc.widget import StreamWidget

_cpu = time.process_time  # every thread of the kernel process (ns resolution, unlike os.times)

def _run(mode, rate_hz, seconds, fps=10.0):
    w = StreamWidget()
    sent = {{"bytes": 0}}
    if mode == "png":
        def sink(png):
            sent["bytes"] += len(png)
            w.send_plot(png)
        plot = LivePlot(["rms_dbfs", "peak_dbfs"], flags=["has_speech"], max_fps=fps, sink=sink)
    elif mode == "data":
        def data_sink(msg, buffers):
            sent["bytes"] += sum(len(b) for b in buffers)
            w.send_plot_data(msg, buffers)
        plot = LivePlot(["rms_dbfs", "peak_dbfs"], flags=["has_speech"], max_fps=fps, data_sink=data_sink)
    else:
        plot = None
    cpu0, t0 = _cpu(), time.monotonic()
    n = 0
    next_tick = t0
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        if plot is not None:
            level = -30 + 10 * ((n % 50) / 50)
            plot.feed({{"kind": "level", "rms_dbfs": level, "peak_dbfs": level + 6, "has_speech": (n // 40) % 2 == 0}})
            if now >= next_tick:
                plot.tick()
                next_tick = now + 0.05
        n += 1
        time.sleep(max(0.0, t0 + n / rate_hz - time.monotonic()))
    cpu, wall = _cpu() - cpu0, time.monotonic() - t0
    frames = plot.frames if plot is not None else 0
    w.close()
    return {{"mode": mode, "rate_hz": rate_hz, "cpu_pct": 100 * cpu / wall, "frames": frames, "fps": frames / wall,
            "bytes_per_frame": sent["bytes"] / frames if frames else 0, \
"cpu_ms_per_frame": 1000 * cpu / frames if frames else 0}}

print(json.dumps(_run({mode!r}, {rate}, {seconds})))
"""


def measure(kernel, mode: str, rate: float, seconds: float) -> dict:
    out = kernel.execute(KERNEL_CODE.format(mode=mode, rate=rate, seconds=seconds), timeout=seconds + 60)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from remotemedia_nbrtc.testing.jupyter import JupyterServer

    with tempfile.TemporaryDirectory(prefix="rm-bench-plot-") as tmp:
        root = Path(tmp)
        env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1])),
               "JUPYTER_DATA_DIR": str(root / "data"), "JUPYTER_PLATFORM_DIRS": "1"}
        with JupyterServer.start(root, env=env) as server:
            kernel = server.start_kernel()
            kernel.execute("import matplotlib, numpy; from remotemedia_nbrtc.display.live import LivePlot", 60)
            measure(kernel, "png", 10, 1.0)  # warm-up: matplotlib's first figure, font cache
            idle = measure(kernel, "idle", 10, args.seconds)
            rows = []
            for rate in (10, 50):
                for mode in ("png", "data"):
                    r = measure(kernel, mode, rate, args.seconds)
                    r["net_pct"] = r["cpu_pct"] - idle["cpu_pct"]
                    rows.append(r)
                    print(json.dumps(r), flush=True)
            kernel.shutdown()

    lines = [
        f"Each run {args.seconds:.0f} s in a real kernel; idle kernel {idle['cpu_pct']:.1f} % subtracted. Outputs at "
        "10 Hz (a level meter on 100 ms chunks, 100 points in the 10 s window) and 50 Hz (20 ms frames, 500 "
        "points); at most 10 plot updates a second.",
        "",
        "| outputs/s | plot path | kernel CPU (% of a core) | CPU per update | updates/s | bytes per update |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "matplotlib PNG in the kernel" if r["mode"] == "png" else "float32 data, drawn on the widget's canvas"
        lines.append(f"| {r['rate_hz']} | {name} | {r['net_pct']:.1f} | {r['cpu_ms_per_frame']:.2f} ms | "
                     f"{r['fps']:.1f} | {r['bytes_per_frame'] / 1000:.1f} kB |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Live plot kernel CPU", body)


if __name__ == "__main__":
    main()
