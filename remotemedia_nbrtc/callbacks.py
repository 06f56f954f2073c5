"""Per-frame callbacks as a pipeline: ``rm.stream(audio_frame_callback=fn)`` or ``rm.stream(fn)``.

What users of streamlit-webrtc and fastrtc expect: no manifest, one function called with each frame. The
function runs on the node's own worker thread (never on the RTC or pipeline loop). Its return value is the
node's output: ``None`` (nothing), a frame or any :class:`~.runtime.RuntimeData` (an ``AudioData`` /
``VideoData`` goes back to the browser, e.g. processed audio), a ``dict`` (JSON: plotted and shown), a ``str``
(a text line), or a list of those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .runtime import AudioData, JsonData, Node, Pipeline, RuntimeData, TextData, VideoData

__all__ = ["CALLBACK_NODE_ID", "FrameCallbackNode", "callback_pipeline"]

#: node id of the callback node in the pipeline :func:`callback_pipeline` makes
CALLBACK_NODE_ID = "callback"

FrameCallback = Callable[[Any], Any]


def _as_output(value: Any) -> Any:
    if value is None or isinstance(value, RuntimeData):
        return value
    if isinstance(value, dict):
        return JsonData(value)
    if isinstance(value, str):
        return TextData(value)
    if isinstance(value, (list, tuple)):
        return [o for o in (_as_output(v) for v in value) if o is not None]
    raise TypeError(
        f"a frame callback returned {type(value).__name__}; expected None, RuntimeData, dict, str or a list"
    )


class FrameCallbackNode(Node, register=False):
    """Calls ``audio(frame)`` for each ``AudioData``, ``video(frame)`` for each ``VideoData``, ``other(data)``
    for anything else (each optional; inputs without a callback are dropped)."""

    threaded = True  # user code: off the pipeline loop

    def __init__(self, audio: FrameCallback | None = None, video: FrameCallback | None = None,
                 other: FrameCallback | None = None) -> None:
        if audio is None and video is None and other is None:
            raise ValueError("FrameCallbackNode needs at least one callback")
        for name, fn in (("audio", audio), ("video", video), ("other", other)):
            if fn is not None and not callable(fn):
                raise TypeError(f"the {name} callback must be callable, not {type(fn).__name__}")
        self._audio, self._video, self._other = audio, video, other
        self.calls = 0

    def process(self, data: RuntimeData) -> Any:
        fn = self._audio if isinstance(data, AudioData) else self._video if isinstance(data, VideoData) else self._other
        if fn is None:
            return None
        self.calls += 1
        return _as_output(fn(data))


def callback_pipeline(audio: FrameCallback | None = None, video: FrameCallback | None = None,
                      other: FrameCallback | None = None) -> Pipeline:
    """A one-node pipeline around the callbacks (see :class:`FrameCallbackNode`)."""
    p = Pipeline("frame-callback")
    p.add(CALLBACK_NODE_ID, FrameCallbackNode(audio=audio, video=video, other=other))  # keywords: sessions clone it
    return p
