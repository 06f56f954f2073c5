"""Cost of running a node on Ray: the per-frame hop, and many sessions on a shared STT pool.

1. Hop: one 20 ms audio frame at a time through a one-node pipeline (PassThrough), in the kernel vs
   in a per-session Ray actor (local Ray, started here); send -> output latency, p50/p95; the
   difference is what the Ray hop adds.
2. Sessions: N concurrent sessions (1, 2, 4, 8), each sending spoken utterances (espeak-ng) at real
   time pace to a whole-utterance pocketsphinx recogniser: a shared pool of 2 Ray replicas vs one
   in-kernel (threaded) recogniser per session. Latency = utterance sent -> transcript out; RTF =
   recogniser wall time / audio time; CPU = kernel + Ray actor processes over the run (100 % = one core).

    python bench/ray_hop.py [--frames 300] [--sessions 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np
import psutil
from report import percentiles, write_section

import remotemedia_nbrtc as rm
from remotemedia_nbrtc import AudioData, Node, Pipeline, PipelineRunner, TextData
from remotemedia_nbrtc.nodes import PassThrough
from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, synthesize


class UtteranceSTT(Node, register=False):
    """Stateless recogniser: each input is one whole utterance, each output its transcript."""

    node_type = "BenchUtteranceSTT"
    threaded = True
    stateful = False

    def __init__(self) -> None:
        self.engine = None

    async def start(self) -> None:
        from remotemedia_nbrtc.nodes.speech import PocketSphinxEngine

        self.engine = PocketSphinxEngine(phrases=list(HOME_COMMANDS))
        self.engine.start()

    def process(self, data):
        started = time.perf_counter()
        samples = data.samples.reshape(-1)
        for i in range(0, len(samples), 320):  # 20 ms at a time, as from a microphone
            self.engine.accept_audio(samples[i:i + 320])
        text = " ".join(t.text for t in self.engine.finish() if t.final and t.text)
        return TextData(text, metadata={**data.metadata, "stt_s": time.perf_counter() - started})


def _padded(samples: np.ndarray) -> np.ndarray:
    """0.3 s of silence after the speech (the endpointer ends the utterance), to a whole 60 ms."""
    n = -(-(len(samples) + 4800) // 960) * 960
    return np.concatenate([samples, np.zeros(n - len(samples), np.float32)])


async def hop_latency(executor, frames: int) -> list[float]:
    p = Pipeline()
    p.add("pass", PassThrough(), executor=executor)
    session = await PipelineRunner().create_stream_session(p)
    samples = np.zeros(320, np.float32)
    out = []
    for i in range(frames + 20):
        t0 = time.perf_counter()
        await session.send_input(AudioData(samples, 16000, timestamp_us=i * 20_000))
        await session.receive_output(timeout=30)
        if i >= 20:  # warm-up
            out.append((time.perf_counter() - t0) * 1000)
    await session.close()
    return out


def _cpu_of(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def _actor_procs() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if p.info["cmdline"] and "ray::NodeHost" in " ".join(p.info["cmdline"]):
            out.append(p)
    return out


async def sessions_run(n: int, executor, utterances: list[np.ndarray]) -> dict:
    p = Pipeline()
    p.add("stt", UtteranceSTT(), executor=executor)
    runner = PipelineRunner()
    sessions = [await runner.create_stream_session(p) for _ in range(n)]
    procs = [psutil.Process(os.getpid()), *(_actor_procs() if executor.kind == "ray" else [])]
    cpu0, t0 = _cpu_of(procs), time.perf_counter()
    latencies: list[float] = []
    stt_s: list[float] = []
    audio_s = 0.0

    async def one(session, offset: int) -> None:
        nonlocal audio_s
        for k in range(len(utterances)):
            u = utterances[(k + offset) % len(utterances)]
            sent = time.perf_counter()
            await session.send_input(AudioData(u, 16000))
            out = await session.receive_output(timeout=120)
            latencies.append((time.perf_counter() - sent) * 1000)
            if not isinstance(out, TextData):
                raise RuntimeError(f"recogniser failed: {out!r}")
            stt_s.append(out.metadata["stt_s"])
            audio_s += len(u) / 16000
            await asyncio.sleep(max(0.0, len(u) / 16000 - (time.perf_counter() - sent)))  # real-time pace

    await asyncio.gather(*(one(s, i) for i, s in enumerate(sessions)))
    wall = time.perf_counter() - t0
    cpu = _cpu_delta(cpu0, _cpu_of(procs))
    for s in sessions:
        await s.close()
    p50, p95 = percentiles(latencies, (0.5, 0.95))
    return {"p50": p50, "p95": p95, "rtf": sum(stt_s) / audio_s, "cpu": 100 * cpu / wall}


async def main(frames: int, counts: list[int]) -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    local = await hop_latency(rm.local(), frames)
    remote = await hop_latency(rm.ray(num_cpus=0), frames)
    plain = await hop_latency(rm.ray(num_cpus=0, compiled_graph=False), frames)
    lp, lq = percentiles(local, (0.5, 0.95))
    rp, rq = percentiles(remote, (0.5, 0.95))
    pp, pq = percentiles(plain, (0.5, 0.95))
    lines = [
        f"Hop: {frames} frames of 20 ms audio (320 samples, 16 kHz), one in flight, after 20 warm-up frames; "
        "local Ray (`ray.init(num_cpus=2)`) on this machine. Goal: under 2 ms added per hop at p50.",
        "",
        "| node | send -> output p50 ms | p95 ms |",
        "|---|---|---|",
        f"| PassThrough in the kernel | {lp:.3f} | {lq:.3f} |",
        f"| PassThrough in a Ray actor, plain actor calls (`rm.ray(num_cpus=0, compiled_graph=False)`) "
        f"| {pp:.3f} | {pq:.3f} |",
        f"| PassThrough in a Ray actor, compiled graph (`rm.ray(num_cpus=0)`, the default) | {rp:.3f} | {rq:.3f} |",
        f"| added by the Ray hop, plain actor calls | {pp - lp:.3f} | {pq - lq:.3f} |",
        f"| **added by the Ray hop, compiled graph** | **{rp - lp:.3f}** | {rq - lq:.3f} |",
        "",
    ]
    utterances = [_padded(synthesize(s)) for s in HOME_COMMANDS[:4]]
    lines += [
        f"Sessions: each sends {len(utterances)} espeak-ng utterances "
        f"({sum(len(u) for u in utterances) / 16000:.1f} s of speech) at real-time pace to a whole-utterance "
        "pocketsphinx recogniser (phrase list). Pool: `rm.ray(num_cpus=0, replicas=2, stateful=False)`, "
        "shared by all sessions; in-kernel: one threaded recogniser per session. CPU: kernel + Ray actor "
        "processes (100 % = one core).",
        "",
        "| sessions | executor | latency p50 ms | p95 ms | RTF | CPU % |",
        "|---|---|---|---|---|---|",
    ]
    for n in counts:
        for name, executor in (("in-kernel, per session", rm.local()),
                               ("Ray pool of 2", rm.ray(num_cpus=0, replicas=2, stateful=False))):
            r = await sessions_run(n, executor, utterances)
            print(n, name, r, flush=True)
            lines.append(f"| {n} | {name} | {r['p50']:.0f} | {r['p95']:.0f} | {r['rtf']:.3f} | {r['cpu']:.0f} |")
    load = os.getloadavg()
    lines += [
        "",
        f"The machine (2 cores) is shared with other jobs (load average at the end: {load[0]:.1f} over 1 min, "
        f"{load[1]:.1f} over 5 min): absolute numbers are noisy; the two executors were run back to back.",
    ]
    ray.shutdown()
    body = "\n".join(lines)
    print(body)
    cmd = "python bench/ray_hop.py" + (f" --frames {frames}" if frames != 300 else "")
    if counts != [1, 2, 4, 8]:
        cmd += " --sessions " + ",".join(map(str, counts))
    write_section("Nodes on Ray", body, cmd)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--sessions", default="1,2,4,8")
    args = ap.parse_args()
    asyncio.run(main(args.frames, [int(x) for x in args.sessions.split(",")]))
