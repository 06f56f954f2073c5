"""Speech to text through the real transport: espeak-ng sentences -> WAV -> ClientPeer (Opus, real time)
-> standalone WebRTCServer (loopback ICE) -> WebRTCVAD -> SpeechGate -> PocketSphinxSTT(phrases) -> data channel.

The use-case bar: word accuracy >= 75 % and real-time factor <= 0.3 with a phrase-list vocabulary.
RTF here is the STT node's own wall-clock processing time (inside ``process``/``flush``) over the
streamed audio's duration; the CPU-time RTF of the STT thread is asserted too.
"""

from __future__ import annotations

import numpy as np
import pytest

from remotemedia_nbrtc.nodes.speech import PocketSphinxEngine
from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, normalize_words, synthesize
from remotemedia_nbrtc.testing.stt_webrtc import measure_stt_over_webrtc_async, webrtc_track
from tests.tools import require_tools

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _needs_espeak() -> None:
    require_tools("espeak-ng", hint="apt-get install espeak-ng (see .ci/setup)")


async def test_phrase_list_stt_over_webrtc_is_accurate_and_real_time() -> None:
    track = webrtc_track(HOME_COMMANDS)  # generated now: 12 sentences, 1 s lead, 0.8 s between
    assert len(track.sentences) >= 10 and track.samples[:16000].max() == 0
    m = await measure_stt_over_webrtc_async(track=track, phrases=HOME_COMMANDS, gate=True)
    print("\n" + m.summary(), "| finals:", m.finals, "| stt:", m.extra)

    assert m.accuracy >= 0.75, m.finals
    assert m.rtf <= 0.3 and m.cpu_rtf <= 0.3, (m.rtf, m.cpu_rtf)
    # the audio really went through the transport: the recogniser saw the gated speech, not silence
    speech_s = sum(b - a for a, b in track.spans_ms) / 1000
    assert speech_s < m.extra["stt_audio_s"] < m.audio_s, m.extra
    metrics = m.extra["stt_metrics"]
    assert metrics["errors"] == 0 and metrics["frames_in"] > 500
    # one final per spoken sentence (the gate flushes each segment), each on its own sentence, in order
    finals = [e for e in m.events if e["final"] and e["text"]]
    assert 10 <= len(finals) <= 14, m.finals
    assert all(e["mode"] == "phrases" and e["engine"] == "pocketsphinx" for e in finals)
    vocabulary = {w for s in HOME_COMMANDS for w in normalize_words(s)}
    assert {w for f in m.finals for w in normalize_words(f)} <= vocabulary
    assert [e["start_ms"] for e in finals] == sorted(e["start_ms"] for e in finals)


def test_engine_finish_with_an_empty_final_frame() -> None:
    """Regression: pocketsphinx's Endpointer.end_stream(b"") raised IndexError when the audio fed so far
    was a whole number of endpointer frames (a SpeechGate flush after 20 ms chunks hit it)."""
    engine = PocketSphinxEngine(phrases=list(HOME_COMMANDS))
    engine.start()
    speech = np.concatenate([np.zeros(8000, np.float32), synthesize("stop the music")])
    frame = engine._ep.frame_bytes // 2
    engine.accept_audio(speech[: len(speech) // frame * frame])
    assert not engine._pending and engine.in_utterance
    finals = [t for t in engine.finish() if t.final]
    assert len(finals) == 1 and not engine.in_utterance
    engine.close()
