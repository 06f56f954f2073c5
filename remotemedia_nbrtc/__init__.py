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
from .runtime import (
    AudioData,
    AudioFormat,
    BinaryData,
    ControlData,
    ErrorData,
    JsonData,
    Node,
    Pipeline,
    PipelineRunner,
    RuntimeData,
    StreamSession,
    TextData,
    VideoData,
    load_manifest,
    node,
    node_registry,
    register_node,
)
from .nodes.turns import ReplyOnPause
from .recent import RecentOutputs
from .stream import StreamHandle, stream

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AudioData",
    "AudioFormat",
    "BinaryData",
    "ConnectTimeout",
    "ControlData",
    "ErrorData",
    "JsonData",
    "ManifestError",
    "Node",
    "NodeProcessingError",
    "Pipeline",
    "PipelineRunner",
    "RecentOutputs",
    "RemoteMediaError",
    "ReplyOnPause",
    "RuntimeData",
    "SessionClosedError",
    "SignalingError",
    "StreamHandle",
    "StreamSession",
    "TextData",
    "TransportError",
    "VideoData",
    "load_manifest",
    "node",
    "node_registry",
    "register_node",
    "stream",
]
