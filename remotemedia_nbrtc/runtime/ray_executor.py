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
import socket
import threading
from collections.abc import Awaitable
from typing import Any

from ..errors import RemoteMediaError, wait_for_with_message
from .data import RuntimeData
from .executors import RayExecutor
from .node import Node, iter_outputs

__all__ = ["NodeHost", "RayUnavailableError", "ensure_ray", "open_ray_node", "live_pools"]

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
            return self._run(collect())
        result = fn(*args)
        if inspect.isawaitable(result):
            result = self._run(result)
        return list(iter_outputs(result))

    def start(self) -> int:
        self._run(self.node.start())
        return os.getpid()

    def process(self, data: RuntimeData) -> list[RuntimeData]:
        return self._outputs(self.node.process, (data,))

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


def _await_ref(ref: Any) -> Awaitable[Any]:
    return asyncio.wrap_future(ref.future())


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
        replica.in_flight += 1
        fut = _await_ref(ref)
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
        except (asyncio.TimeoutError, TimeoutError):
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
                await wait_for_with_message(asyncio.gather(*stops, return_exceptions=True), min(10.0, self.call_timeout_s))
            except (asyncio.TimeoutError, TimeoutError):
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
        self._closed = False

    async def start(self) -> None:
        actor = _host_class(self.ray).options(**_actor_options(self.spec, self.node_id)).remote(self._node)
        self._replica = _Replica(actor, actor.start.remote())
        try:
            await self._await_start(self._replica.started)
        except BaseException:
            await self.close()
            raise

    def _replicas(self) -> list[_Replica]:
        return [] if self._replica is None else [self._replica]

    def submit(self, method: str, data: RuntimeData | None) -> Awaitable[list[RuntimeData]]:
        assert self._replica is not None, "start() first"
        return self._call(self._replica, method, data)

    @property
    def actor(self) -> Any:
        return None if self._replica is None else self._replica.actor

    async def close(self) -> None:
        if self._closed or self._replica is None:
            return
        self._closed = True
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
