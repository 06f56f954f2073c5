"""StreamOptions(transport=..., audio_transport=...): the media path settings reach the kernel peer config and
the widget; the widget's 13-byte WebSocket media header is byte-identical to the kernel's (checked by running
the widget's assembled ESM in node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from remotemedia_nbrtc import StreamOptions
from remotemedia_nbrtc.protocol.media_frames import pack_frame, unpack_frame
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
from remotemedia_nbrtc.widget import StreamWidget

from .test_stream import FakeServe, level_vad_pipeline, stream_with

pytestmark = pytest.mark.timeout(30)


def test_auto_is_the_default_with_a_5_s_webrtc_timeout() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), key="t0")
    try:
        config = serve.kwargs[0]["peer_config"]
        assert (config.transport, config.webrtc_timeout_s) == ("auto", 5.0)
        assert (h.widget.transport, h.widget.webrtc_timeout_s, h.widget.ice_transport_policy) == ("auto", 5.0, "all")
        assert h.widget.ws_audio_codec == "auto" and h.widget.ws_pcm_rate == 48000
        m = h.metrics()
        assert m["path"] is None and m["transport"] == {"setting": "auto", "webrtc_timeout_s": 5.0, "path": None,
                                                        "reason": None, "audio_setting": "auto", "audio": None}
        assert h.widget.audio_transport == "auto"
    finally:
        h.close()


def test_transport_and_timeout_reach_the_kernel_peer_and_the_widget() -> None:
    serve = FakeServe()
    h = stream_with(serve, level_vad_pipeline(), key="t1",
                    options=StreamOptions(transport="websocket", webrtc_timeout_s=1.5, ice_transport_policy="relay"))
    try:
        config = serve.kwargs[0]["peer_config"]
        assert (config.transport, config.webrtc_timeout_s) == ("websocket", 1.5)
        assert (h.widget.transport, h.widget.webrtc_timeout_s, h.widget.ice_transport_policy) == (
            "websocket", 1.5, "relay")
        # what the browser reports back is what metrics() says
        h.widget.path, h.widget.path_reason = "websocket", "forced by setting (transport='websocket')"
        m = h.metrics()
        assert m["path"] == "websocket"
        assert m["transport"]["reason"] == "forced by setting (transport='websocket')"
    finally:
        h.close()


def test_a_given_peer_config_decides_the_widget_setting() -> None:
    serve = FakeServe()
    config = PeerConfig(ice=IceConfig(loopback_only=True), transport="webrtc", webrtc_timeout_s=2.0)
    h = stream_with(serve, level_vad_pipeline(), key="t2",
                    options=StreamOptions(peer_config=config, transport="websocket"))
    try:
        assert serve.kwargs[0]["peer_config"] is config
        assert (h.widget.transport, h.widget.webrtc_timeout_s) == ("webrtc", 2.0)
    finally:
        h.close()


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        stream_with(FakeServe(), level_vad_pipeline(), key="t3", options=StreamOptions(transport="udp"))
    with pytest.raises(ValueError, match="audio_transport"):
        stream_with(FakeServe(), level_vad_pipeline(), key="t3", options=StreamOptions(audio_transport="sctp"))


def test_audio_transport_setting_and_what_the_browser_chose() -> None:
    h = stream_with(FakeServe(), level_vad_pipeline(), key="t4", options=StreamOptions(audio_transport="datachannel"))
    try:
        assert h.widget.audio_transport == "datachannel"
        h.widget.browser_stats = {"audio_transport": "datachannel"}
        assert (h.metrics()["transport"]["audio_setting"], h.metrics()["transport"]["audio"]) == ("datachannel",) * 2
    finally:
        h.close()


def node_or_fail() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the widget's JavaScript (apt-get install nodejs)", pytrace=False)
    return node


def widget_module(tmp_path: Path) -> Path:
    """The ESM the browser gets (``StreamWidget._esm``), as a file node can import."""
    module = tmp_path / "widget.mjs"
    module.write_text(StreamWidget._esm, encoding="utf-8")
    return module


JS_AUDIO_TRANSPORT = """
const m = await import(process.argv[1]);
const out = {};
for (const [setting, loopback, host] of JSON.parse(process.argv[2])) out[[setting, loopback, host].join("|")] =
  m.resolveAudioTransport(setting, loopback, host);
console.log(JSON.stringify(out));
"""


def test_auto_audio_transport_picks_the_data_channel_only_on_this_machine(tmp_path: Path) -> None:
    module = widget_module(tmp_path)
    cases = {("auto", False, "localhost"): "datachannel", ("auto", False, "127.0.0.1"): "datachannel",
             ("auto", False, "[::1]"): "datachannel", ("auto", False, "lab.localhost"): "datachannel",
             ("auto", True, "hub.example.org"): "datachannel", ("auto", False, "hub.example.org"): "rtp",
             ("auto", False, "127.0.0.1.example.org"): "rtp", ("auto", False, "10.0.0.5"): "rtp",
             ("rtp", True, "localhost"): "rtp", ("datachannel", False, "hub.example.org"): "datachannel"}
    run = subprocess.run([node_or_fail(), "--input-type=module", "-e", JS_AUDIO_TRANSPORT, str(module),
                          json.dumps([list(k) for k in cases])], capture_output=True, text=True, timeout=20, check=True)
    got = json.loads(run.stdout)
    for (setting, loopback, host), expected in cases.items():
        key = "|".join([setting, "true" if loopback else "false", host])
        assert got[key] == expected, (setting, loopback, host, got[key])


JS_FRAMES = """
const m = await import(process.argv[1]);
const out = [];
for (const [kind, seq, ts, payload] of JSON.parse(process.argv[2])) {
  const buf = m.packFrame(kind, seq, ts, new Uint8Array(payload));
  const back = m.unpackFrame(buf);
  out.push({ hex: Buffer.from(buf).toString("hex"), \
back: [back.kind, back.seq, back.ts_us, Array.from(back.payload)] });
}
console.log(JSON.stringify(out));
"""


def test_the_widget_header_matches_the_kernel_header(tmp_path: Path) -> None:
    node = node_or_fail()
    module = widget_module(tmp_path)
    cases = [[1, 0, 0, []], [2, 7, 1_700_000_000_123_456, [255, 0, 1]], [3, 2**32 + 5, 2**52, [1, 2, 3, 4]],
             [1, 2**32 - 1, 123, list(range(40))]]
    run = subprocess.run([node, "--input-type=module", "-e", JS_FRAMES, str(module), json.dumps(cases)],
                         capture_output=True, text=True, timeout=20, check=True)
    results = json.loads(run.stdout)
    for (kind, seq, ts, payload), got in zip(cases, results, strict=True):
        expected = pack_frame(kind, seq, ts, bytes(payload))
        assert bytes.fromhex(got["hex"]) == expected
        k, s, t, p = unpack_frame(expected)
        assert got["back"] == [k, s, t, list(p)]
