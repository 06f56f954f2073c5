"""StreamSession: one running instance of a pipeline, fed with inputs and drained of outputs.

Every node runs as its own task with a bounded inbox. Producers wait when an inbox is full
(audio and data are never dropped); video uses keep-newest and counts what it drops. A node
error becomes an :class:`ErrorData` output naming the node; the session goes on.

A node with a remote executor (``rm.ray(...)``) keeps its task and inbox here; the task sends each
input to the node's actor, with at most ``max_in_flight`` calls outstanding, and emits the replies
in order. When the inbox fills because the actor is behind, the same policy applies as for a local node.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from typing import Any, Literal

from ..errors import SessionClosedError, wait_for_with_message
from .data import ControlData, ErrorData, RuntimeData, VideoData
from .executors import Executor, LocalExecutor, RemoteNode
from .node import Node, iter_outputs
from .pipeline import AudioFormat, Pipeline
from .queues import BoundedQueue, QueuePolicy

__all__ = ["InputRouter", "NodeState", "StreamSession"]

log = logging.getLogger(__name__)

NodeState = Literal["enabled", "bypass", "disabled"]
SLOW_FIRST_CALL_S = 0.5
#: Picks the target nodes of an input sent without ``to_node`` (``None``: every source node).
InputRouter = Callable[[RuntimeData], "Sequence[str] | None"]
_END = object()


class _Worker:
    """One thread that runs a threaded node's sync calls in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # delivered to the awaiting task
                    fut.set_exception(exc)

    async def call(self, fn: Callable[[], Any]) -> Any:
        fut: Future[Any] = Future()
        self._jobs.put((fn, fut))
        return await asyncio.wrap_future(fut)

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


