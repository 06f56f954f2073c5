"""CPU and memory of a server process while a workload runs (psutil)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil


class ProcSampler:
    """Samples one process: CPU % of one core over the window, peak and final RSS (MB)."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_rss = 0
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None
        self.result: dict[str, Any] = {}

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    async def _sample(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            await asyncio.sleep(self.interval_s)

    def start(self) -> ProcSampler:
        self._cpu0, self._t0 = self._cpu(), time.monotonic()
        self._task = asyncio.ensure_future(self._sample())
        return self

    async def stop(self) -> dict[str, Any]:
        cpu, elapsed = self._cpu() - self._cpu0, time.monotonic() - self._t0
        rss = self.proc.memory_info().rss
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.peak_rss = max(self.peak_rss, rss)
        self.result = {"cpu_pct": 100.0 * cpu / elapsed if elapsed > 0 else float("nan"),
                       "rss_mb": rss / 2**20, "peak_rss_mb": self.peak_rss / 2**20}
        return self.result
