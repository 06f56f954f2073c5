"""Exceptions raised by remotemedia_nbrtc.

    RemoteMediaError
    ├── ManifestError          a manifest or pipeline is invalid (names node id and field)
    ├── SessionClosedError     the stream session is closed
    ├── NodeProcessingError    a node raised while processing (names the node id)
    └── TransportError         WebRTC / signaling failures
        ├── SignalingError     a JSON-RPC error (carries the code)
        └── ConnectTimeout     the peer did not connect in time
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class RemoteMediaError(Exception):
    """Base class of every error raised by this package."""


class ManifestError(RemoteMediaError, ValueError):
    """A manifest or pipeline failed validation.

    ``node_id`` and ``field`` name the place at fault when there is one.
    """

    def __init__(self, message: str, *, node_id: str | None = None, field: str | None = None) -> None:
        where = []
        if node_id is not None:
            where.append(f"node {node_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.node_id = node_id
        self.field = field


class SessionClosedError(RemoteMediaError):
    """The stream session is closed; no more input is accepted."""


class NodeProcessingError(RemoteMediaError):
    """A node raised while processing an input."""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(f"node {node_id!r}: {message}")
        self.node_id = node_id


class TransportError(RemoteMediaError):
    """A WebRTC transport or signaling failure."""


class SignalingError(TransportError):
    """A JSON-RPC 2.0 error, with its numeric ``code`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data


class ConnectTimeout(TransportError):
    """The peer connection did not reach ``connected`` in time."""


async def wait_for_with_message(aw: Awaitable[T], timeout: float | None, message: str | None = None) -> T:
    """``asyncio.wait_for`` whose ``TimeoutError`` says what timed out (default: ``"timed out after N s"``)."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        raise TimeoutError(message or f"timed out after {timeout} s") from None
