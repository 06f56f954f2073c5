import dataclasses
import inspect
import subprocess
import sys

import remotemedia_nbrtc


def test_all_is_sorted_and_every_name_is_exported():
    names = remotemedia_nbrtc.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(remotemedia_nbrtc, name), name
    public = {n for n in vars(remotemedia_nbrtc) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(names), public - set(names)


def test_stream_keeps_the_common_keywords_and_takes_the_rest_as_options():
    params = inspect.signature(remotemedia_nbrtc.stream).parameters
    assert list(params) == ["pipeline", "audio", "video", "audio_frame_callback", "video_frame_callback", "plot",
                            "text", "on_output", "show_stats", "loopback_only", "media_file", "record", "key",
                            "options"]
    assert not any(name.startswith("_") for name in params)  # no test seam in the public signature
    options = remotemedia_nbrtc.StreamOptions
    assert dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen
    assert not set(params) & {f.name for f in dataclasses.fields(options)}


def run_in_fresh_python(code: str) -> None:
    """Run ``code`` in a new interpreter (nothing imported yet); it fails by a non-zero exit."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_does_not_import_webrtc_or_jupyter():
    code = ("import sys, remotemedia_nbrtc, remotemedia_nbrtc.runtime, remotemedia_nbrtc.nodes;"
            "bad=[m for m in ('aiortc','aioice','tornado','ipywidgets','anywidget') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    run_in_fresh_python(code)


def test_transport_exports_load_lazily_and_resolve():
    code = ("import sys, remotemedia_nbrtc.transport as t; assert 'aiortc' not in sys.modules;"
            "assert t.__all__ == sorted(t.__all__); [getattr(t, n) for n in t.__all__];"
            "assert 'aiortc' in sys.modules")
    run_in_fresh_python(code)


def test_standalone_exports_load_lazily_and_resolve():
    code = ("import sys, remotemedia_nbrtc.standalone as s; assert 'aiortc' not in sys.modules;"
            "assert s.__all__ == sorted(s.__all__); [getattr(s, n) for n in s.__all__];"
            "assert 'aiortc' in sys.modules")
    run_in_fresh_python(code)


def test_peer_settings_do_not_import_webrtc():
    code = ("import sys; from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig;"
            "PeerConfig(ice=IceConfig(loopback_only=True));"
            "bad=[m for m in ('aiortc','aioice','av') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    run_in_fresh_python(code)
