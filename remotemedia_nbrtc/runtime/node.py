"""Nodes: the units of a pipeline, the ``@node`` decorator and the node-type registry.

A node turns one input into zero, one or many outputs. Subclass :class:`Node` and implement
``process`` as any of:

- ``async def process(self, data)`` returning an output, ``None`` or a list of outputs;
- ``async def process(self, data)`` with ``yield`` (a streaming node: many outputs per input);
- plain ``def process(self, data)`` (optionally a generator), run inline, or on the node's own worker
  thread when the class sets ``threaded = True`` (CPU-heavy work stays off the event loop).

Parameters are the keyword arguments of ``__init__``; manifests may spell them in camelCase.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, ClassVar

from ..errors import ManifestError
from .data import RuntimeData

__all__ = ["Node", "node", "register_node", "node_registry", "get_node_class", "create_node"]

_REGISTRY: dict[str, type[Node]] = {}


class Node:
    """Base class of pipeline nodes.

    Class attributes: ``node_type`` (registry name), ``threaded`` (run a sync ``process`` on a
    worker thread), ``accepts_extra_params`` (keep manifest params ``__init__`` does not name),
    ``audio_input`` (``(sample_rate, channels)`` this node wants as a pipeline
    source, or ``None``), ``stateful`` (keeps state from one input to the next; ``False`` lets a
    remote executor share replicas between sessions), ``executor`` (where the node runs unless
    ``Pipeline.add`` says otherwise: ``None`` is in the kernel, ``rm.ray(...)`` a Ray actor).
    """

    node_type: ClassVar[str] = ""
    threaded: ClassVar[bool] = False
    audio_input: ClassVar[tuple[int, int] | None] = None
    #: True if the node takes parameters its ``__init__`` does not name (through ``**kwargs``);
    #: otherwise an unknown manifest param is a ManifestError naming the node and the field.
    accepts_extra_params: ClassVar[bool] = False
    stateful: ClassVar[bool] = True
    executor: ClassVar[Any] = None

    id: str = ""
    _params: dict[str, Any]
    _init_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Node:
        obj = super().__new__(cls)
        obj._init_kwargs = dict(kwargs)
        obj._params = dict(kwargs)
        return obj

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and cls.__dict__.get("node_type"):
            register_node(cls)

    @property
    def params(self) -> dict[str, Any]:
        """The keyword arguments this node was made with (saved back into manifests)."""
        return dict(self._params)

    async def start(self) -> None:
        """Called once before the first input."""

    async def stop(self) -> None:
        """Called once when the session closes."""

    def process(self, data: RuntimeData) -> Any:
        """Process one input; see the module docstring for the accepted shapes."""
        return data

    def flush(self) -> Any:
        """Called at end of stream (and on a ``flush`` control message); may return or yield outputs."""
        return None

    def fresh_copy(self) -> Node:
        """A new, unstarted instance with the same parameters (one per session)."""
        clone = type(self)(**self._init_kwargs)
        clone._params = dict(self._params)
        clone.id = self.id
        return clone

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def register_node(cls: type[Node], node_type: str | None = None) -> type[Node]:
    """Register ``cls`` under ``node_type`` (default: ``cls.node_type``); the newest registration wins."""
    name = node_type or cls.node_type
    if not name:
        raise ValueError(f"{cls.__name__} has no node_type")
    _REGISTRY[name] = cls
    return cls


_UNAVAILABLE: dict[str, str] = {}


def register_unavailable(node_type: str, reason: str) -> None:
    """Name a node type (e.g. an upstream one) that has no implementation here, and why; a manifest using
    it gets a :class:`ManifestError` saying so instead of "unknown node_type"."""
    _UNAVAILABLE[node_type] = reason


def _load_builtins() -> None:
    # Imported lazily so the runtime does not depend on the node library at import time.
    import importlib

    importlib.import_module("remotemedia_nbrtc.nodes")


def node_registry() -> dict[str, type[Node]]:
    """A copy of the registry: node_type -> class (built-in nodes included)."""
    _load_builtins()
    return dict(_REGISTRY)


def get_node_class(node_type: str, *, node_id: str | None = None) -> type[Node]:
    """The class registered as ``node_type``; ``ManifestError`` naming the node if there is none."""
    if node_type not in _REGISTRY:
        _load_builtins()
    try:
        return _REGISTRY[node_type]
    except KeyError:
        if node_type in _UNAVAILABLE:
            raise ManifestError(
                f"node_type {node_type!r} is not available here: {_UNAVAILABLE[node_type]}",
                node_id=node_id, field="node_type",
            ) from None
        known = ", ".join(sorted(_REGISTRY))
        raise ManifestError(
            f"unknown node_type {node_type!r} (registered: {known})", node_id=node_id, field="node_type"
        ) from None


_SIMPLE_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _check_param_type(cls: type[Node], name: str, value: Any, annotation: Any, node_id: str | None) -> Any:
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if not isinstance(ann, str):
        return value
    ann = ann.replace(" ", "")
    options = ann.split("|")
    if "None" in options and value is None:
        return value
    types = [_SIMPLE_TYPES[o] for o in options if o in _SIMPLE_TYPES]
    if not types or len(types) != len([o for o in options if o != "None"]):
        return value  # not a simple annotation: the node validates it itself
    if isinstance(value, bool) and bool not in types:
        pass
    elif isinstance(value, tuple(types)):
        return value
    elif float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ManifestError(
        f"expected {ann}, got {type(value).__name__} {value!r}", node_id=node_id, field=f"params.{name}"
    )


def create_node(node_type: str, params: dict[str, Any] | None, *, node_id: str) -> Node:
    """Instantiate a registered node from manifest params, naming the node and field on error."""
    cls = get_node_class(node_type, node_id=node_id)
    params = dict(params or {})
    if not isinstance(params, dict):
        raise ManifestError("params must be an object", node_id=node_id, field="params")
    # a class without its own __init__ inherits object's (*args, **kwargs): that accepts nothing
    sig = inspect.signature(cls.__init__) if cls.__init__ is not object.__init__ else inspect.Signature()
    accepts_any = bool(getattr(cls, "accepts_extra_params", False))
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        name = key if key in sig.parameters else _snake(key)
        param = sig.parameters.get(name)
        if param is None or param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if accepts_any:
                kwargs[key] = value
                continue
            allowed = [p for p in sig.parameters if p != "self"]
            raise ManifestError(f"unknown parameter (accepted: {allowed})", node_id=node_id, field=f"params.{key}")
        annotation = hints.get(name, param.annotation)
        if annotation is not inspect.Parameter.empty:
            if not isinstance(annotation, str):
                annotation = _annotation_name(annotation)
            value = _check_param_type(cls, key, value, annotation, node_id)
        kwargs[name] = value
    try:
        instance = cls(**kwargs)
    except ManifestError:
        raise
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"bad params: {exc}", node_id=node_id, field="params") from exc
    instance._params = dict(params)  # keep the manifest's spelling for a faithful round trip
    instance.id = node_id
    return instance


def _annotation_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return "|".join(getattr(a, "__name__", str(a)) if a is not type(None) else "None" for a in args)
    return getattr(annotation, "__name__", str(annotation))


class _FunctionNode(Node):
    """Base of the classes ``@node`` makes: the function's keyword params, kept per instance."""

    _fn_params: dict[str, Any]


