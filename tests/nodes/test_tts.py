"""KokoroTTSNode (hibari's bundled af_heart voice): real synthesized speech, recognised by pocketsphinx."""

from __future__ import annotations

import numpy as np
import pytest

from remotemedia_nbrtc import AudioData, ManifestError, PipelineRunner, TextData, load_manifest
from remotemedia_nbrtc.nodes import HibariTTS
from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, word_accuracy

pytestmark = pytest.mark.timeout(60)

SENTENCES = ["turn on the kitchen lights", "set the thermostat to twenty degrees"]


def manifest() -> dict:
    return {"version": "v1", "metadata": {"name": "tts-stt"},
            "nodes": [{"id": "tts", "node_type": "KokoroTTSNode",
                       "params": {"lang_code": "a", "voice": "af_heart", "speed": 1.0, "sample_rate": 24000,
                                  "stream_chunks": True}},
                      {"id": "stt", "node_type": "PocketSphinxSTTNode", "params": {"phrases": list(HOME_COMMANDS)}}],
            "connections": [{"from": "tts", "to": "stt"}]}


def test_speech_is_24k_mono_and_speech_like() -> None:
    out = list(HibariTTS(stream_chunks=False).process(TextData("turn on the kitchen lights.")))
    assert len(out) == 1 and isinstance(out[0], AudioData) and out[0].sample_rate == 24000
    assert out[0].samples.shape[1] == 1
    wav = out[0].samples[:, 0]
    assert 0.8 < len(wav) / 24000 < 4.0, len(wav)
    assert list(HibariTTS().process(TextData("shown only", channel="ui"))) == []  # ui text is not spoken
    frames = wav[: len(wav) // 240 * 240].reshape(-1, 240)  # 10 ms frames
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms.max() > 0.02 and (rms < rms.max() * 0.05).any()  # loud syllables and quiet gaps


async def test_upstream_kokoro_manifest_speaks_words_pocketsphinx_recognises() -> None:
    session = await PipelineRunner().create_stream_session(load_manifest(manifest()))
    finals: list[str] = []
    try:
        for sentence in SENTENCES:
            await session.send_input(TextData(sentence))
        await session.end_input()
        while (item := await session.receive_output(timeout=30)) is not None:
            if isinstance(item, TextData):
                finals.append(item.text)
    finally:
        await session.close()
    heard = " ".join(finals)
    assert word_accuracy(" ".join(SENTENCES), heard) >= 0.75, (finals, SENTENCES)


def test_only_the_bundled_voice_is_accepted() -> None:
    m = manifest()
    m["nodes"][0]["params"]["voice"] = "af_bella"
    with pytest.raises(ManifestError, match="af_heart"):
        load_manifest(m)