class _Metrics:
    __slots__ = ("frames_in", "frames_out", "errors", "durations")

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.errors = 0
        self.durations: deque[float] = deque(maxlen=512)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class _NodeRunner:
    def __init__(self, session: StreamSession, node: Node, capacity: int, executor: Executor | None = None) -> None:
        self.session = session
        self.node = node
        self.executor: Executor = executor or LocalExecutor()
        self.remote: RemoteNode | None = None
        self.lost_reason: str | None = None  # set when a remote node's actor is gone
        self.lost = 0  # inputs a lost remote node could not process (counted, never silently dropped)
        self._slots: asyncio.Semaphore | None = None
        self.id = node.id
        self.inbox: BoundedQueue[RuntimeData] = BoundedQueue(capacity)
        self.metrics = _Metrics()
        self.state: NodeState = "enabled"
        self.targets: list[tuple[_NodeRunner, QueuePolicy]] = []
        self.to_client = False
        self.expected_eos = 1
        self.eos_seen = 0
        self.taps: list[Callable[[RuntimeData], None]] = []
        local = isinstance(self.executor, LocalExecutor)
        self.worker = _Worker(f"rm-node-{node.id}") if node.threaded and local else None
        self.is_async_gen = inspect.isasyncgenfunction(node.process)
        self.is_coroutine = inspect.iscoroutinefunction(node.process)
        self.flush_is_async = inspect.iscoroutinefunction(node.flush) or inspect.isasyncgenfunction(node.flush)

    async def start(self) -> None:
        """The node's ``start`` hook: here, or in its actor for a remote executor."""
        if isinstance(self.executor, LocalExecutor):
            await self.node.start()
            return
        # connecting (or starting a local Ray) takes seconds: not on the session's loop, which may be the RTC loop
        self.remote = await asyncio.to_thread(self.executor.open, self.node)
        self._slots = asyncio.Semaphore(self.remote.max_in_flight)
        await self.remote.start()

    async def stop(self) -> None:
        if self.remote is not None:
            await self.remote.close()
        elif isinstance(self.executor, LocalExecutor):
            await self.node.stop()
        if self.worker:
            self.worker.stop()

    async def run(self) -> None:
        if self.remote is not None:
            await self._run_remote(self.remote)
            return
        while True:
            try:
                item = await self.inbox.get()
            except EOFError:
                return
            if isinstance(item, ControlData):
                if await self._control(item):
                    return
                continue
            self.metrics.frames_in += 1
            if self.state == "disabled":
                continue
            if self.state == "bypass":
                await self.emit(item)
                continue
            started = time.perf_counter()
            try:
                await self._call(self.node.process, item, self.is_async_gen, self.is_coroutine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.errors += 1
                log.debug("node %s failed", self.id, exc_info=True)
                await self.session._output(self.id, ErrorData(self.id, str(exc) or repr(exc), type(exc).__name__))
            took = time.perf_counter() - started
            self.metrics.durations.append(took)
            if self.metrics.frames_in == 1 and took > SLOW_FIRST_CALL_S:
                log.warning(
                    "node %r took %.2f s on its first input: do heavy imports and warm-up in start(), which runs "
                    "before media flows (a stall here leaves live audio late or trimmed)", self.id, took
                )

    async def _call(self, fn: Callable[..., Any], arg: Any, is_async_gen: bool, is_coroutine: bool) -> None:
        args = () if arg is None else (arg,)
        if is_async_gen:
            async for out in fn(*args):
                await self.emit(out)
            return
        if is_coroutine:
            result = await fn(*args)
        elif self.worker is not None:
            result = await self.worker.call(lambda: list(iter_outputs(fn(*args))))
        else:
            result = fn(*args)
        for out in iter_outputs(result):
            await self.emit(out)

    async def _control(self, msg: ControlData) -> bool:
        """Handle a control message; True when this node has finished (end of stream)."""
        if msg.message_type == "end_of_stream":
            self.eos_seen += 1
            if self.eos_seen < self.expected_eos:
                return False
            await self._flush()
            await self._forward(msg)
            self.session._node_finished(self)
            return True
        if msg.message_type == "flush":
            await self._flush()
        await self._forward(msg)
        return False

    async def _flush(self) -> None:
        try:
            fn = self.node.flush
            await self._call(lambda: fn(), None, inspect.isasyncgenfunction(fn), inspect.iscoroutinefunction(fn))
        except Exception as exc:
            self.metrics.errors += 1
            await self.session._output(self.id, ErrorData(self.id, str(exc) or repr(exc), type(exc).__name__))

    async def _forward(self, msg: ControlData) -> None:
        for target, _ in self.targets:
            await target.inbox.put(msg, "block")

    async def emit(self, out: Any) -> None:
        if not isinstance(out, RuntimeData):
            raise TypeError(f"node {self.id!r} produced {type(out).__name__}, not RuntimeData")
        self.metrics.frames_out += 1
        for tap in self.taps:
            try:
                tap(out)
            except Exception:
                log.exception("tap on %s failed", self.id)
        for target, policy in self.targets:
            await target.inbox.put(out, policy)
        if self.to_client:
            await self.session._output(self.id, out)

    # -- remote executors ------------------------------------------------------------------
    async def _run_remote(self, remote: RemoteNode) -> None:
        """Send inputs to the actor (bounded in-flight calls); a collector task emits replies in order."""
        assert self._slots is not None
        pending: asyncio.Queue[tuple[Any, Any, ControlData | None, float]] = asyncio.Queue()
        collector = asyncio.get_running_loop().create_task(self._collect(remote, pending), name=f"rm-rx-{self.id}")
        try:
            while True:
                try:
                    item = await self.inbox.get()
                except EOFError:
                    return
                if isinstance(item, ControlData):
                    if item.message_type == "end_of_stream":
                        self.eos_seen += 1
                        if self.eos_seen < self.expected_eos:
                            continue
                    flushing = item.message_type in ("end_of_stream", "flush")
                    await self._submit(remote, pending, "flush" if flushing else None, None, item)
                    if item.message_type == "end_of_stream":
                        await collector
                        return
                    continue
                self.metrics.frames_in += 1
                if self.state == "disabled":
                    continue
                if self.state == "bypass":
                    pending.put_nowait(("ready", [item], None, 0.0))
                    continue
                if self.lost_reason is not None:
                    self.lost += 1
                    continue
                await self._submit(remote, pending, "process", item, None)
        finally:
            if not collector.done():
                collector.cancel()
                await asyncio.gather(collector, return_exceptions=True)

    async def _submit(self, remote: RemoteNode, pending: asyncio.Queue[Any], method: str | None,
                      data: RuntimeData | None, control: ControlData | None) -> None:
        if method is None or self.lost_reason is not None:
            pending.put_nowait(("ready", [], control, 0.0))
            return
        assert self._slots is not None
        await self._slots.acquire()  # max_in_flight reached: the inbox fills and its policy applies
        try:
            call: Any = remote.submit(method, data)
        except Exception as exc:  # e.g. no replica left: reported like a failed call
            call = asyncio.get_running_loop().create_future()
            call.set_exception(exc)
        pending.put_nowait(("call", call, control, time.perf_counter()))

    async def _collect(self, remote: RemoteNode, pending: asyncio.Queue[Any]) -> None:
        assert self._slots is not None
        while True:
            kind, payload, control, started = await pending.get()
            outs: list[Any] = payload if kind == "ready" else []
            if kind == "call":
                try:
                    outs = await wait_for_with_message(payload, remote.call_timeout_s)
                    if control is None:
                        self.metrics.durations.append(time.perf_counter() - started)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._remote_failed(remote, exc, an_input=control is None)
                finally:
                    self._slots.release()
            for out in outs:
                await self.emit(out)
            if control is not None:
                await self._forward(control)
                if control.message_type == "end_of_stream":
                    self.session._node_finished(self)
                    return

    async def _remote_failed(self, remote: RemoteNode, exc: BaseException, *, an_input: bool = True) -> None:
        loss = remote.describe_loss(exc)
        if loss is None:  # the node itself raised, in its actor
            self.metrics.errors += 1
            err = remote.node_error(exc)
            await self.session._output(self.id, ErrorData(self.id, str(err) or repr(err), type(err).__name__))
            return
        self.lost += an_input  # inputs only: a lost flush is not an input
        if self.lost_reason is not None:
            return
        if isinstance(exc, TimeoutError) or not remote.alive():
            self.lost_reason = loss
            message = (f"node {self.id!r} lost its Ray actor ({loss}); the session goes on without it, and the "
                       f"inputs it cannot process are counted in metrics()[{self.id!r}]['lost']")
        else:
            message = f"node {self.id!r}: a Ray replica was lost ({loss}); the other replicas go on"
        self.metrics.errors += 1
        log.warning("%s", message)
        await self.session._output(self.id, ErrorData(self.id, message, "RemoteNodeLost"))

    def snapshot(self) -> dict[str, Any]:
        durations = list(self.metrics.durations)
        p50 = _percentile(durations, 0.5)
        p95 = _percentile(durations, 0.95)
        out: dict[str, Any] = {
            "node_type": self.node.node_type,
            "state": self.state,
            "frames_in": self.metrics.frames_in,
            "frames_out": self.metrics.frames_out,
            "errors": self.metrics.errors,
            "drops": self.inbox.drops,
            "queue_depth": len(self.inbox),
            "queue_capacity": self.inbox.capacity,
            "p50_ms": None if p50 is None else p50 * 1000,
            "p95_ms": None if p95 is None else p95 * 1000,
            "executor": self.executor.kind,
            **({} if self.remote is None else self._remote_snapshot()),
        }
        counters = getattr(self.node, "counters", None)  # a node's own counters (e.g. ReplyOnPause's turns)
        if callable(counters):
            out["counters"] = counters()
        return out

    def _remote_snapshot(self) -> dict[str, Any]:
        assert self._slots is not None and self.remote is not None
        return {
            "in_flight": self.remote.max_in_flight - self._slots._value,  # noqa: SLF001
            "max_in_flight": self.remote.max_in_flight,
            "compiled_graph": self.remote.compiled,
            "lost": self.lost,
            "lost_reason": self.lost_reason,
        }


class StreamSession:
    """A running pipeline. Create with :meth:`PipelineRunner.create_stream_session`.

    The session belongs to the event loop that created it; call its coroutines from that loop.
    """

    def __init__(self, pipeline: Pipeline, *, node_capacity: int = 16, output_capacity: int = 256) -> None:
        pipeline.validate()
        self.session_id = secrets.token_urlsafe(16)
        self.pipeline = pipeline
        self._runners: dict[str, _NodeRunner] = {}
        for nid in pipeline.topological_order():
            node = pipeline.node(nid).fresh_copy()
            self._runners[nid] = _NodeRunner(self, node, node_capacity, pipeline.executor(nid))
        for c in pipeline.connections:
            self._runners[c.source].targets.append((self._runners[c.target], c.policy))  # type: ignore[arg-type]
        for nid, runner in self._runners.items():
            runner.to_client = not runner.targets or pipeline.is_output_node(nid)
            runner.expected_eos = max(1, len(pipeline.upstream(nid)))
        self._sources = [self._runners[n] for n in pipeline.sources]
        self._outputs: BoundedQueue[tuple[str, RuntimeData]] = BoundedQueue(output_capacity)
        self._open_sinks = sum(1 for r in self._runners.values() if r.to_client)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._input_ended = False
        self._closed = False
        self._close_lock: asyncio.Lock | None = None
        self._input_router: InputRouter | None = None
        self.created_at = time.time()

    @property
    def audio_input(self) -> AudioFormat | None:
        """The audio format the pipeline wants at its sources (``None``: any)."""
        return self.pipeline.audio_input

    @property
    def is_active(self) -> bool:
        return not self._closed

    @property
    def node_ids(self) -> list[str]:
        return list(self._runners)

    async def start(self) -> StreamSession:
        """Run every node's ``start`` hook and its task."""
        self._loop = asyncio.get_running_loop()
        self._close_lock = asyncio.Lock()
        started: list[_NodeRunner] = []
        try:
            for runner in self._runners.values():
                started.append(runner)
                await runner.start()
        except BaseException:
            for runner in started:
                await _quietly(runner.stop())
            for runner in self._runners.values():
                if runner.worker:
                    runner.worker.stop()
            self._closed = True
            raise
        for runner in self._runners.values():
            self._tasks.append(self._loop.create_task(runner.run(), name=f"rm-node-{runner.id}"))
        return self

    # -- input -----------------------------------------------------------------------------
    def set_input_router(self, router: InputRouter | None) -> None:
        """Choose the nodes of inputs sent without ``to_node``: ``router(data)`` returns node ids, or
        ``None`` for every source node (the default). ``None`` removes the router."""
        self._input_router = router

    def _targets(self, to_node: str | None, data: RuntimeData | None = None) -> list[_NodeRunner]:
        if self._closed:
            raise SessionClosedError(f"session {self.session_id} is closed")
        if self._input_ended:
            raise SessionClosedError(f"session {self.session_id}: input already ended")
        if to_node is None:
            routed = None if self._input_router is None or data is None else self._input_router(data)
            if routed is None:
                return self._sources
            return [self._runners[nid] for nid in routed]
        try:
            return [self._runners[to_node]]
        except KeyError:
            raise KeyError(f"no node {to_node!r} in this pipeline (nodes: {list(self._runners)})") from None

    async def send_input(self, data: RuntimeData, to_node: str | None = None) -> None:
        """Send ``data`` to every source node (or to ``to_node``); waits while inboxes are full."""
        for runner in self._targets(to_node, data):
            await runner.inbox.put(data)

    def try_send_input(self, data: RuntimeData, to_node: str | None = None) -> bool:
        """Send without waiting. False (and nothing queued) when a blocking target inbox is full."""
        targets = self._targets(to_node, data)
        if any(r.inbox.full() for r in targets) and not isinstance(data, VideoData):
            return False
        return all([r.inbox.put_nowait(data) for r in targets])

    async def end_input(self) -> None:
        """Signal end of stream: nodes flush, outputs drain, then :meth:`receive_output` returns None."""
        if self._input_ended or self._closed:
            return
        for runner in self._sources:
            await runner.inbox.put(ControlData("end_of_stream"), "block")
        self._input_ended = True

    async def flush(self) -> None:
        """Ask every node to flush what it buffers (e.g. a partial chunk)."""
        for runner in self._targets(None):
            await runner.inbox.put(ControlData("flush"), "block")

    # -- output ----------------------------------------------------------------------------
    async def _output(self, node_id: str, data: RuntimeData) -> None:
        if self._outputs._closed:  # noqa: SLF001
            return
        await self._outputs.put((node_id, data))

    def _node_finished(self, runner: _NodeRunner) -> None:
        if runner.to_client:
            self._open_sinks -= 1
            if self._open_sinks == 0:
                self._outputs.close()

    async def receive_output_from(self, timeout: float | None = None) -> tuple[str, RuntimeData] | None:
        """Like :meth:`receive_output`, with the id of the node that produced the output."""
        try:
            if timeout is None:
                return await self._outputs.get()
            return await wait_for_with_message(self._outputs.get(), timeout)
        except EOFError:
            return None

    async def receive_output(self, timeout: float | None = None) -> RuntimeData | None:
        """The next output of a sink node; None once the session has ended. ``TimeoutError`` after ``timeout``."""
        item = await self.receive_output_from(timeout)
        return None if item is None else item[1]

    def __aiter__(self) -> AsyncIterator[RuntimeData]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RuntimeData]:
        while (item := await self.receive_output()) is not None:
            yield item

    # -- control ---------------------------------------------------------------------------
    def add_tap(self, node_id: str, callback: Callable[[RuntimeData], None]) -> Callable[[], None]:
        """Call ``callback(output)`` (on the session's loop) for every output of ``node_id``; returns a remover."""
        runner = self._runners[node_id]
        runner.taps.append(callback)
        return lambda: runner.taps.remove(callback) if callback in runner.taps else None

    def set_node_state(self, node_id: str, state: NodeState) -> None:
        """``enabled``; ``bypass`` (inputs forwarded as outputs); ``disabled`` (no output)."""
        if state not in ("enabled", "bypass", "disabled"):
            raise ValueError(f"unknown node state {state!r}")
        self._runners[node_id].state = state

    def node(self, node_id: str) -> Node:
        """The live node instance of this session (e.g. to change a parameter while streaming).

        For a node on a remote executor this is the kernel's unstarted copy: the live one is in its
        actor (read its attributes with :meth:`node_attribute`).
        """
        return self._runners[node_id].node

    async def node_attribute(self, node_id: str, name: str) -> Any:
        """An attribute of the live node, wherever it runs (in its Ray actor for a remote node)."""
        runner = self._runners[node_id]
        if runner.remote is None:
            return getattr(runner.node, name)
        return await runner.remote.get_attribute(name)

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per-node counters: frames in/out, errors, drops, queue depth, processing time p50/p95 (ms), and
        ``counters``: what a node's own ``counters()`` method returns (e.g. :class:`~.nodes.ReplyOnPause`)."""
        return {nid: r.snapshot() for nid, r in self._runners.items()}

    # -- lifecycle -------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every node and release its resources. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for runner in self._runners.values():
            runner.inbox.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(_quietly(runner.stop()) for runner in self._runners.values()))
        self._outputs.close()

    async def __aenter__(self) -> StreamSession:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "active"
        return f"<StreamSession {self.session_id[:8]}… {self.pipeline.name or 'pipeline'} {state}>"


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception:
        log.exception("node stop hook failed")
