"""remotemedia_nbrtc: browser mic/camera -> WebRTC -> a media pipeline in a Jupyter kernel -> live results."""

import logging

from .errors import (
    ConnectTimeout,
    ManifestError,
    NodeProcessingError,
    RemoteMediaError,
    SessionClosedError,
    SignalingError,
    TransportError,
)
from .nodes.turns import ReplyOnPause
from .recent import RecentOutputs
from .runtime import (
    AudioData,
    AudioFormat,
    BinaryData,
    ControlData,
    ErrorData,
    Executor,
    JsonData,
    LocalExecutor,
    Node,
    Pipeline,
    PipelineRunner,
    RayExecutor,
    RuntimeData,
    StreamSession,
    TextData,
    VideoData,
    load_manifest,
    local,
    node,
    node_registry,
    ray,
    register_node,
)
from .stream import StreamHandle, stream
from .stream_options import StreamOptions

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AudioData",
    "AudioFormat",
    "BinaryData",
    "ConnectTimeout",
    "ControlData",
    "ErrorData",
    "Executor",
    "JsonData",
    "LocalExecutor",
    "ManifestError",
    "Node",
    "NodeProcessingError",
    "Pipeline",
    "PipelineRunner",
    "RayExecutor",
    "RecentOutputs",
    "RemoteMediaError",
    "ReplyOnPause",
    "RuntimeData",
    "SessionClosedError",
    "SignalingError",
    "StreamHandle",
    "StreamOptions",
    "StreamSession",
    "TextData",
    "TransportError",
    "VideoData",
    "load_manifest",
    "local",
    "node",
    "node_registry",
    "ray",
    "register_node",
    "stream",
]
