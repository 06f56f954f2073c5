"""An asyncio event loop running on its own daemon thread.

Two process-wide loops exist, both started lazily on first use (never at import):

- ``rtc_loop()``: aiortc runs here, and nothing else (no user code).
- ``pipeline_loop()``: stream sessions and their nodes run here.

``shutdown_loops()`` stops both; it is registered with :mod:`atexit` when a loop first starts.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "pipeline_loop", "rtc_loop", "shutdown_loops"]

T = TypeVar("T")

_STOP_TIMEOUT_S = 5.0


class LoopThread:
    """An asyncio loop served by one daemon thread, started in the constructor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._stopped = False
        self._lock = threading.Lock()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self._cancel_all()
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()

    def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def is_running(self) -> bool:
        """True while the loop thread is alive and not stopping."""
        return not self._stopped and self._thread.is_alive()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on this loop from any thread; returns a concurrent future."""
        if self._stopped:
            coro.close()
            raise RuntimeError(f"loop thread {self.name!r} is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on this loop and block the calling thread for its result.

        Raises ``RuntimeError`` when called from the loop's own thread (it would deadlock);
        on timeout the coroutine is cancelled and ``TimeoutError`` is raised.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                f"LoopThread.run() called from the {self.name!r} loop thread itself; "
                "await the coroutine instead"
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.done():  # the coroutine itself raised TimeoutError (the same class since 3.11)
                raise
            future.cancel()
            raise TimeoutError(f"coroutine on {self.name!r} did not finish within {timeout} s") from None

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop thread (thread-safe); silently ignored once stopped."""
        if self._stopped:
            return
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def stop(self) -> None:
        """Cancel every task, close the loop and join the thread. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self.in_loop_thread():
            raise RuntimeError(f"LoopThread.stop() called from the {self.name!r} loop thread itself")
        if self._thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
            self._thread.join(_STOP_TIMEOUT_S)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<LoopThread {self.name!r} {state}>"


_loops: dict[str, LoopThread] = {}
_loops_lock = threading.Lock()
_atexit_registered = False


def _get(name: str) -> LoopThread:
    global _atexit_registered
    with _loops_lock:
        lt = _loops.get(name)
        if lt is None or not lt.is_running():
            lt = LoopThread(name)
            _loops[name] = lt
            if not _atexit_registered:
                atexit.register(shutdown_loops)
                _atexit_registered = True
        return lt


def rtc_loop() -> LoopThread:
    """The process-wide loop thread that runs aiortc (started on first call)."""
    return _get("remotemedia-rtc")


def pipeline_loop() -> LoopThread:
    """The process-wide loop thread that runs stream sessions (started on first call)."""
    return _get("remotemedia-pipeline")


def shutdown_loops() -> None:
    """Stop both shared loops (if started). Safe to call more than once."""
    with _loops_lock:
        loops = list(_loops.values())
        _loops.clear()
    for lt in loops:
        if not lt.in_loop_thread():
            lt.stop()
