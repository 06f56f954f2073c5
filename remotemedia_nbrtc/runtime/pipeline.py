"""Pipelines: a validated graph of nodes, built in Python or loaded from a RemoteMedia v1 manifest."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from .executors import Executor, LocalExecutor, check_executor, executor_from_manifest
from .node import Node, create_node
from .queues import POLICIES

__all__ = ["Connection", "Pipeline", "load_manifest", "AudioFormat", "MAX_MANIFEST_BYTES", "MAX_MANIFEST_NODES"]

#: Manifests larger than this (file or text) are refused before parsing: a pipeline is a few KiB.
MAX_MANIFEST_BYTES = 1 << 20
#: At most this many nodes (and 4x as many connections) per manifest; each node is a task per session.
MAX_MANIFEST_NODES = 256

_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True)
class AudioFormat:
    """The audio format a pipeline wants at its sources."""

    sample_rate: int
    channels: int


@dataclass
class Connection:
    """An edge ``source -> target``; ``policy`` is the target queue's overflow policy for this edge."""

    source: str
    target: str
    policy: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.source, "to": self.target}
        if self.policy != "auto":
            out["policy"] = self.policy
        out.update(self.extra)
        return out


@dataclass
class _Entry:
    node: Node
    is_streaming: bool = True
    is_output_node: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    executor: Executor | None = None  # as given to add() or in the manifest; None: the class's own


