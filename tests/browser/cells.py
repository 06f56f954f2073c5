"""Notebook cell sources that several browser tests run."""

from __future__ import annotations

#: ``p``: 16 kHz mono, 100 ms chunks, their level; an energy VAD whose speech start/end come back as text
VAD_PIPELINE = """\
from remotemedia_nbrtc import StreamOptions, stream
from remotemedia_nbrtc.runtime import Node, Pipeline, TextData
from remotemedia_nbrtc.nodes import AudioChunker, AudioLevel, EnergyVAD, FastResample

class SpeechEvents(Node):
    def process(self, data):
        v = getattr(data, "value", None)
        if isinstance(v, dict) and v.get("is_speech_start"):
            return TextData("speech started", channel="ui")
        if isinstance(v, dict) and v.get("is_speech_end"):
            return TextData("speech ended", channel="ui")
        return None

p = Pipeline("demo")
p.add("resample", FastResample(target_rate=16000, channels=1))
p.add("chunk", AudioChunker(chunk_size=1600))
p.add("level", AudioLevel())
p.add("vad", EnergyVAD(threshold_db=-40, passthrough=False), is_output_node=True)
p.add("events", SpeechEvents())
p.chain("resample", "chunk", "level")
p.connect("chunk", "vad").connect("vad", "events")
"""

#: ``p``: video made grey and flipped upside down, audio through a 0 dB gain
GREY_FLIP_GAIN = """\
from remotemedia_nbrtc import StreamOptions, stream
from remotemedia_nbrtc.runtime import Pipeline
from remotemedia_nbrtc.nodes import Gain, VideoFlip, VideoGrayscale

p = Pipeline("grey-flip-gain")
p.add("grey", VideoGrayscale())             # audio passes through unchanged
p.add("flip", VideoFlip(direction="vertical"))
p.add("gain", Gain(gain_db=0.0), is_output_node=True)  # video passes through unchanged
p.chain("grey", "flip", "gain")
"""

#: the end of a SETUP cell: the tests wait for this line (``open_notebook(..., run_setup=True)``)
SETUP_OK = 'print("SETUP_OK")\n'

#: close the stream handle ``h``
CLOSE = "h.close()\nprint('CLOSED', h.closed)\n"
