import json

import pytest
import yaml

from remotemedia_nbrtc import ManifestError, Pipeline, load_manifest
from remotemedia_nbrtc.nodes import AudioChunker, AudioLevel, Gain

UPSTREAM_V1 = {
    "version": "v1",
    "metadata": {"name": "vad_bidirectional", "description": "upstream shape, camelCase params"},
    "nodes": [
        {"id": "resample", "node_type": "FastResampleNode",
         "params": {"sourceRate": 48000, "targetRate": 16000, "quality": "Medium", "channels": 1},
         "is_streaming": True},
        {"id": "chunk", "node_type": "AudioChunkerNode", "params": {"chunkSize": 512}, "is_streaming": True},
        {"id": "echo", "node_type": "PassThrough", "params": {}, "is_streaming": True, "runtime_hint": "rust"},
    ],
    "connections": [{"from": "resample", "to": "chunk"}, {"from": "chunk", "to": "echo"}],
}


def test_upstream_v1_manifest_loads_and_round_trips_through_json_and_yaml(tmp_path):
    pipeline = load_manifest(UPSTREAM_V1)
    assert pipeline.node("resample").target_rate == 16000
    assert pipeline.node("chunk").chunk_size == 512
    assert pipeline.to_manifest() == UPSTREAM_V1
    for name in ("p.json", "p.yaml"):
        path = pipeline.save(tmp_path / name)
        assert load_manifest(path).to_manifest() == UPSTREAM_V1
        assert load_manifest(str(path)).to_manifest() == UPSTREAM_V1
    assert yaml.safe_load((tmp_path / "p.yaml").read_text()) == UPSTREAM_V1
    assert json.loads((tmp_path / "p.json").read_text()) == UPSTREAM_V1
    assert load_manifest(json.dumps(UPSTREAM_V1)).to_manifest() == UPSTREAM_V1
    assert load_manifest(yaml.safe_dump(UPSTREAM_V1)).to_manifest() == UPSTREAM_V1


def test_lenient_parsing_of_upstream_variants():
    m = {"nodes": [{"id": "g", "node_type": "Gain", "params": json.dumps({"gain_db": -3})}]}
    p = load_manifest(m)
    assert p.version == "v1" and p.node("g").gain_db == -3


def test_python_built_pipeline_round_trips():
    p = Pipeline("levels")
    p.add("chunk", AudioChunker(chunk_size=320))
    p.add("gain", Gain(gain_db=-6.0))
    p.add("level", AudioLevel(), is_output_node=True)
    p.chain("chunk", "gain", "level")
    again = load_manifest(p.to_yaml())
    assert again.to_manifest() == p.to_manifest()
    assert again.node("gain").gain_db == -6.0 and again.is_output_node("level")


def _manifest(nodes, connections=()):
    return {"version": "v1", "metadata": {}, "nodes": nodes, "connections": list(connections)}


@pytest.mark.parametrize(
    "manifest,node_id,field,text",
    [
        (_manifest([{"id": "a", "node_type": "NoSuchNode"}]), "a", "node_type", "unknown node_type"),
        (_manifest([{"id": "a", "node_type": "Gain", "params": {"gain_db": "loud"}}]), "a", "params.gain_db",
         "expected"),
        (_manifest([{"id": "a", "node_type": "Gain", "params": {"volume": 3}}]), "a", "params.volume",
         "unknown parameter"),
        (_manifest([{"id": "a", "node_type": "PassThrough", "params": {"bogus": 1}}]), "a", "params.bogus",
         "unknown parameter"),
        (_manifest([{"id": "a", "node_type": "Echo", "params": {"bogus": 1}}]), "a", "params.bogus",
         "unknown parameter"),
        (_manifest([{"id": "a", "node_type": "AudioChunkerNode", "params": {"chunkSize": 0}}]), "a", "params", ">= 1"),
        (_manifest([{"node_type": "Gain"}]), None, "nodes[0].id", "no id"),
        (_manifest([{"id": "a", "node_type": "Gain"}, {"id": "a", "node_type": "Gain"}]), "a", "id", "duplicate"),
        (_manifest([{"id": "a", "node_type": "Gain"}, {"id": "b", "node_type": "Gain"}],
                   [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}]), None, "connections", "cycle"),
        (_manifest([{"id": "a", "node_type": "Gain"}], [{"from": "a", "to": "ghost"}]),
         "ghost", "connections[0].to", "unknown node"),
        (_manifest([{"id": "a", "node_type": "Gain"}], [{"from": "a"}]), None, "connections[0]", "needs"),
        (_manifest([]), None, "nodes", "non-empty"),
        ({"version": "v9", "nodes": [{"id": "a", "node_type": "Gain"}]}, None, "version", "unsupported"),
    ],
)
def test_validation_errors_name_node_and_field(manifest, node_id, field, text):
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    err = info.value
    assert text in str(err)
    assert err.field == field
    if node_id is not None:
        assert err.node_id == node_id


