"""Utility nodes."""

from __future__ import annotations

from ..runtime.data import RuntimeData
from ..runtime.node import Node


class PassThrough(Node):
    """Outputs every input unchanged."""

    node_type = "PassThrough"

    def process(self, data: RuntimeData) -> RuntimeData:
        return data


class Echo(PassThrough):
    """Upstream's name for a pass-through used in echo pipelines."""

    node_type = "Echo"
