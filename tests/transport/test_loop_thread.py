"""LoopThread and the shared loops."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from remotemedia_nbrtc.transport.loop_thread import LoopThread

pytestmark = pytest.mark.timeout(30)


def test_run_submit_call_soon_and_stop() -> None:
    lt = LoopThread("t-basic")
    try:
        assert lt.thread.daemon
        assert lt.run(asyncio.sleep(0, result=42), timeout=2) == 42
        fut = lt.submit(asyncio.sleep(0, result="x"))
        assert fut.result(2) == "x"

        seen = threading.Event()
        where: list[str] = []
        lt.call_soon(lambda: (where.append(threading.current_thread().name), seen.set()))
        assert seen.wait(2) and where == ["t-basic"]

        async def boom() -> None:
            raise ValueError("inside")

        with pytest.raises(ValueError, match="inside"):
            lt.run(boom(), timeout=2)
        with pytest.raises(TimeoutError):
            lt.run(asyncio.sleep(5), timeout=0.05)
    finally:
        lt.stop()
    lt.stop()  # idempotent
    assert not lt.thread.is_alive()
    assert lt.loop.is_closed()
    with pytest.raises(RuntimeError):
        lt.submit(asyncio.sleep(0))


def test_run_from_own_thread_raises_clear_error() -> None:
    lt = LoopThread("t-self")
    try:
        async def inner() -> str:
            try:
                lt.run(asyncio.sleep(0))
            except RuntimeError as exc:
                return str(exc)
            return "no error"

        assert "loop thread itself" in lt.run(inner(), timeout=2)
    finally:
        lt.stop()


def test_stop_cancels_pending_tasks() -> None:
    lt = LoopThread("t-cancel")
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lt.submit(forever())
    lt.run(asyncio.sleep(0.01))
    lt.stop()
    assert cancelled.is_set()


def test_loops_are_lazy_and_shutdown() -> None:
    code = (
        "import threading\n"
        "import remotemedia_nbrtc.transport.loop_thread as m\n"
        "import remotemedia_nbrtc.transport.peer\n"
        "assert not [t for t in threading.enumerate() if t.name.startswith('remotemedia-')]\n"
        "r = m.rtc_loop(); p = m.pipeline_loop()\n"
        "assert r is m.rtc_loop() and r is not p and r.thread is not p.thread\n"
        "m.shutdown_loops(); m.shutdown_loops()\n"
        "assert not r.thread.is_alive() and not p.thread.is_alive()\n"
        "assert m.rtc_loop() is not r\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "ok", out.stderr