class Pipeline:
    """A graph of nodes with fan-out and fan-in.

    Build it in Python::

        p = Pipeline("levels")
        p.add("resample", FastResample(target_rate=16000, channels=1))
        p.add("level", AudioLevel())
        p.connect("resample", "level")

    or load it with :func:`load_manifest`. Outputs of sink nodes (no outbound edge) reach the
    session's caller, and so do outputs of nodes marked ``is_output_node``.
    """

    def __init__(self, name: str = "", *, description: str | None = None, metadata: dict[str, Any] | None = None):
        self.metadata: dict[str, Any] = dict(metadata or {})
        if name or "name" not in self.metadata:
            self.metadata["name"] = name
        if description is not None:
            self.metadata["description"] = description
        self.version = "v1"
        self._nodes: dict[str, _Entry] = {}
        self.connections: list[Connection] = []
        self.extra: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    # -- building ---------------------------------------------------------------------------
    def add(self, node_id: str, node: Node, *, is_output_node: bool = False, is_streaming: bool = True,
            executor: Executor | None = None) -> Node:
        """Add ``node`` under ``node_id``; returns the node.

        ``executor`` says where it runs: ``None`` follows the node class (in the kernel unless the class
        sets one), ``rm.ray(...)`` in a Ray actor (see :mod:`remotemedia_nbrtc.runtime.executors`).
        """
        if not isinstance(node_id, str) or not _ID_RE.match(node_id):
            raise ManifestError("id must be 1-128 chars of letters, digits, _ . : -", node_id=str(node_id), field="id")
        if node_id in self._nodes:
            raise ManifestError("duplicate node id", node_id=node_id, field="id")
        if not isinstance(node, Node):
            raise ManifestError(f"expected a Node instance, got {type(node).__name__}", node_id=node_id)
        effective = executor or type(node).executor
        if effective is not None:
            check_executor(effective, node, node_id=node_id)
        node.id = node_id
        self._nodes[node_id] = _Entry(node, is_streaming=is_streaming, is_output_node=is_output_node,
                                      executor=executor)
        return node

    def connect(self, source: str, target: str, *, policy: str = "auto") -> Pipeline:
        """Add the edge ``source -> target``. Returns the pipeline, so calls chain."""
        if policy not in POLICIES:
            raise ManifestError(f"unknown policy {policy!r} (use one of {POLICIES})", node_id=target, field="policy")
        self.connections.append(Connection(source, target, policy))
        return self

    def chain(self, *node_ids: str) -> Pipeline:
        """Connect ``a -> b -> c ...``."""
        for a, b in zip(node_ids, node_ids[1:]):
            self.connect(a, b)
        return self

    def copy(self) -> Pipeline:
        """A new pipeline with the same nodes (the same instances), edges, executors and manifest fields,
        to add nodes to without changing this one."""
        out = Pipeline(metadata=copy.deepcopy(self.metadata))
        out.version = self.version
        out.extra = copy.deepcopy(self.extra)
        out._nodes = {nid: replace(entry, extra=copy.deepcopy(entry.extra))
                      for nid, entry in self._nodes.items()}
        out.connections = [replace(c, extra=copy.deepcopy(c.extra)) for c in self.connections]
        return out

    # -- inspection ------------------------------------------------------------------------
    @property
    def nodes(self) -> dict[str, Node]:
        return {nid: e.node for nid, e in self._nodes.items()}

    def node(self, node_id: str) -> Node:
        return self._nodes[node_id].node

    def executor(self, node_id: str) -> Executor:
        """Where ``node_id`` runs: its ``add``/manifest executor, else its class's, else in the kernel."""
        entry = self._nodes[node_id]
        return entry.executor or type(entry.node).executor or LocalExecutor()

    def is_output_node(self, node_id: str) -> bool:
        return self._nodes[node_id].is_output_node

    def downstream(self, node_id: str) -> list[Connection]:
        return [c for c in self.connections if c.source == node_id]

    def upstream(self, node_id: str) -> list[Connection]:
        return [c for c in self.connections if c.target == node_id]

    @property
    def sources(self) -> list[str]:
        targets = {c.target for c in self.connections}
        return [n for n in self._nodes if n not in targets]

    @property
    def sinks(self) -> list[str]:
        srcs = {c.source for c in self.connections}
        return [n for n in self._nodes if n not in srcs]

    @property
    def audio_input(self) -> AudioFormat | None:
        """Audio format wanted at the sources: manifest ``metadata.audio_input`` or the first source's own."""
        declared = self.metadata.get("audio_input")
        if isinstance(declared, dict):
            return AudioFormat(int(declared["sample_rate"]), int(declared.get("channels", 1)))
        for nid in self.sources:
            spec = getattr(self._nodes[nid].node, "audio_input", None)
            if spec:
                return AudioFormat(int(spec[0]), int(spec[1]))
        return None

    def validate(self) -> Pipeline:
        """Check the graph: at least one node, known endpoints, no cycles. Returns self."""
        if not self._nodes:
            raise ManifestError("a pipeline needs at least one node", field="nodes")
        for i, c in enumerate(self.connections):
            for end, nid in (("from", c.source), ("to", c.target)):
                if nid not in self._nodes:
                    raise ManifestError(
                        f"connection {i} refers to unknown node {nid!r}", node_id=nid, field=f"connections[{i}].{end}"
                    )
        self._check_acyclic()
        return self

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}
        adjacency: dict[str, list[str]] = {n: [] for n in self._nodes}
        for c in self.connections:
            adjacency[c.source].append(c.target)

        def visit(nid: str, path: list[str]) -> None:
            state[nid] = 1
            for nxt in adjacency[nid]:
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nid, nxt] if nxt in path else [nid, nxt]
                    raise ManifestError(f"cycle {' -> '.join(dict.fromkeys(cycle))} -> {nxt}", node_id=nxt,
                                        field="connections")
                if state.get(nxt) is None:
                    visit(nxt, path + [nid])
            state[nid] = 2

        for nid in self._nodes:
            if nid not in state:
                visit(nid, [])

    def topological_order(self) -> list[str]:
        order: list[str] = []
        indegree = {n: 0 for n in self._nodes}
        for c in self.connections:
            indegree[c.target] += 1
        ready = [n for n, d in indegree.items() if d == 0]
        while ready:
            nid = ready.pop(0)
            order.append(nid)
            for c in self.downstream(nid):
                indegree[c.target] -= 1
                if indegree[c.target] == 0:
                    ready.append(c.target)
        return order

    # -- manifests -------------------------------------------------------------------------
    def to_manifest(self) -> dict[str, Any]:
        """The RemoteMedia v1 manifest of this pipeline."""
        nodes = []
        for nid, entry in self._nodes.items():
            item: dict[str, Any] = {"id": nid, "node_type": entry.node.node_type, "params": entry.node.params}
            item["is_streaming"] = entry.is_streaming
            if entry.is_output_node:
                item["is_output_node"] = True
            if entry.executor is not None:
                item["executor"] = entry.executor.to_manifest()
            item.update(entry.extra)
            nodes.append(item)
        manifest: dict[str, Any] = {"version": self.version, "metadata": copy.deepcopy(self.metadata), "nodes": nodes,
                                    "connections": [c.to_dict() for c in self.connections]}
        manifest.update(copy.deepcopy(self.extra))
        return manifest

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_manifest(), indent=indent)

    def to_yaml(self) -> str:
        import yaml

        text: str = yaml.safe_dump(self.to_manifest(), sort_keys=False)
        return text

    def save(self, path: str | Path) -> Path:
        """Write the manifest as YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        text = self.to_yaml() if path.suffix.lower() in (".yaml", ".yml") else self.to_json()
        path.write_text(text)
        return path

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Pipeline:
        """Build and validate a pipeline from a manifest dict (upstream v1 shape, parsed leniently)."""
        if not isinstance(manifest, dict):
            raise ManifestError(f"a manifest must be an object, got {type(manifest).__name__}")
        version = manifest.get("version", "v1")
        if version not in ("v1", "1.0", "1"):
            raise ManifestError(f"unsupported manifest version {version!r} (expected 'v1')", field="version")
        metadata = manifest.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ManifestError("metadata must be an object", field="metadata")
        pipeline = cls(metadata=metadata)
        pipeline.version = str(version)
        pipeline.extra = {k: copy.deepcopy(v) for k, v in manifest.items()
                          if k not in ("version", "metadata", "nodes", "connections")}
        nodes = manifest.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise ManifestError("nodes must be a non-empty list", field="nodes")
        if len(nodes) > MAX_MANIFEST_NODES:
            raise ManifestError(f"{len(nodes)} nodes is more than the limit of {MAX_MANIFEST_NODES}", field="nodes")
        raw_connections = manifest.get("connections") or []
        if isinstance(raw_connections, list) and len(raw_connections) > 4 * MAX_MANIFEST_NODES:
            raise ManifestError(f"{len(raw_connections)} connections is more than the limit of "
                                f"{4 * MAX_MANIFEST_NODES}", field="connections")
        for i, raw in enumerate(nodes):
            if not isinstance(raw, dict):
                raise ManifestError(f"nodes[{i}] must be an object", field=f"nodes[{i}]")
            nid = raw.get("id")
            if not nid or not isinstance(nid, str):
                raise ManifestError(f"nodes[{i}] has no id", field=f"nodes[{i}].id")
            if nid in pipeline._nodes:
                raise ManifestError("duplicate node id", node_id=nid, field="id")
            node_type = raw.get("node_type")
            if not node_type or not isinstance(node_type, str):
                raise ManifestError("missing node_type", node_id=nid, field="node_type")
            params = raw.get("params")
            if isinstance(params, str):  # the gRPC form carries params as a JSON string
                try:
                    params = json.loads(params) if params.strip() else {}
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"params is not valid JSON: {exc}", node_id=nid, field="params") from exc
            if params is not None and not isinstance(params, dict):
                raise ManifestError("params must be an object", node_id=nid, field="params")
            node = create_node(node_type, params, node_id=nid)
            executor = executor_from_manifest(raw["executor"], node_id=nid) if "executor" in raw else None
            pipeline.add(nid, node, is_output_node=bool(raw.get("is_output_node", False)),
                         is_streaming=bool(raw.get("is_streaming", False)), executor=executor)
            pipeline._nodes[nid].extra = {k: copy.deepcopy(v) for k, v in raw.items() if k not in
                                          ("id", "node_type", "params", "is_streaming", "is_output_node", "executor")}
        connections = manifest.get("connections") or []
        if not isinstance(connections, list):
            raise ManifestError("connections must be a list", field="connections")
        for i, raw in enumerate(connections):
            if not isinstance(raw, dict) or "from" not in raw or "to" not in raw:
                raise ManifestError("a connection needs 'from' and 'to'", field=f"connections[{i}]")
            policy = raw.get("policy", "auto")
            if policy not in POLICIES:
                raise ManifestError(
                    f"unknown policy {policy!r}", node_id=str(raw["to"]), field=f"connections[{i}].policy"
                )
            extra = {k: v for k, v in raw.items() if k not in ("from", "to", "policy")}
            pipeline.connections.append(Connection(str(raw["from"]), str(raw["to"]), policy, extra))
        return pipeline.validate()


def load_manifest(source: str | Path | dict[str, Any] | Pipeline) -> Pipeline:
    """A pipeline from a manifest dict, a JSON/YAML file path, JSON/YAML text, or a Pipeline (returned as is)."""
    if isinstance(source, Pipeline):
        return source.validate()
    if isinstance(source, dict):
        return Pipeline.from_manifest(source)
    text: str
    yaml_hint = False
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and len(source) < 4096
                                    and not source.lstrip().startswith(("{", "["))
                                    and Path(source).suffix.lower() in (".json", ".yaml", ".yml")):
        path = Path(source)
        if not path.exists():
            raise ManifestError(f"manifest file not found: {path}")
        _check_size(path.stat().st_size)
        text = path.read_text()
        yaml_hint = path.suffix.lower() in (".yaml", ".yml")
    else:
        text = str(source)
        _check_size(len(text.encode("utf-8", "surrogatepass")))
    return Pipeline.from_manifest(_parse_text(text, yaml_hint))


def _check_size(size: int) -> None:
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest of {size} bytes is larger than the limit of {MAX_MANIFEST_BYTES} bytes")


def _parse_text(text: str, yaml_hint: bool) -> Any:
    if not yaml_hint:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith("{"):
                raise ManifestError(f"invalid JSON manifest: {exc}") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML manifest: {exc}") from exc
