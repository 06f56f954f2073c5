"""The pipeline runtime: data types, nodes, pipelines and manifests, sessions, queues, executors.

May import: ``errors``, numpy, PyAV (frame conversion, loaded on use), PyYAML (manifests, on use) and
Ray (``ray_executor.py`` only, on use); no WebRTC, no Jupyter, nothing else of this package.
"""

from .data import AudioData, BinaryData, ControlData, ErrorData, JsonData, RuntimeData, TextData, VideoData, now_us
from .executors import Executor, LocalExecutor, RayExecutor, local, ray
from .node import Node, create_node, get_node_class, node, node_registry, register_node
from .pipeline import AudioFormat, Connection, Pipeline, load_manifest
from .queues import BoundedQueue, QueuePolicy
from .runner import PipelineRunner, PipelineSource
from .session import NodeState, StreamSession

__all__ = [
    "AudioData",
    "AudioFormat",
    "BinaryData",
    "BoundedQueue",
    "Connection",
    "ControlData",
    "ErrorData",
    "Executor",
    "JsonData",
    "LocalExecutor",
    "Node",
    "NodeState",
    "Pipeline",
    "PipelineRunner",
    "PipelineSource",
    "QueuePolicy",
    "RayExecutor",
    "RuntimeData",
    "StreamSession",
    "TextData",
    "VideoData",
    "create_node",
    "get_node_class",
    "load_manifest",
    "local",
    "node",
    "node_registry",
    "now_us",
    "ray",
    "register_node",
]
