"""Nodes in Ray actors: the actor that hosts a node, per-session actors and shared replica pools.

Imported only when a session starts a node with ``executor=rm.ray(...)``; importing ray happens here.
The media, the transport and the pipeline graph stay in the kernel: the session sends each input to
the actor (``process``), awaits the outputs and passes them on in order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import socket
import threading
from collections.abc import Awaitable
from typing import Any

from ..errors import RemoteMediaError, wait_for_with_message
from .data import RuntimeData
from .executors import RayExecutor
from .node import Node, iter_outputs

__all__ = ["GraphLostError", "NodeHost", "RayUnavailableError", "ensure_ray", "open_ray_node", "live_pools"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install remotemedia_nbrtc[ray]"
# Without a GCS for this long, a Ray driver exits its process: that would end the Jupyter kernel when a
# cluster is lost. The kernel must outlive the cluster (the node reports the loss as an ErrorData).
_RECONNECT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"
_KERNEL_OUTLIVES_CLUSTER_S = str(365 * 24 * 3600)


class RayUnavailableError(RemoteMediaError, ImportError):
    """Ray is not installed (or the cluster cannot be reached) for a node with a Ray executor."""


def _import_ray(node_id: str = "") -> Any:
    try:
        import ray
    except ImportError as exc:
        where = f"node {node_id!r} " if node_id else ""
        raise RayUnavailableError(f"{where}runs on Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


def _check_reachable(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray:// and other forms: ray.init decides
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address} (RAY_ADDRESS): {exc}") from exc


def ensure_ray(node_id: str = "") -> Any:
    """The ray module, initialised: the notebook's ``ray.init(...)`` if any, else ``RAY_ADDRESS``, else local."""
    ray = _import_ray(node_id)
    if not ray.is_initialized():
        os.environ.setdefault(_RECONNECT_ENV, _KERNEL_OUTLIVES_CLUSTER_S)
        address = os.environ.get("RAY_ADDRESS") or None
        if address:
            _check_reachable(address)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, ignore_reinit_error=True)
    return ray


class NodeHost:
    """The body of the actor: one node instance, started once, called in order (max_concurrency=1).

    Async ``start``/``process``/``flush``/``stop`` run on the actor's own event loop.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop = asyncio.new_event_loop()

    def _run(self, aw: Any) -> Any:
        return self.loop.run_until_complete(aw)

    def _outputs(self, fn: Any, args: tuple[Any, ...]) -> list[RuntimeData]:
        if inspect.isasyncgenfunction(fn):
            async def collect() -> list[Any]:
                return [out async for out in fn(*args)]
            collected: list[RuntimeData] = self._run(collect())
            return collected
        result = fn(*args)
        if inspect.isawaitable(result):
            result = self._run(result)
        return list(iter_outputs(result))

    def start(self) -> int:
        self._run(self.node.start())
        return os.getpid()

    def process(self, data: RuntimeData) -> list[RuntimeData]:
        return self._outputs(self.node.process, (data,))

    def process_pickled(self, frame: bytes) -> bytes:
        """``process`` for the compiled graph: a frame and its outputs as pickles (see _CompiledProcess)."""
        return pickle.dumps(self.process(pickle.loads(frame)), protocol=pickle.HIGHEST_PROTOCOL)

    def flush(self) -> list[RuntimeData]:
        return self._outputs(self.node.flush, ())

    def stop(self) -> None:
        try:
            self._run(self.node.stop())
        finally:
            self.loop.close()

    def call_attr(self, name: str) -> Any:
        """Read an attribute of the hosted node (tests and benchmarks read counters this way)."""
        return getattr(self.node, name)


_actor_class: Any = None


def _host_class(ray: Any) -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = ray.remote(max_restarts=0, max_task_retries=0)(NodeHost)
    return _actor_class


def _actor_options(spec: RayExecutor, name: str) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus, "max_concurrency": 1}
    if spec.resources:
        options["resources"] = dict(spec.resources)
    return options


class _Replica:
    __slots__ = ("actor", "started", "in_flight", "dead")

    def __init__(self, actor: Any, started: Any) -> None:
        self.actor = actor
        self.started = started  # ObjectRef of the node's start() in the actor
        self.in_flight = 0
        self.dead = False


def _await_ref(ref: Any) -> asyncio.Future[Any]:
    return asyncio.wrap_future(ref.future())


class GraphLostError(RemoteMediaError):
    """The compiled graph of a node's actor stopped (its actor or the cluster is gone)."""


