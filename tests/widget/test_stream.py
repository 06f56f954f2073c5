"""stream() / StreamHandle on the Python side: serving, taps on a real session, close and re-run."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from remotemedia_nbrtc import StreamOptions
from remotemedia_nbrtc.nodes import AudioLevel, EnergyVAD
from remotemedia_nbrtc.runtime import AudioData, JsonData, Pipeline, ray
from remotemedia_nbrtc.stream import PROBE_NODE_ID, StreamHandle, live_handles, stream, with_latency_probe
from remotemedia_nbrtc.transport.loop_thread import pipeline_loop
from remotemedia_nbrtc.widget import StreamWidget

pytestmark = pytest.mark.timeout(30)


@dataclass
class FakeKernelSession:
    session_id: str
    ws_path: str
    closed: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    def close(self, timeout: float = 10.0) -> None:
        self.closed = True

    def endpoints(self, timeout: float = 5.0) -> list[Any]:
        return []


class FakeServe:
    """Stands in for kernel.serve (the layer below): records what stream() asked for."""

    def __init__(self) -> None:
        self.sessions: list[FakeKernelSession] = []
        self.kwargs: list[dict[str, Any]] = []
        self.pipelines: list[Any] = []

    def __call__(self, pipeline: Any, **kwargs: Any) -> FakeKernelSession:
        n = len(self.sessions)
        ks = FakeKernelSession(f"sid{n}", f"remotemedia/ws/sid{n}")
        self.sessions.append(ks)
        self.kwargs.append(kwargs)
        self.pipelines.append(pipeline)
        return ks


def stream_with(serve: Any, *args: Any, **kwargs: Any) -> StreamHandle:
    """``stream(*args, **kwargs)`` with ``serve`` standing in for ``kernel.serve`` (no server extension needed)."""
    with mock.patch("remotemedia_nbrtc.kernel.serve.serve", serve):
        return stream(*args, **kwargs)


def level_vad_pipeline() -> Pipeline:
    p = Pipeline("levels")
    p.add("level", AudioLevel())
    p.add("vad", EnergyVAD(passthrough=False))
    return p


def tone(amplitude: float, n: int = 960, rate: int = 48000) -> AudioData:
    t = np.arange(n, dtype=np.float32) / rate
    return AudioData((amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1), rate)


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def open_browser_session(handle: Any, pipeline: Any) -> Any:
    """What a browser connecting does, minus WebRTC: the served runner creates a session."""
    return pipeline_loop().run(handle.runner.create_stream_session(pipeline), 5)


def display_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("remotemedia-display")]


def test_without_the_server_extension_the_widget_shows_what_to_do() -> None:
    h = stream(level_vad_pipeline())
    assert h.error is not None
    assert "extension" in h.widget.error and "jupyter server extension list" in h.widget.error
    assert h.session_id is None
    assert display_threads() == []
    bundle = h._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"].startswith("<StreamHandle error:") and "extension" in data["text/plain"]
    h.close()  # harmless


def test_widget_gets_session_ws_path_and_loopback_ice() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), audio=True, video=False, loopback_only=True, key="k1")
    try:
        w = h.widget
        assert isinstance(w, StreamWidget)
        assert (w.session_id, w.ws_path) == ("sid0", "remotemedia/ws/sid0")
        assert w.loopback_only and w.ice_servers == [] and w.audio and not w.video and w.latency_probe
        peer_config = serve.kwargs[0]["peer_config"]
        assert peer_config.ice.loopback_only and peer_config.ice.server_ice_servers() == []
        assert serve.kwargs[0]["runner"] is h.runner
        assert PROBE_NODE_ID in serve.pipelines[0].nodes
        bundle = h._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in (bundle[0] if isinstance(bundle, tuple) else bundle)
    finally:
        h.close()


def test_browser_ice_servers_reach_the_widget_but_not_the_kernel_peer() -> None:
    turn = {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}
    h = stream_with(FakeServe(), level_vad_pipeline(),
                    options=StreamOptions(ice_servers=[], browser_ice_servers=[turn]))
    try:
        assert h.widget.ice_servers == [turn]
    finally:
        h.close()


def test_with_latency_probe_copies_and_the_probe_echoes_only_pings() -> None:
    original = level_vad_pipeline()
    probed = with_latency_probe(original)
    assert PROBE_NODE_ID not in original.nodes
    assert set(probed.nodes) == {"level", "vad", PROBE_NODE_ID}
    probe = probed.node(PROBE_NODE_ID)
    ping = JsonData({"kind": "rm.ping", "id": 1})
    assert probe.process(ping) is ping
    assert probe.process(JsonData({"kind": "other"})) is None
    assert probe.process(tone(0.1)) is None


def test_the_probed_copy_keeps_a_node_on_ray() -> None:
    """The copy stream() serves kept nodes but dropped their executors: a node given ``executor=rm.ray()``
    ran in the kernel once it was streamed."""
    original = level_vad_pipeline()
    original.add("meter", AudioLevel(), executor=ray(num_cpus=0))
    original.connect("level", "meter")
    probed = with_latency_probe(original)
    assert probed.executor("meter") == original.executor("meter") == ray(num_cpus=0)


def test_outputs_are_tapped_fed_to_the_plot_and_callbacks_and_pings_filtered() -> None:
    serve = FakeServe()
    seen: list[Any] = []
    h = stream_with(serve, level_vad_pipeline(), plot=["rms_dbfs"], on_output=seen.append, key="k2")
    frames: list[tuple[dict[str, Any], list[bytes]]] = []
    h.plot._data_sink = lambda message, buffers: frames.append((message, buffers))  # stands in for the comm
    try:
        session = open_browser_session(h, serve.pipelines[0])

        async def feed() -> None:
            for i in range(30):
                await session.send_input(tone(0.3 if i % 10 < 5 else 0.0))
            await session.send_input(JsonData({"kind": "rm.ping", "id": 7, "peer": "p"}))

        pipeline_loop().run(feed(), 5)
        wait_for(lambda: len(h.outputs) >= 60)
        kinds = {o.value.get("kind") for o in h.outputs}
        assert kinds == {"level", "vad"}  # the ping went back to the browser, not to the views
        assert len(seen) == len(h.outputs)
        wait_for(lambda: len(frames) >= 1)
        message, buffers = frames[-1]  # the widget draws the data: no PNG is rendered in the kernel
        assert message["series"] == ["rms_dbfs"] and message["window_s"] == 10.0
        xy = np.frombuffer(buffers[0], dtype=np.float32).reshape(-1, 2)
        assert len(xy) >= 1 and (xy[:, 0] <= 0).all() and (xy[:, 1] <= 0).all()
        assert h.plot.last_png is None
        assert h.plot.latest("rms_dbfs") is not None
        m = h.metrics()
        assert m["nodes"]["level"]["frames_in"] == 30 and PROBE_NODE_ID not in m["nodes"]
        assert m["sessions"] == 1 and m["display"]["outputs"] >= 60
    finally:
        h.close()
        pipeline_loop().run(session.close(), 5)
    assert serve.sessions[0].closed
    assert display_threads() == []


def test_plot_updates_are_throttled_under_a_flood() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), plot=["rms_dbfs"], key="k3", options=StreamOptions(plot_fps=5))
    frames: list[Any] = []
    h.plot._data_sink = lambda message, buffers: frames.append(message)
    try:
        session = open_browser_session(h, serve.pipelines[0])
        t0 = time.monotonic()

        async def flood() -> None:
            import asyncio

            async def drain() -> None:  # what the transport's bridge does with session outputs
                while await session.receive_output() is not None:
                    pass

            drainer = asyncio.ensure_future(drain())
            for _ in range(400):
                await session.send_input(tone(0.2))
            await session.end_input()
            await drainer

        pipeline_loop().run(flood(), 10)
        wait_for(lambda: len(h.outputs) >= 500, timeout=10)
        elapsed = time.monotonic() - t0
        assert 1 <= len(frames) <= 5 * elapsed + 2, (len(frames), elapsed)
    finally:
        h.close()
        pipeline_loop().run(session.close(), 5)


def test_rerunning_the_same_cell_closes_the_previous_stream() -> None:
    serve = FakeServe()
    handles = [stream_with(serve, level_vad_pipeline(), key="cell:abc") for _ in range(3)]
    try:
        assert [h.closed for h in handles] == [True, True, False]
        assert [ks.closed for ks in serve.sessions] == [True, True, False]
        assert handles[0].widget.closed and not handles[2].widget.closed
        assert live_handles() == [handles[2]]
        assert len(display_threads()) == 1
    finally:
        handles[2].close()
    assert live_handles() == [] and display_threads() == []


def test_closing_the_widget_closes_the_handle() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), key="k4")
    h.widget.close()
    assert h.closed and serve.sessions[0].closed
    assert display_threads() == []


def test_esm_is_one_module_with_a_default_render_export() -> None:
    entry = Path(__file__).parents[2] / "remotemedia_nbrtc" / "widget" / "js" / "widget.js"
    assert "export default { render }" in entry.read_text()
    text = StreamWidget._esm
    assert isinstance(text, str) and text.count("\nexport default ") == 1
    assert not re.search(r"^\s*import\b", text, re.M)  # one module: nothing left to fetch
    for method in ("peer.announce", "peer.offer", "peer.ice_candidate", "remotemedia/status"):
        assert method in text
    assert "echoCancellation: false" in text and "autoGainControl: false" in text


def test_set_params_changes_live_sessions_and_later_ones() -> None:
    serve = FakeServe()
    p = Pipeline("gain")
    from remotemedia_nbrtc.nodes import Gain

    p.add("gain", Gain(gain_db=0.0))
    h = stream_with(serve, p, plot=False, key="params")
    first = open_browser_session(h, serve.pipelines[0])
    later = None
    try:
        async def level_of_one() -> float:
            await first.send_input(tone(0.5))
            out = await first.receive_output(timeout=2)
            return float(np.abs(out.samples).max())

        assert abs(pipeline_loop().run(level_of_one(), 5) - 0.5) < 1e-3
        h.set_params("gain", gain_db=-6.0206)
        assert abs(pipeline_loop().run(level_of_one(), 5) - 0.25) < 1e-3
        later = open_browser_session(h, serve.pipelines[0])  # a reconnecting browser keeps the change
        assert later.node("gain").gain_db == -6.0206
        with pytest.raises(AttributeError):
            h.set_params("gain", volume=3)
        with pytest.raises(KeyError):
            h.set_params("nope", gain_db=1)
    finally:
        h.close()
        for session in (first, later):
            if session is not None:
                pipeline_loop().run(session.close(), 5)


def test_a_frame_callback_or_a_plain_function_is_the_pipeline() -> None:
    import threading as _threading

    seen: list[tuple[str, str]] = []

    def loudness(frame: AudioData) -> dict[str, float]:
        seen.append((type(frame).__name__, _threading.current_thread().name))
        return {"rms": float(np.sqrt(np.mean(frame.samples.astype(np.float64) ** 2)))}

    for kwargs in ({"audio_frame_callback": loudness}, {"pipeline": loudness}):
        serve = FakeServe()
        h = stream_with(serve, **kwargs, plot=["rms"], key=f"cb-{len(kwargs)}-{sorted(kwargs)[0]}")
        session = open_browser_session(h, serve.pipelines[0])
        try:
            async def feed(session: Any = session) -> None:
                for _ in range(5):
                    await session.send_input(tone(0.5))

            pipeline_loop().run(feed(), 5)
            wait_for(lambda h=h: len(h.outputs) >= 5)
            rms = [o.value["rms"] for o in h.outputs]
            assert all(abs(r - 0.5 / np.sqrt(2)) < 0.02 for r in rms), rms
            assert h.plot.latest("rms") is not None  # the dict was plotted
        finally:
            h.close()
            pipeline_loop().run(session.close(), 5)
    assert {name for name, _ in seen} == {"AudioData"}
    assert not any("pipeline" in thread or "rtc" in thread for _, thread in seen), seen  # a worker thread
    with pytest.raises(TypeError, match="not both"):
        stream_with(FakeServe(), level_vad_pipeline(), audio_frame_callback=loudness)
    with pytest.raises(TypeError, match="needs a pipeline"):
        stream_with(FakeServe())
    with pytest.raises(TypeError, match=r"not the node class AudioLevel: give it AudioLevel\(...\)"):
        stream_with(FakeServe(), AudioLevel)


def test_record_writes_the_incoming_audio_to_a_wav_file_per_session(tmp_path: Path) -> None:
    import wave

    serve = FakeServe()
    out = tmp_path / "rec" / "session.wav"
    h = stream_with(serve, level_vad_pipeline(), record=str(out), key="rec")
    try:
        for n_frames, name in ((5, "session.wav"), (3, "session-2.wav")):  # a reconnect: a second session
            session = open_browser_session(h, serve.pipelines[0])

            async def feed(n: int = n_frames, session: Any = session) -> None:
                for _ in range(n):
                    await session.send_input(tone(0.5))
                await session.send_input(JsonData({"kind": "not audio"}))

            pipeline_loop().run(feed(), 5)
            wait_for(lambda n=n_frames: sum(o.value.get("kind") == "level" for o in h.outputs) >= n)

            recorder = session.node("_rm_recorder")
            wait_for(lambda n=n_frames, r=recorder: r.frames_written >= n * 960)
            pipeline_loop().run(session.close(), 5)
            with wave.open(str(out.with_name(name))) as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
                pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            assert len(pcm) == n_frames * 960
            assert abs(np.abs(pcm).max() / 32767 - 0.5) < 0.01  # the tone's amplitude, not silence
            h.outputs.clear()
        assert "_rm_recorder" not in {type(o).__name__ for o in h.outputs}
    finally:
        h.close()

def test_pings_reach_the_probe_only_and_user_inputs_skip_it() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), plot=False, key="ping-routing")
    try:
        session = open_browser_session(h, serve.pipelines[0])

        async def feed() -> None:
            for i in range(3):
                await session.send_input(JsonData({"kind": "rm.ping", "id": i, "peer": "p"}))
            await session.send_input(tone(0.3))
            await session.send_input(JsonData({"kind": "user-json"}))

        pipeline_loop().run(feed(), 5)
        echoed: list[Any] = []

        async def pings_back() -> None:
            while len(echoed) < 3:
                nid, data = await session.receive_output_from()
                if nid == PROBE_NODE_ID:
                    echoed.append(data.value["id"])

        pipeline_loop().run(pings_back(), 5)
        assert echoed == [0, 1, 2]
        nodes = pipeline_loop().run(_metrics(session), 5)
        assert nodes["level"]["frames_in"] == 2  # the tone and the user's JSON, no ping
        assert nodes[PROBE_NODE_ID]["frames_in"] == 3  # the pings, no audio, no user JSON
    finally:
        h.close()
        pipeline_loop().run(session.close(), 5)


async def _metrics(session: Any) -> dict[str, Any]:
    return session.metrics()


def test_each_browser_connect_gets_fresh_turn_credentials() -> None:
    from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig

    issued: list[str] = []

    def credentials() -> dict[str, str]:
        issued.append(f"user-{len(issued)}")
        return {"username": issued[-1], "credential": "secret"}

    ice = IceConfig(ice_servers=[{"urls": "turn:127.0.0.1:3478"}], credentials=credentials)
    h = stream_with(FakeServe(), level_vad_pipeline(), plot=False, key="turn-fresh",
                    options=StreamOptions(peer_config=PeerConfig(ice=ice)))
    sent: list[dict[str, Any]] = []
    h.widget.send = lambda content, buffers=None: sent.append(content)
    try:
        for request_id in (1, 2):  # what the widget sends before each RTCPeerConnection (connect, reconnect)
            h.widget._handle_custom_msg({"kind": "ice_request", "id": request_id}, [])
        assert [m["id"] for m in sent] == [1, 2]
        users = [m["servers"][0]["username"] for m in sent]
        assert users[0] != users[1] and users == issued[-2:], (users, issued)
        assert h.widget.ice_servers[0]["username"] == users[1]
    finally:
        h.close()


def test_media_file_is_sent_to_the_widget_and_a_wrong_path_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "clip.wav"
    f.write_bytes(b"RIFF....WAVE")
    h = stream_with(FakeServe(), level_vad_pipeline(), media_file=f, key="mf")
    try:
        assert h.widget.media_file == f.read_bytes() and h.widget.media_file_type in ("audio/wav", "audio/x-wav")
    finally:
        h.close()
    with pytest.raises(FileNotFoundError, match="no such file"):
        stream_with(FakeServe(), level_vad_pipeline(), media_file=tmp_path / "missing.mp3", key="mf2")
