"""PipelineRunner: creates stream sessions and runs one-shot (unary) executions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RemoteMediaError
from .data import RuntimeData
from .pipeline import Pipeline, load_manifest
from .session import StreamSession

__all__ = ["PipelineRunner", "PipelineSource"]

PipelineSource = Pipeline | dict[str, Any] | str | Path


class PipelineRunner:
    """Runs pipelines given as a :class:`Pipeline`, a manifest dict, JSON/YAML text or a file path.

    Queue sizes follow RemoteMedia's defaults: 16 per node inbox, 256 for the client output.
    """

    def __init__(self, *, node_capacity: int = 16, output_capacity: int = 256) -> None:
        self.node_capacity = node_capacity
        self.output_capacity = output_capacity

    async def create_stream_session(self, pipeline: PipelineSource) -> StreamSession:
        """Validate ``pipeline`` and start a session on the running event loop."""
        session = StreamSession(
            load_manifest(pipeline), node_capacity=self.node_capacity, output_capacity=self.output_capacity
        )
        return await session.start()

    async def execute_unary(self, pipeline: PipelineSource, data: RuntimeData, *, timeout: float = 30.0) -> RuntimeData:
        """Send one input, return the first output (RemoteMedia's unary semantics)."""
        session = await self.create_stream_session(pipeline)
        try:
            await session.send_input(data)
            await session.end_input()
            out = await session.receive_output(timeout=timeout)
        finally:
            await session.close()
        if out is None:
            raise RemoteMediaError("No output from pipeline")
        return out