def test_cycle_error_names_a_node_of_the_cycle():
    m = _manifest([{"id": x, "node_type": "PassThrough"} for x in "abc"],
                  [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "b"}])
    with pytest.raises(ManifestError) as info:
        load_manifest(m)
    assert info.value.node_id in ("b", "c")


def test_invalid_text_and_missing_file():
    with pytest.raises(ManifestError, match="invalid JSON"):
        load_manifest('{"nodes": [')
    with pytest.raises(ManifestError, match="not found"):
        load_manifest("missing.yaml")


def test_a_node_that_declares_extra_params_keeps_them():
    from remotemedia_nbrtc.runtime.node import Node

    class Options(Node, register=False):
        accepts_extra_params = True

        def __init__(self, **options):
            self.options = options

    class Strict(Node, register=False):
        def __init__(self, *, x: int = 1, **rest):
            self.x = x

    import importlib

    node_module = importlib.import_module("remotemedia_nbrtc.runtime.node")

    node_module.register_node(Options, "TestOptions")
    node_module.register_node(Strict, "TestStrict")
    try:
        p = load_manifest(_manifest([{"id": "o", "node_type": "TestOptions", "params": {"anything": 2}}]))
        assert p.node("o").options == {"anything": 2}
        with pytest.raises(ManifestError) as info:
            load_manifest(_manifest([{"id": "s", "node_type": "TestStrict", "params": {"bogus": 1}}]))
        assert info.value.node_id == "s" and info.value.field == "params.bogus"
    finally:
        node_module._REGISTRY.pop("TestOptions", None)
        node_module._REGISTRY.pop("TestStrict", None)


def test_oversized_manifests_fail_fast(tmp_path):
    import time

    many = _manifest([{"id": f"n{i}", "node_type": "PassThrough"} for i in range(20_000)])
    big_text = json.dumps({**_manifest([{"id": "a", "node_type": "PassThrough"}]), "pad": "x" * (50 << 20)})
    big_file = tmp_path / "big.json"
    big_file.write_text(big_text)
    for source, field, text in ((many, "nodes", "limit"), (json.dumps(many), "nodes", "limit"),
                                (big_text, None, "bytes"), (big_file, None, "bytes")):
        started = time.monotonic()
        with pytest.raises(ManifestError, match=text) as info:
            load_manifest(source)
        assert time.monotonic() - started < 1.0
        assert info.value.field == field


def test_a_copy_keeps_every_node_field_and_edge_and_adding_to_it_leaves_the_original_alone():
    from remotemedia_nbrtc import ray

    manifest = {**UPSTREAM_V1, "extra_field": {"kept": True}}
    original = load_manifest(manifest)
    original.add("meter", AudioLevel(), executor=ray(num_cpus=0), is_output_node=True, is_streaming=False)
    original.connect("echo", "meter", policy="keep_newest")
    copied = original.copy()
    assert copied.to_manifest() == original.to_manifest()  # executors, runtime hints, policies, extra fields
    assert copied.executor("meter") == original.executor("meter")
    copied.add("more", Gain(gain_db=-3.0))
    copied.connect("meter", "more")
    copied.metadata["name"] = "changed"
    assert "more" not in original.nodes and len(original.connections) == 3
    assert original.name == "vad_bidirectional"