class _CompiledProcess:
    """``process`` of one actor through a Ray Compiled Graph: each frame goes over shared-memory
    channels to a loop already running in the actor, instead of being a Ray task of its own.

    Frames and outputs cross as pickled bytes: the graph would hand numpy arrays over zero-copy, as
    views of its channel's buffer, and a node or session that keeps one (an audio buffer, the output
    queue) would hold the channel, so the next frame would wait forever.
    """

    def __init__(self, ray: Any, graph: Any) -> None:
        self._ray = ray
        self._graph = graph
        self._order = asyncio.Lock()  # FIFO: frames go through the graph in the order they were submitted
        self._calls: set[asyncio.Task[Any]] = set()
        self._last: asyncio.Task[Any] | None = None

    @classmethod
    def compile(cls, ray: Any, actor: Any, node_id: str) -> _CompiledProcess | None:
        """Compile on the running loop (the graph's futures belong to it); None: plain calls instead."""
        from ray.dag import InputNode

        quiet = logging.getLogger("ray.dag.compiled_dag_node")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)  # an INFO block per teardown, i.e. per closed session
        try:
            with InputNode() as frame:
                dag = actor.process_pickled.bind(frame)
            graph = dag.experimental_compile(enable_asyncio=True, _max_inflight_executions=1)
        except Exception as exc:
            log.warning("node %s: no Ray Compiled Graph (%s: %s); using plain actor calls",
                        node_id, type(exc).__name__, exc)
            return None
        return cls(ray, graph)

    def submit(self, data: RuntimeData) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(self._execute(data))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        self._last = task
        # a caller's timeout must not cancel the graph's future: Ray then blocks the next execution
        return asyncio.shield(task)

    async def _execute(self, data: RuntimeData) -> Any:
        try:
            # one frame in the graph at a time: the actor runs its node one frame at a time anyway
            async with self._order:
                result = await self._graph.execute_async(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
                return pickle.loads(await result)
        except self._ray.exceptions.RayTaskError:
            raise  # the node raised: an ErrorData, the graph goes on
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise GraphLostError(f"its Ray Compiled Graph stopped ({type(exc).__name__}: {first})") from exc

    async def idle(self, timeout_s: float | None = None) -> None:
        """Wait until every frame submitted so far is done (before a flush or stop reaches the node)."""
        if self._last is not None and not self._last.done():
            await asyncio.wait({self._last}, timeout=timeout_s)

    async def teardown(self, timeout_s: float) -> None:
        """Stop the graph's loop in the actor; on a thread with a deadline, since a lost cluster can block it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def run() -> None:
            try:
                self._graph.teardown()
            except Exception:
                log.debug("compiled graph teardown failed", exc_info=True)
            finally:
                try:
                    loop.call_soon_threadsafe(finished)
                except RuntimeError:  # the loop closed while the teardown was blocked
                    pass

        # a daemon thread: a teardown blocked by a lost cluster must not hold up interpreter exit
        threading.Thread(target=run, name="rm-ray-graph-teardown", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout_s)
        except TimeoutError:
            log.warning("Ray compiled graph teardown did not finish within %g s", timeout_s)
        for task in list(self._calls):
            task.cancel()
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)


class _RayCalls:
    """What both bindings share: error classification and the actors' teardown."""

    kind = "ray"

    def __init__(self, ray: Any, node: Node, spec: RayExecutor) -> None:
        self.ray = ray
        self.node_id = node.id
        self.spec = spec
        self.max_in_flight = spec.max_in_flight
        self.call_timeout_s = spec.call_timeout_s

    def describe_loss(self, exc: BaseException) -> str | None:
        exceptions = self.ray.exceptions
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return f"no reply from its Ray actor within {self.call_timeout_s:g} s (call_timeout_s)"
        if isinstance(exc, GraphLostError):
            return str(exc)
        if isinstance(exc, exceptions.RayTaskError) and not isinstance(exc, exceptions.RayActorError):
            return None
        if isinstance(exc, exceptions.RayError):
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    def node_error(self, exc: BaseException) -> BaseException:
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc

    def _replicas(self) -> list[_Replica]:
        raise NotImplementedError

    def alive(self) -> bool:
        return any(not r.dead for r in self._replicas())

    def _call(self, replica: _Replica, method: str, data: RuntimeData | None) -> asyncio.Future[Any]:
        fn = getattr(replica.actor, method)
        ref = fn.remote(data) if data is not None else fn.remote()
        return self._track(replica, _await_ref(ref))

    def _track(self, replica: _Replica, fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
        replica.in_flight += 1
        fut.add_done_callback(lambda f: self._done(replica, f))
        return fut

    def _done(self, replica: _Replica, fut: asyncio.Future[Any]) -> None:
        replica.in_flight -= 1
        if not fut.cancelled() and (exc := fut.exception()) is not None and self.describe_loss(exc):
            replica.dead = True  # a pool's later calls go to its other replicas

    async def get_attribute(self, name: str) -> Any:
        replica = next((r for r in self._replicas() if not r.dead), None)
        if replica is None:
            raise RemoteMediaError(f"node {self.node_id!r}: its Ray actor is lost")
        return await wait_for_with_message(_await_ref(replica.actor.call_attr.remote(name)), self.call_timeout_s)

    async def _await_start(self, ref: Any) -> None:
        try:
            await wait_for_with_message(_await_ref(ref), self.spec.start_timeout_s)
        except TimeoutError:
            raise RemoteMediaError(
                f"node {self.node_id!r}: its Ray actor did not start within {self.spec.start_timeout_s:g} s "
                f"(needs num_cpus={self.spec.num_cpus:g}, num_gpus={self.spec.num_gpus:g}: are they free on the "
                "cluster?)") from None
        except self.ray.exceptions.RayTaskError as exc:
            raise self.node_error(exc) from None

    async def _stop_actors(self, replicas: list[_Replica]) -> None:
        stops = []
        for r in replicas:
            if not r.dead:
                try:
                    stops.append(_await_ref(r.actor.stop.remote()))
                except Exception:
                    log.debug("stop of a Ray actor failed", exc_info=True)
        if stops:
            try:
                await wait_for_with_message(
                    asyncio.gather(*stops, return_exceptions=True), min(10.0, self.call_timeout_s)
                )
            except TimeoutError:
                log.warning("node %s: Ray actor stop() timed out; killing it", self.node_id)
        for r in replicas:
            try:
                self.ray.kill(r.actor, no_restart=True)
            except Exception:
                log.debug("ray.kill failed", exc_info=True)


class _SessionActor(_RayCalls):
    """A stateful node: its own actor for this session, created at start, killed at close."""

    def __init__(self, ray: Any, node: Node, spec: RayExecutor) -> None:
        super().__init__(ray, node, spec)
        self._node = node
        self._replica: _Replica | None = None
        self._graph: _CompiledProcess | None = None
        self._closed = False

    async def start(self) -> None:
        actor = _host_class(self.ray).options(**_actor_options(self.spec, self.node_id)).remote(self._node)
        self._replica = _Replica(actor, actor.start.remote())
        try:
            await self._await_start(self._replica.started)
            if self.spec.compiled_graph:
                self._graph = _CompiledProcess.compile(self.ray, actor, self.node_id)
        except BaseException:
            await self.close()
            raise

    @property
    def compiled(self) -> bool:
        """Whether frames go through a Ray Compiled Graph (else plain actor calls)."""
        return self._graph is not None

    def _replicas(self) -> list[_Replica]:
        return [] if self._replica is None else [self._replica]

    def submit(self, method: str, data: RuntimeData | None) -> Awaitable[list[RuntimeData]]:
        assert self._replica is not None, "start() first"
        if self._graph is None:
            return self._call(self._replica, method, data)
        if method == "process" and data is not None:
            return self._track(self._replica, self._graph.submit(data))
        return asyncio.ensure_future(self._call_when_idle(self._replica, self._graph, method, data))

    async def _call_when_idle(self, replica: _Replica, graph: _CompiledProcess, method: str,
                              data: RuntimeData | None) -> list[RuntimeData]:
        # the graph runs process() on its own thread in the actor: a flush must not overtake a frame
        await graph.idle()
        result: list[RuntimeData] = await self._call(replica, method, data)
        return result

    @property
    def actor(self) -> Any:
        return None if self._replica is None else self._replica.actor

    async def close(self) -> None:
        if self._closed or self._replica is None:
            return
        self._closed = True
        graph, self._graph = self._graph, None
        if graph is not None:
            if not self._replica.dead:
                await graph.idle(timeout_s=min(10.0, self.call_timeout_s))
            await graph.teardown(timeout_s=0.5 if self._replica.dead else 10.0)
        await self._stop_actors([self._replica])


class _Pool:
    """Replicas of one stateless node, shared by every session of this process that uses it."""

    def __init__(self, ray: Any, key: Any, node: Node, spec: RayExecutor) -> None:
        cls = _host_class(ray).options(**_actor_options(spec, node.id))
        self.key = key
        self.replicas: list[_Replica] = []
        for _ in range(spec.replicas):
            actor = cls.remote(node)
            self.replicas.append(_Replica(actor, actor.start.remote()))
        self.leases = 0

    def pick(self) -> _Replica | None:
        alive = [r for r in self.replicas if not r.dead]
        return min(alive, key=lambda r: r.in_flight) if alive else None


_pools: dict[Any, _Pool] = {}
_pools_lock = threading.Lock()


def live_pools() -> int:
    """How many replica pools this process holds (tests check none outlive their sessions)."""
    with _pools_lock:
        return len(_pools)


class _PoolLease(_RayCalls):
    """A stateless node: calls go to the least busy replica of a pool shared across sessions."""

    def __init__(self, ray: Any, node: Node, spec: RayExecutor) -> None:
        super().__init__(ray, node, spec)
        self._node = node
        self._key = (type(node), repr(sorted(node.params.items())), spec)
        self._pool: _Pool | None = None

    async def start(self) -> None:
        with _pools_lock:
            pool = _pools.get(self._key)
            if pool is None:
                pool = _pools[self._key] = _Pool(self.ray, self._key, self._node, self.spec)
            pool.leases += 1
        self._pool = pool
        try:
            for r in pool.replicas:
                await self._await_start(r.started)
        except BaseException:
            await self.close()
            raise

    def _replicas(self) -> list[_Replica]:
        return [] if self._pool is None else self._pool.replicas

    compiled = False  # replicas serve sessions on several event loops: plain actor calls

    def submit(self, method: str, data: RuntimeData | None) -> Awaitable[list[RuntimeData]]:
        assert self._pool is not None, "start() first"
        replica = self._pool.pick()
        if replica is None:
            raise self.ray.exceptions.RayActorError("every replica of the pool is lost")
        return self._call(replica, method, data)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with _pools_lock:
            pool.leases -= 1
            last = pool.leases == 0
            if last and _pools.get(self._key) is pool:
                del _pools[self._key]
        if last:
            await self._stop_actors(pool.replicas)


def open_ray_node(node: Node, spec: RayExecutor) -> _SessionActor | _PoolLease:
    """Bind this session's copy of ``node`` to a per-session actor or a shared pool (per ``spec``)."""
    ray = ensure_ray(node.id)
    if spec.is_stateful(node):
        return _SessionActor(ray, node, spec)
    return _PoolLease(ray, node, spec)
