"""Where a node runs: in the kernel (the default) or in a Ray actor.

An executor is a small, serialisable spec attached to a node, in Python::

    pipeline.add("stt", PocketSphinxSTT(), executor=rm.ray(num_cpus=1))

    @rm.node(executor=rm.ray(stateful=False, replicas=2))
    def caption(frame): ...

or in a manifest node entry (an extension field RemoteMedia v1 readers ignore)::

    {"id": "stt", "node_type": "PocketSphinxSTTNode", "executor": {"kind": "ray", "num_cpus": 1}}

A stateful node (the default, see :attr:`Node.stateful`) gets one actor per session; a stateless one
shares a pool of ``replicas`` actors with every session of this kernel that runs the same node with the
same params. The Ray side lives in :mod:`.ray_executor`, which imports ray only when a session starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import ManifestError
from .data import RuntimeData

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .node import Node

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RemoteNode", "local", "ray", "executor_from_manifest"]


@dataclass(frozen=True)
class LocalExecutor:
    """Run the node in the kernel, as a task of the session (threaded nodes on their own thread)."""

    kind: ClassVar[str] = "local"

    def to_manifest(self) -> dict[str, Any]:
        return {"kind": self.kind}


@dataclass(frozen=True)
class RayExecutor:
    """Run the node in a Ray actor that keeps its state and model across frames.

    ``num_cpus``/``num_gpus``/``resources``: what each actor reserves on the cluster.
    ``stateful``: one actor per session (True) or a shared pool of ``replicas`` actors (False);
    ``None`` follows the node class's ``stateful`` attribute. ``max_in_flight``: calls sent before
    the first reply is back; past that the node's inbox fills and the usual policy applies (audio
    waits, video keeps the newest). ``call_timeout_s``: a call without a reply by then means the
    actor or the cluster is lost. ``start_timeout_s``: for creating the actor and the node's ``start``.
    ``compiled_graph``: a per-session actor gets its frames through a Ray Compiled Graph (shared-memory
    channels, about half the per-frame cost of an actor call); False uses plain actor calls. Pools
    always use plain calls (their replicas are shared by sessions on different event loops).
    """

    kind: ClassVar[str] = "ray"

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    replicas: int = 1
    stateful: bool | None = None
    max_in_flight: int = 4
    call_timeout_s: float = 30.0
    start_timeout_s: float = 120.0
    resources: dict[str, float] | None = None
    compiled_graph: bool = True

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("replicas", "max_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("call_timeout_s", "start_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not isinstance(self.compiled_graph, bool):
            raise ValueError(f"compiled_graph must be true or false, got {self.compiled_graph!r}")
        if self.stateful is not None and not isinstance(self.stateful, bool):
            raise ValueError(f"stateful must be true, false or null, got {self.stateful!r}")
        if self.resources is not None and (
            not isinstance(self.resources, dict)
            or not all(isinstance(k, str) and isinstance(v, (int, float)) and v >= 0 for k, v in self.resources.items())
        ):
            raise ValueError(f"resources must map names to numbers >= 0, got {self.resources!r}")

    def to_manifest(self) -> dict[str, Any]:
        """The manifest form: ``kind`` plus every field that differs from its default."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = dict(value) if isinstance(value, dict) else value
        return out

    def is_stateful(self, node: Node) -> bool:
        return bool(type(node).stateful) if self.stateful is None else self.stateful

    def open(self, node: Node) -> RemoteNode:
        """Bind ``node`` (this session's fresh copy) to its actor(s); imports ray."""
        from .ray_executor import open_ray_node

        return open_ray_node(node, self)


Executor = LocalExecutor | RayExecutor

_KINDS: dict[str, type[LocalExecutor] | type[RayExecutor]] = {"local": LocalExecutor, "ray": RayExecutor}


def local() -> LocalExecutor:
    """The default executor: the node runs in the kernel."""
    return LocalExecutor()


def ray(
    *,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    replicas: int = 1,
    stateful: bool | None = None,
    max_in_flight: int = 4,
    call_timeout_s: float = 30.0,
    start_timeout_s: float = 120.0,
    resources: dict[str, float] | None = None,
    compiled_graph: bool = True,
) -> RayExecutor:
    """An executor spec that runs a node in a Ray actor (see :class:`RayExecutor` for the fields).

    Connects to the cluster of ``ray.init(address=...)`` if the notebook called it, else to
    ``RAY_ADDRESS``, else starts a local Ray. Needs ``pip install remotemedia_nbrtc[ray]``.
    """
    return RayExecutor(num_cpus=num_cpus, num_gpus=num_gpus, replicas=replicas, stateful=stateful,
                       max_in_flight=max_in_flight, call_timeout_s=call_timeout_s,
                       start_timeout_s=start_timeout_s, resources=resources, compiled_graph=compiled_graph)


def executor_from_manifest(raw: Any, *, node_id: str) -> Executor:
    """Parse a manifest node's ``executor`` field; ``ManifestError`` naming the node and the field."""
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise ManifestError(f"executor must be an object, got {type(raw).__name__}", node_id=node_id, field="executor")
    kind = raw.get("kind", "local")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ManifestError(f"unknown executor kind {kind!r} (use one of {sorted(_KINDS)})", node_id=node_id,
                            field="executor.kind")
    allowed = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in raw.items() if k != "kind"}
    for key in kwargs:
        if key not in allowed:
            raise ManifestError(f"unknown field for a {kind!r} executor (accepted: {sorted(allowed)})",
                                node_id=node_id, field=f"executor.{key}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        field = next((f"executor.{k}" for k in kwargs if str(exc).startswith(k)), "executor")
        raise ManifestError(str(exc), node_id=node_id, field=field) from exc


def check_executor(executor: Any, node: Node, *, node_id: str) -> Executor:
    """Validate an executor given to ``Pipeline.add`` for ``node``; returns it."""
    if not isinstance(executor, (LocalExecutor, RayExecutor)):
        raise ManifestError(f"executor must be rm.local() or rm.ray(...), got {executor!r}", node_id=node_id,
                            field="executor")
    if isinstance(executor, RayExecutor) and executor.replicas > 1 and executor.is_stateful(node):
        raise ManifestError(
            f"replicas={executor.replicas} needs a stateless node; {type(node).__name__} is stateful "
            "(one actor per session). Set stateful=False if its outputs depend only on each input",
            node_id=node_id, field="executor.replicas")
    return executor


class RemoteNode(Protocol):
    """A node bound to its actor(s) for one session (what :class:`StreamSession` drives)."""

    kind: str
    max_in_flight: int
    call_timeout_s: float

    async def start(self) -> None:
        """Create or lease the actor(s) and run the node's ``start`` there."""

    def submit(self, method: str, data: RuntimeData | None) -> Awaitable[list[RuntimeData]]:
        """Send one ``process``/``flush`` call; calls complete in submission order."""

    def describe_loss(self, exc: BaseException) -> str | None:
        """A message if ``exc`` means the actor (or cluster) is gone, None for an error of the node itself."""

    def node_error(self, exc: BaseException) -> BaseException:
        """The node's own exception inside a remote-call error."""

    def alive(self) -> bool:
        """False once every actor behind this node is lost."""

    @property
    def compiled(self) -> bool:
        """Whether frames reach the actor through a compiled graph (else one remote call each)."""

    async def get_attribute(self, name: str) -> Any:
        """An attribute of the live node in its actor (one replica's, for a pool)."""

    async def close(self) -> None:
        """Run the node's ``stop`` in the actor and release it (idempotent)."""
