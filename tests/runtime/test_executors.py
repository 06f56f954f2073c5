"""Executor specs: the manifest extension field, Python API, validation and the missing-ray error (no cluster)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import remotemedia_nbrtc as rm
from remotemedia_nbrtc import AudioData, ManifestError, Pipeline, PipelineRunner
from remotemedia_nbrtc.nodes import Gain, PassThrough


def manifest(executor):
    return {"version": "v1", "metadata": {"name": "x"},
            "nodes": [{"id": "g", "node_type": "PassThrough", "params": {},
                       "executor": executor}],
            "connections": []}


def test_ray_spec_round_trips_through_save_and_load(tmp_path):
    p = Pipeline("heavy")
    p.add("a", PassThrough(), executor=rm.ray(num_cpus=0.5, num_gpus=1, max_in_flight=2))
    p.add("b", PassThrough(), executor=rm.ray(stateful=False, replicas=3, resources={"tpu": 1}, compiled_graph=False))
    p.add("c", Gain(gain_db=-3.0))
    p.chain("a", "b", "c")
    for name in ("m.json", "m.yaml"):
        loaded = rm.load_manifest(p.save(tmp_path / name))
        assert loaded.to_manifest() == p.to_manifest()
        assert loaded.executor("a") == rm.ray(num_cpus=0.5, num_gpus=1, max_in_flight=2)
        assert loaded.executor("b").replicas == 3 and loaded.executor("b").stateful is False
        assert loaded.executor("b").compiled_graph is False
        assert loaded.executor("c") == rm.local()
    nodes = {n["id"]: n for n in p.to_manifest()["nodes"]}
    assert nodes["a"]["executor"] == {"kind": "ray", "num_cpus": 0.5, "num_gpus": 1, "max_in_flight": 2}
    assert "executor" not in nodes["c"]


@pytest.mark.parametrize(("executor", "field"), [
    ({"kind": "dask"}, "executor.kind"),
    ({"kind": "ray", "num_gpu": 1}, "executor.num_gpu"),
    ({"kind": "ray", "replicas": 0}, "executor.replicas"),
    ({"kind": "ray", "num_cpus": "two"}, "executor.num_cpus"),
    ({"kind": "ray", "compiled_graph": "yes"}, "executor.compiled_graph"),
    ({"kind": "ray", "replicas": 2}, "executor.replicas"),  # PassThrough is stateful by default: no pool
    (["ray"], "executor"),
])
def test_bad_executor_fields_name_the_node_and_field(executor, field):
    with pytest.raises(ManifestError) as err:
        rm.load_manifest(manifest(executor))
    assert err.value.node_id == "g" and err.value.field == field, str(err.value)
    assert "'g'" in str(err.value) and field in str(err.value)


def test_decorator_and_class_attribute_set_the_default_executor():
    @rm.node("TestRayCaption", stateful=False, executor=rm.ray(replicas=2))
    def caption(data):
        return data

    assert caption.stateful is False and caption.executor == rm.ray(replicas=2)
    p = Pipeline()
    p.add("cap", caption())
    assert p.executor("cap").replicas == 2
    p.add("local", caption(), executor=rm.local())
    assert p.executor("local") == rm.local()
    assert "executor" not in p.to_manifest()["nodes"][0]  # the class default is not copied into the manifest


async def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    p = Pipeline()
    p.add("heavy", Gain(gain_db=0.0), executor=rm.ray())
    with pytest.raises(ImportError, match=r"node 'heavy'.*pip install remotemedia_nbrtc\[ray\]"):
        await PipelineRunner().create_stream_session(p)


async def test_local_nodes_report_their_executor_in_metrics():
    p = Pipeline()
    p.add("g", Gain(gain_db=0.0))
    session = await PipelineRunner().create_stream_session(p)
    await session.send_input(AudioData(np.zeros(160, np.float32), 16000))
    await session.end_input()
    assert len([o async for o in session]) == 1
    assert session.metrics()["g"]["executor"] == "local"
    await session.close()
