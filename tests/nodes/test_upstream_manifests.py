"""Upstream's reference manifests (Example A: resample -> chunk -> VAD -> Whisper STT; Example C: video flip ->
encoder) load and run here; an upstream node type without an equivalent gets an error that names it."""

from __future__ import annotations

import numpy as np
import pytest

from remotemedia_nbrtc import ManifestError, PipelineRunner, VideoData, load_manifest
from remotemedia_nbrtc.nodes import FasterWhisperEngine, SpeechToTextNode, TransportCodec

EXAMPLE_A = {
    "version": "v1",
    "metadata": {"name": "stt"},
    "nodes": [
        {"id": "resample", "node_type": "FastResampleNode",
         "params": {"sourceRate": 48000, "targetRate": 16000, "quality": "Medium", "channels": 1},
         "is_streaming": True},
        {"id": "chunk", "node_type": "AudioChunkerNode", "params": {"chunkSize": 512}, "is_streaming": True},
        {"id": "vad", "node_type": "SileroVADNode",
         "params": {"threshold": 0.5, "samplingRate": 16000}, "is_streaming": True},
        {"id": "stt", "node_type": "WhisperSTTNode", "params": {"model_id": "openai/whisper-tiny.en"}},
    ],
    "connections": [
        {"from": "resample", "to": "chunk"},
        {"from": "chunk", "to": "vad"},
        {"from": "vad", "to": "stt"},
    ],
}

EXAMPLE_C = """\
version: v1
metadata: {name: flip}
nodes:
  - {id: flip, node_type: VideoFlip, params: {direction: horizontal}, is_streaming: true}
  - {id: enc,  node_type: VideoEncoder, params: {codec: Vp8, bitrate: 1000000}, is_streaming: true}
connections:
  - {from: flip, to: enc}
"""


def test_example_a_loads_with_whisper_on_the_default_engine() -> None:
    p = load_manifest(EXAMPLE_A)
    stt = p.node("stt")
    assert isinstance(stt, SpeechToTextNode) and stt.model_id == "openai/whisper-tiny.en"
    assert isinstance(stt.engine(), FasterWhisperEngine)  # the default engine, as SpeechToTextNode() has
    assert p.sources == ["resample"] and p.sinks == ["stt"]


async def test_example_c_loads_and_runs_frames_through_flip_and_encoder() -> None:
    p = load_manifest(EXAMPLE_C)
    assert isinstance(p.node("enc"), TransportCodec) and p.node("enc").codec == "Vp8"
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[:, 0] = 255  # left column white
    session = await PipelineRunner().create_stream_session(p)
    try:
        await session.send_input(VideoData(frame))
        nid, out = await session.receive_output_from(timeout=5)
        assert nid == "enc" and isinstance(out, VideoData)
        assert out.frame[:, -1].min() == 255 and out.frame[:, 0].max() == 0  # flipped, then passed on unchanged
    finally:
        await session.close()


def test_an_upstream_node_without_an_equivalent_is_named_in_the_error() -> None:
    manifest = {"version": "v1", "nodes": [{"id": "tts", "node_type": "VibeVoiceTTSNode", "params": {}}],
                "connections": []}
    with pytest.raises(ManifestError, match=r"'VibeVoiceTTSNode' is not available here") as info:
        load_manifest(manifest)
    assert "tts" in str(info.value)
