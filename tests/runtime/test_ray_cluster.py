"""Nodes on a real Ray cluster: ``ray start --head`` on 127.0.0.1 (started once for this module, its
processes killed by PID at teardown), reached through ``RAY_ADDRESS`` alone. The STT node runs there
behind the real WebRTC path; the last test kills the cluster mid-stream.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import remotemedia_nbrtc as rm
from remotemedia_nbrtc import AudioData, ErrorData, Node, Pipeline, PipelineRunner
from remotemedia_nbrtc.nodes import Gain
from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, have_espeak, make_speech_track, word_accuracy, write_wav

ray = pytest.importorskip("ray", reason="CI installs the ray extra; locally: pip install remotemedia_nbrtc[ray]")
from remotemedia_nbrtc.testing.ray_cluster import LocalRayCluster, alive_actors  # noqa: E402

pytestmark = pytest.mark.timeout(300)


class Count(Node, register=False):
    node_type = "TestClusterCount"

    def __init__(self) -> None:
        self.n = 0

    def process(self, data):
        self.n += 1
        return data.replace(metadata={**data.metadata, "n": self.n, "pid": os.getpid()})


def frame(i: int) -> AudioData:
    return AudioData(np.full(320, i / 1000, np.float32), 16000, timestamp_us=i * 20_000)


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    head = LocalRayCluster(num_cpus=2).start()
    try:
        with head.driver_env():  # RAY_ADDRESS is all it takes: the executor connects on the first session
            try:
                yield head
            finally:
                ray.shutdown()  # before driver_env refreshes Ray's auth state back
    finally:
        head.stop()
        assert head.pids() == []


@pytest.mark.skipif(not have_espeak(), reason="espeak-ng not installed")
async def test_pocketsphinx_stt_on_the_cluster_behind_webrtc(cluster):
    from remotemedia_nbrtc.nodes.speech import PocketSphinxSTT, SpeechGate, WebRTCVAD
    from remotemedia_nbrtc.standalone.server import ServerConfig, WebRTCServer
    from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
    from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
    from remotemedia_nbrtc.transport.sources import WavFileSource

    sentences = list(HOME_COMMANDS[:4])
    track = make_speech_track(sentences, gap_s=0.8, lead_s=0.5)
    p = Pipeline("stt-on-ray")
    p.add("vad", WebRTCVAD(aggressiveness=2, min_speech_ms=90, min_silence_ms=300))
    p.add("gate", SpeechGate(pre_roll_ms=400, post_roll_ms=200))
    p.add("stt", PocketSphinxSTT(phrases=list(HOME_COMMANDS), emit_partials=False), executor=rm.ray(num_cpus=1))
    p.chain("vad", "gate", "stt")
    sessions = []

    class Runner(PipelineRunner):
        async def create_stream_session(self, pipeline):
            sessions.append(await super().create_stream_session(pipeline))
            return sessions[-1]

    ice = IceConfig(loopback_only=True)
    server = WebRTCServer(ServerConfig(port=0, peer=PeerConfig(ice=ice, send_audio=False, send_video=False)), p,
                          runner=Runner())
    await server.start()
    finals: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = WavFileSource(write_wav(Path(tmp) / "s.wav", track.samples, track.sample_rate), pad_s=1.5)
        client = await ClientPeer.connect(server.url, audio=source, ice=ice, receive_media=False)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + source.duration + 30
            while len(finals) < len(sentences) and loop.time() < deadline:
                try:
                    msg = await client.next_output(timeout=0.5)
                except TimeoutError:
                    continue
                if msg is None:
                    break
                assert msg.get("type") != "error", msg
                value = msg.get("value")
                if msg.get("type") == "json" and isinstance(value, dict) and value.get("final") and value.get("text"):
                    finals.append(value["text"])
            metrics = sessions[0].metrics()["stt"]
            assert alive_actors() == 1  # the session's own recogniser actor, on the cluster
        finally:
            await client.close()
    finally:
        await server.stop()
    assert word_accuracy(sentences, finals) >= 0.75, finals
    assert (metrics["executor"] == "ray" and metrics["errors"] == 0 and metrics["lost"] == 0
            and metrics["frames_in"] > 50)
    for _ in range(50):  # the server closes sessions as the peer goes: the actor goes with it
        if alive_actors() == 0:
            break
        await asyncio.sleep(0.1)
    assert alive_actors() == 0


async def test_cluster_lost_mid_stream_gives_error_data_and_the_session_goes_on(cluster):
    p = Pipeline()
    p.add("remote", Count(), executor=rm.ray(num_cpus=0, call_timeout_s=5))
    p.add("local", Gain(gain_db=0.0))  # a second source: keeps working after the cluster is gone
    session = await PipelineRunner().create_stream_session(p)
    for i in range(5):
        await session.send_input(frame(i))
    got = [await session.receive_output(timeout=30) for _ in range(10)]
    remote = [o for o in got if o.metadata.get("n")]
    assert [o.metadata["n"] for o in remote] == [1, 2, 3, 4, 5] and remote[0].metadata["pid"] != os.getpid()

    cluster.stop()  # every process of the cluster killed: head, raylet, the actor's worker
    for i in range(5, 10):
        await session.send_input(frame(i))
    await session.end_input()
    outs = [o async for o in session]
    errors = [o for o in outs if isinstance(o, ErrorData)]
    assert len(errors) == 1 and errors[0].node_id == "remote" and errors[0].error_type == "RemoteNodeLost", errors
    assert "lost its Ray actor" in errors[0].message
    local = [o for o in outs if isinstance(o, AudioData) and "n" not in o.metadata]
    assert len(local) == 5  # the session went on
    m = session.metrics()["remote"]
    assert m["lost"] == 5 and m["lost_reason"], m
    await asyncio.wait_for(session.close(), 30)


_AFTER_A_LOCAL_RAY = """
import os, ray
from remotemedia_nbrtc.testing.ray_cluster import LocalRayCluster

@ray.remote
class Pid:
    def get(self):
        return os.getpid()

os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("RAY_AUTH_MODE", None)
ray.init(address="local", include_dashboard=False, log_to_driver=False)  # turns token auth on for the process
ray.get(Pid.options(num_cpus=0).remote().get.remote())
ray.shutdown()
with LocalRayCluster(num_cpus=1) as head, head.driver_env():
    ray.init(include_dashboard=False, log_to_driver=False)
    print("cluster actor pid", ray.get(Pid.options(num_cpus=1).remote().get.remote(), timeout=60))
    ray.shutdown()
"""


def test_the_cluster_runs_actors_of_a_driver_that_ran_a_local_ray_before():
    """Regression: a local ray.init() earlier in the process left token auth on, and the no-auth cluster's
    actors were cancelled before they ran (this module failed after test_ray_executor.py)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _AFTER_A_LOCAL_RAY], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert result.returncode == 0 and "cluster actor pid" in result.stdout, result.stderr[-3000:]
