"""ReplyOnPause over real aiortc peers: the client says something, pauses, and hears the spoken reply."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

import remotemedia_nbrtc as rm
from remotemedia_nbrtc.nodes.speech import PocketSphinxEngine
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, synthesize, word_accuracy, write_wav
from remotemedia_nbrtc.transport.sources import WavFileSource

from ._peer_helpers import LOOPBACK, start_server

pytestmark = pytest.mark.timeout(90)

REPLY = "turn on the kitchen lights"
OUT_RATE = 48000


def loud_span(samples: np.ndarray, rate: int, threshold: float = 0.01) -> tuple[float, float] | None:
    hop = rate // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > threshold)
    return None if not loud.size else (loud[0] / 100, (loud[-1] + 1) / 100)


async def test_client_hears_the_spoken_reply_after_its_utterance(tmp_path: Path) -> None:
    said = synthesize("hello there", rate=16000)
    lead_s, tail_s = 0.5, 5.0
    silence = [np.zeros(int(s * 16000), np.float32) for s in (lead_s, tail_s)]
    signal = np.concatenate([silence[0], said, silence[1]])
    wav = write_wav(tmp_path / "said.wav", signal, 16000)
    speech_end = lead_s + loud_span(said, 16000)[1]  # type: ignore[index]
    calls: list[float] = []

    def reply(audio: rm.AudioData) -> str:
        calls.append(audio.duration_s)
        return REPLY

    pipeline = rm.Pipeline("turns")
    pipeline.add("reply", rm.ReplyOnPause(reply))
    server = await start_server(pipeline, peer={"send_audio": True, "send_video": False, "audio_out_rate": OUT_RATE})
    source = WavFileSource(wav)
    client = await ClientPeer.connect(server.url, audio=source, ice=LOOPBACK)
    try:
        deadline = time.monotonic() + len(signal) / 16000 + 20
        while source.readyState == "live" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        out = (await client.call("media.stats"))["audio_out"]
        received = client.received_audio_samples()[:, 0]
    finally:
        await client.close()
        await server.stop()

    assert len(calls) == 1, calls  # one utterance, one reply
    # released in step with the input: the return track never trimmed or dropped any of it
    assert out["trimmed_samples"] == 0 and out["dropped_samples"] == 0 and out["samples_in"] > OUT_RATE, out
    span = loud_span(received, OUT_RATE)
    assert span is not None, "no reply audio reached the client"
    onset, end = span
    # the two tracks start together at connection: the reply begins after the pause, within a second of it
    assert speech_end + 0.4 < onset < speech_end + 0.6 + 1.5, (onset, speech_end)
    assert 1.0 < end - onset < 4.0, (onset, end)
    reply_audio = received[int(onset * OUT_RATE):int(end * OUT_RATE)]
    assert np.sqrt(np.mean(reply_audio**2)) > 0.01

    from scipy.signal import resample_poly

    engine = PocketSphinxEngine(phrases=list(HOME_COMMANDS))
    engine.start()
    pcm = resample_poly(np.concatenate([np.zeros(8000), reply_audio, np.zeros(16000)]), 1, 3).astype(np.float32)
    finals = [t.text for t in engine.accept_audio(pcm) if t.final] + [t.text for t in engine.finish() if t.final]
    engine.close()
    assert word_accuracy(REPLY, " ".join(finals)) >= 0.6, finals
    print(f"reply heard {onset - speech_end:.2f} s after the end of speech (pause 0.6 s), lasting {end - onset:.2f} s")
