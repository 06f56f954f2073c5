"""ReplyOnPause with real speech (espeak-ng) through a StreamSession: one reply per utterance, after the pause,
spoken by hibari (24 kHz) so that pocketsphinx recognises it; barge-in; errors; ``rm.stream(node)``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

import remotemedia_nbrtc as rm
from remotemedia_nbrtc.nodes.speech import PocketSphinxEngine
from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, synthesize, word_accuracy

pytestmark = pytest.mark.timeout(90)

RATE = 16000
FRAME = RATE // 50  # 20 ms, what a browser sends
REPLY = "turn on the kitchen lights"


def speech_span(samples: np.ndarray, rate: int, threshold: float = 0.01) -> tuple[float, float]:
    """(first, last) second where 10 ms frames have RMS above ``threshold``."""
    hop = rate // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > threshold)
    return loud[0] / 100, (loud[-1] + 1) / 100


async def run(node: rm.ReplyOnPause, signal: np.ndarray, *, speed: float = 4.0) -> tuple[list[rm.RuntimeData], dict]:
    """Feed ``signal`` in 20 ms frames at ``speed`` x real time, end the input, return outputs and metrics."""
    pipeline = rm.Pipeline("turns")
    pipeline.add("reply", node)
    session = await rm.PipelineRunner().create_stream_session(pipeline)
    if isinstance(node.reply, Recorder):
        node.reply.node = session.node("reply")  # type: ignore[assignment]
    outputs: list[rm.RuntimeData] = []

    async def drain() -> None:
        while (item := await session.receive_output(timeout=60)) is not None:
            outputs.append(item)

    try:
        task = asyncio.create_task(drain())
        for i in range(0, len(signal), FRAME):
            await session.send_input(rm.AudioData(signal[i:i + FRAME], RATE))
            await asyncio.sleep(0.02 / speed)
        await session.end_input()
        await task
        metrics = session.metrics()["reply"]
    finally:
        await session.close()
    alive = [t.name for t in threading.enumerate() if t.name in ("rm-reply-on-pause", "rm-node-reply")]
    assert not alive, f"threads left after close: {alive}"
    return outputs, metrics


class Recorder:
    """A reply function that records when (on the node's input clock) and with what it was called."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.node: rm.ReplyOnPause | None = None
        self.calls: list[tuple[float, float, str]] = []

    def __call__(self, audio: rm.AudioData) -> Any:
        assert audio.sample_rate == RATE and audio.channels == 1
        clock = self.node_clock()  # the session's copy of the node
        self.calls.append((clock, audio.duration_s, threading.current_thread().name))
        return self.answer(audio) if callable(self.answer) else self.answer

    def node_clock(self) -> float:
        assert self.node is not None, "run() sets the session's node"
        return self.node.input_time_s


async def test_one_spoken_reply_per_utterance_after_the_pause() -> None:
    first, second = synthesize("hello there"), synthesize("what is the weather today")
    lead, gap, tail = 0.5, 2.6, 2.5
    signal = np.concatenate([np.zeros(int(lead * RATE), np.float32), first, np.zeros(int(gap * RATE), np.float32),
                             second, np.zeros(int(tail * RATE), np.float32)])
    ends = [lead + speech_span(first, RATE)[1], lead + len(first) / RATE + gap + speech_span(second, RATE)[1]]
    recorder = Recorder(REPLY)
    # in real time: reply audio is never released faster than that, and must end before the next utterance
    outputs, metrics = await run(rm.ReplyOnPause(recorder, pause_ms=600), signal, speed=1.0)

    assert len(recorder.calls) == 2, recorder.calls
    for (clock, utterance_s, thread), end, spoken in zip(recorder.calls, ends, (first, second)):
        # called once the caller had paused for pause_ms (VAD frames are 30 ms), never before
        assert end + 0.55 <= clock <= end + 0.6 + 0.25, (clock, end)
        assert utterance_s >= speech_span(spoken, RATE)[1] - speech_span(spoken, RATE)[0], utterance_s
        assert thread == "rm-reply-on-pause"
    errors = [o for o in outputs if isinstance(o, rm.ErrorData)]
    assert not errors, errors
    assert [o.text for o in outputs if isinstance(o, rm.TextData)] == [REPLY, REPLY]
    counters = metrics["counters"]
    assert counters["utterances"] == 2 and counters["replies"] == 2 and counters["interrupted"] == 0, counters

    audio = [o for o in outputs if isinstance(o, rm.AudioData)]
    assert {a.sample_rate for a in audio} == {24000} and {a.channels for a in audio} == {1}
    speech = np.concatenate([a.samples[:, 0] for a in audio])
    assert 2 * 1.0 < len(speech) / 24000 < 2 * 4.0, len(speech) / 24000  # two spoken replies
    assert abs(counters["reply_audio_s"] - len(speech) / 24000) < 0.01
    frames = speech[: len(speech) // 240 * 240].reshape(-1, 240)
    rms = np.sqrt((frames**2).mean(axis=1))
    assert rms.max() > 0.02 and (rms < rms.max() * 0.05).any()  # loud syllables and quiet gaps
    assert np.flatnonzero(rms > 0.01)[0] < 10, "the voice's leading silence is trimmed: speech within 0.1 s"
    # released in step with the input (pieces of about a frame each), not as one block
    assert max(a.duration_s for a in audio) <= 0.05, max(a.duration_s for a in audio)

    from scipy.signal import resample_poly

    engine = PocketSphinxEngine(phrases=list(HOME_COMMANDS))
    engine.start()
    finals = [t.text for t in engine.accept_audio(resample_poly(speech, 2, 3).astype(np.float32)) if t.final]
    finals += [t.text for t in engine.finish() if t.final]
    engine.close()
    assert word_accuracy(f"{REPLY} {REPLY}", " ".join(finals)) >= 0.6, finals


async def test_new_speech_interrupts_the_reply_and_is_answered() -> None:
    tone = rm.AudioData(0.3 * np.sin(2 * np.pi * 440 * np.arange(5 * 24000) / 24000).astype(np.float32), 24000)
    said = synthesize("stop the music")
    signal = np.concatenate([np.zeros(RATE // 2, np.float32), said, np.zeros(int(2.0 * RATE), np.float32), said,
                             np.zeros(int(1.5 * RATE), np.float32)])

    def answer(audio: rm.AudioData) -> Any:
        yield None  # a generator: each piece goes out when ready
        yield tone

    recorder = Recorder(answer)
    outputs, metrics = await run(rm.ReplyOnPause(recorder, tts=False), signal)
    counters = metrics["counters"]
    assert len(recorder.calls) == 2 and counters["utterances"] == 2, (recorder.calls, counters)
    assert counters["interrupted"] == 1 and counters["replies"] == 2, counters
    sent = sum(o.duration_s for o in outputs if isinstance(o, rm.AudioData))
    # the first reply played only until the second utterance began (at most its 2 s minus the pause; fed at
    # 4x real time, and reply audio goes out at most in real time, so about a quarter of that), the second in
    # full (flushed at end of stream)
    assert 5.0 + 0.1 < sent < 5.0 + 2.0, sent


async def test_speech_during_a_reply_is_ignored_without_interrupt() -> None:
    tone = rm.AudioData(0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * 24000) / 24000).astype(np.float32), 24000)
    said = synthesize("stop the music")
    signal = np.concatenate([np.zeros(RATE // 2, np.float32), said, np.zeros(RATE, np.float32), said,
                             np.zeros(4 * RATE, np.float32)])
    recorder = Recorder(tone)
    outputs, metrics = await run(rm.ReplyOnPause(recorder, tts=False, interrupt=False), signal)
    counters = metrics["counters"]
    assert len(recorder.calls) == 1 and counters["ignored"] == 1 and counters["interrupted"] == 0, counters
    assert abs(sum(o.duration_s for o in outputs if isinstance(o, rm.AudioData)) - 4.0) < 0.01


async def test_a_failing_reply_is_an_error_output_and_the_next_turn_works() -> None:
    said = synthesize("open the garage door")
    signal = np.concatenate([said, np.zeros(RATE, np.float32), said, np.zeros(RATE, np.float32)])
    answers = iter([ValueError("no idea"), "text without tts"])

    def answer(audio: rm.AudioData) -> Any:
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    outputs, metrics = await run(rm.ReplyOnPause(answer, tts=False), signal)
    errors = [o for o in outputs if isinstance(o, rm.ErrorData)]
    assert len(errors) == 2 and "no idea" in errors[0].message and "tts=False" in errors[1].message, errors
    assert metrics["counters"]["errors"] == 2 and metrics["counters"]["utterances"] == 2


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="reply must be a function"):
        rm.ReplyOnPause("hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vad"):
        rm.ReplyOnPause(lambda a: None, vad="energy")
    with pytest.raises(ValueError, match="pause_ms"):
        rm.ReplyOnPause(lambda a: None, pause_ms=0)


def test_stream_accepts_one_node_as_the_pipeline() -> None:
    from remotemedia_nbrtc.stream import _pipeline_from_callbacks

    node = rm.ReplyOnPause(lambda audio: "you said something")
    pipeline = rm.load_manifest(_pipeline_from_callbacks(node, None, None))
    assert list(pipeline.nodes.values()) == [node]
    assert pipeline.audio_input is not None and pipeline.audio_input.sample_rate == RATE
    clone = node.fresh_copy()  # what each session runs: the reply function comes along
    assert clone.reply is node.reply and clone.pause_ms == node.pause_ms
