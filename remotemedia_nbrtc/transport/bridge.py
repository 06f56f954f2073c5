"""Every crossing between the RTC loop (aiortc) and the pipeline loop (stream sessions).

:class:`SessionBridge` creates the :class:`StreamSession` on the pipeline loop, forwards inputs to it
and pumps its outputs back to the RTC loop. Inputs cross through three lanes, each drained by its own
task on the pipeline loop so that one kind's backpressure never stalls another:

- ``audio``: FIFO bounded at ``audio_capacity`` frames (10 s of 20 ms frames by default). The session's
  ``send_input`` applies backpressure; audio is dropped only if this bound is hit, and every drop is
  counted in ``stats()["audio_drops"]``.
- ``video``: ``video_capacity`` slots (3 by default), keep-newest: when full, the oldest waiting frame
  is dropped and counted in ``video_drops``. More than one slot because the decoder can hand over two
  or three frames within one pipeline-loop iteration (a frame released late by the jitter buffer, the
  decoder thread catching up after a GIL stall); one slot dropped those although the pipeline was idle.
- ``data``: FIFO (data-channel messages), bounded and counted like audio.

Outputs are drained by one dedicated task that always awaits ``session.receive_output_from`` (so the
session's bounded output queue can never deadlock the pipeline) and hands each item to ``on_output``
on the RTC loop via ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..runtime import AudioData, PipelineRunner, PipelineSource, RuntimeData, StreamSession
from ..runtime.queues import DropOldest
from .loop_thread import LoopThread, pipeline_loop
from .stagetrace import StageTrace

__all__ = ["SessionBridge"]

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, RuntimeData], None]


class _Lane:
    """Inputs of one kind waiting on the pipeline loop; one task forwards them into the session."""

    def __init__(
        self, name: str, session: StreamSession, capacity: int, keep_newest: bool, trace: StageTrace | None = None
    ) -> None:
        self.name = name
        self.trace = trace
        self._session = session
        self._keep_newest = keep_newest
        self._items: DropOldest[RuntimeData] = DropOldest(capacity)
        self._ready = asyncio.Event()
        self.forwarded = 0
        self.max_depth = 0
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"rm-bridge-{name}")

    def put(self, data: RuntimeData) -> None:
        """Called on the pipeline loop (scheduled from the RTC loop)."""
        dropped = self._items.push(data)
        if dropped is not None and not self._keep_newest and (self.drops == 1 or self.drops % 100 == 0):
            log.warning("bridge %s lane full (%d): dropped %d so far", self.name, self._items.capacity, self.drops)
        if self.trace is not None and isinstance(data, AudioData):
            self.trace.level("lane", data.samples, rate=data.sample_rate, channels=data.channels)
        self.max_depth = max(self.max_depth, len(self._items))
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            while self._items:
                data = self._items.popleft()
                try:
                    await self._session.send_input(data)
                except Exception as exc:  # session closed or input ended: stop forwarding
                    log.debug("bridge %s lane stops: %r", self.name, exc)
                    self._items.clear()
                    return
                self.forwarded += 1
            self._ready.clear()

    @property
    def drops(self) -> int:
        """Inputs dropped because the lane was full."""
        return self._items.drops

    @property
    def depth(self) -> int:
        return len(self._items)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class SessionBridge:
    """A stream session on the pipeline loop, reachable from the RTC loop. Create with :meth:`create`."""

    def __init__(self) -> None:
        self.session: StreamSession
        self._pipe: LoopThread
        self._rtc_loop: asyncio.AbstractEventLoop
        self._on_output: OutputCallback
        self._on_end: Callable[[], None] | None = None
        self._lanes: dict[str, _Lane] = {}
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self.outputs = 0
        self.outputs_by_kind: dict[str, int] = {}
        self.trace: StageTrace | None = None

    @classmethod
    async def create(
        cls,
        pipeline: PipelineSource,
        *,
        on_output: OutputCallback,
        on_end: Callable[[], None] | None = None,
        runner: PipelineRunner | None = None,
        pipeline_thread: LoopThread | None = None,
        audio_capacity: int = 500,
        data_capacity: int = 256,
        video_capacity: int = 3,
        trace: StageTrace | None = None,
    ) -> SessionBridge:
        """Create the session on the pipeline loop. Await this on the RTC loop.

        ``on_output(node_id, data)`` and ``on_end()`` are called on the awaiting (RTC) loop. ``trace``
        (profiling) stamps audio onsets entering the audio lane and leaving the session.
        """
        self = cls()
        self.trace = trace
        self._pipe = pipeline_thread or pipeline_loop()
        self._rtc_loop = asyncio.get_running_loop()
        self._on_output = on_output
        self._on_end = on_end
        runner = runner or PipelineRunner()

        async def setup() -> StreamSession:
            session = await runner.create_stream_session(pipeline)
            self.session = session
            self._lanes = {
                "audio": _Lane("audio", session, audio_capacity, keep_newest=False, trace=trace),
                "video": _Lane("video", session, max(1, video_capacity), keep_newest=True),
                "data": _Lane("data", session, data_capacity, keep_newest=False),
            }
            self._pump = asyncio.get_running_loop().create_task(self._pump_outputs(), name="rm-bridge-outputs")
            return session

        await asyncio.wrap_future(self._pipe.submit(setup()))
        return self

    @property
    def session_id(self) -> str:
        return self.session.session_id

    # -- RTC loop -> pipeline loop ---------------------------------------------------------------
    def _put(self, lane: str, data: RuntimeData) -> None:
        if self._closed:
            return
        self._pipe.call_soon(self._lanes[lane].put, data)

    def send_audio(self, data: RuntimeData) -> None:
        """Queue an audio frame for the session (never blocks the RTC loop)."""
        self._put("audio", data)

    def send_video(self, data: RuntimeData) -> None:
        """Queue a video frame; if the lane is full, its oldest waiting frame is dropped (counted)."""
        self._put("video", data)

    def send_data(self, data: RuntimeData) -> None:
        """Queue a data-channel input (text, JSON, binary)."""
        self._put("data", data)

    # -- pipeline loop -> RTC loop ---------------------------------------------------------------
    async def _pump_outputs(self) -> None:
        while True:
            item = await self.session.receive_output_from()
            if item is None:
                break
            node_id, data = item
            self.outputs += 1
            kind = data.data_type
            self.outputs_by_kind[kind] = self.outputs_by_kind.get(kind, 0) + 1
            if self.trace is not None and isinstance(data, AudioData):
                self.trace.level("output", data.samples, rate=data.sample_rate, channels=data.channels)
            self._to_rtc(self._on_output, node_id, data)
        if self._on_end is not None and not self._closed:
            self._to_rtc(self._on_end)

    def _to_rtc(self, fn: Callable[..., Any], *args: Any) -> None:
        def call() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("output callback failed")

        try:
            self._rtc_loop.call_soon_threadsafe(call)
        except RuntimeError:  # RTC loop closed
            pass

    # -- lifecycle ------------------------------------------------------------------------------
    async def end_input(self) -> None:
        """Signal end of stream to the session (outputs drain, then ``on_end`` is called)."""
        if not self._closed:
            await asyncio.wrap_future(self._pipe.submit(self.session.end_input()))

    async def close(self) -> None:
        """Stop the lanes and the pump and close the session. Idempotent; await on the RTC loop."""
        if self._closed:
            return
        self._closed = True

        async def teardown() -> None:
            for lane in self._lanes.values():
                await lane.stop()
            if self._pump is not None:
                self._pump.cancel()
                await asyncio.gather(self._pump, return_exceptions=True)
            await self.session.close()

        if self._pipe.is_running():
            await asyncio.wrap_future(self._pipe.submit(teardown()))

    def stats(self) -> dict[str, Any]:
        """Counters; plain reads of ints, safe from any thread."""
        out: dict[str, Any] = {"outputs": self.outputs, "outputs_by_kind": dict(self.outputs_by_kind)}
        for name, lane in self._lanes.items():
            out[f"{name}_forwarded"] = lane.forwarded
            out[f"{name}_drops"] = lane.drops
            out[f"{name}_queue_depth"] = lane.depth
        return out