def node(
    node_type: str | Callable[..., Any] | None = None, *, threaded: bool = False, stateful: bool = True,
    executor: Any = None,
) -> Any:
    """Turn a plain function into a registered node class.

    The first argument of the function is the input; keyword-only arguments become params::

        @node("Upper")
        def upper(data: TextData) -> TextData:
            return TextData(data.text.upper())

        @node(threaded=True)                 # CPU-heavy: runs on the node's own thread
        def frames(data, *, size: int = 320): ...

        @node(stateful=False, executor=ray(replicas=2))   # heavy: a pool of 2 Ray actors
        def caption(frame): ...

    Generators (sync or async) become streaming nodes. Returns the new ``Node`` subclass, which is
    also callable with the params to make an instance.
    """

    def wrap(fn: Callable[..., Any]) -> type[Node]:
        name = node_type if isinstance(node_type, str) else fn.__name__
        sig = inspect.signature(fn)
        param_names = [p.name for p in list(sig.parameters.values())[1:]]
        is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)

        def __init__(self: _FunctionNode, **params: Any) -> None:
            unknown = set(params) - set(param_names)
            if unknown:
                raise TypeError(f"unknown parameter(s) {sorted(unknown)} (accepted: {param_names})")
            self._fn_params = params

        if inspect.isasyncgenfunction(fn):

            async def process(self: _FunctionNode, data: RuntimeData) -> AsyncIterator[Any]:
                async for out in fn(data, **self._fn_params):
                    yield out

        elif inspect.iscoroutinefunction(fn):

            async def process(self: _FunctionNode, data: RuntimeData) -> Any:  # type: ignore[misc]
                return await fn(data, **self._fn_params)

        else:

            def process(self: _FunctionNode, data: RuntimeData) -> Any:  # type: ignore[misc]
                return fn(data, **self._fn_params)

        __init__.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in list(sig.parameters.values())[1:]]
        )
        __init__.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k in param_names}
        cls = type(
            fn.__name__,
            (_FunctionNode,),
            {
                "node_type": name,
                "threaded": threaded and not is_async,
                "stateful": stateful,
                "executor": executor,
                "__init__": __init__,
                "process": process,
                "__doc__": fn.__doc__,
                "__module__": fn.__module__,
                "__wrapped__": fn,
            },
        )
        return cls

    if callable(node_type) and not isinstance(node_type, str):
        return wrap(node_type)
    return wrap


def iter_outputs(result: Any) -> Iterable[Any]:
    """Normalise a sync ``process`` result into an iterable of outputs."""
    if result is None:
        return ()
    if isinstance(result, RuntimeData):
        return (result,)
    if isinstance(result, (list, tuple)):
        return result
    if inspect.isgenerator(result):
        return result
    raise TypeError(f"process returned {type(result).__name__}; expected RuntimeData, a list of them, or None")
