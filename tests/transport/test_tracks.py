"""PipelineAudioTrack's standing backlog: late audio must not add latency for the rest of the stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.runtime import AudioData
from remotemedia_nbrtc.transport.tracks import PipelineAudioTrack

pytestmark = pytest.mark.timeout(30)

RATE = 48000
SPF = 960  # 20 ms


def _chunk(value: float = 0.25, n: int = SPF) -> AudioData:
    return AudioData(np.full((n, 1), value, np.float32), RATE)


def _jittered_push_times(seconds: float, seed: int = 7) -> np.ndarray:
    """When a real-time producer hands over each 20 ms frame: mid-period, +-4 ms jitter, and every
    ~1.5 s a stall of 25-70 ms after which the held frames arrive together (a burst)."""
    rng = np.random.default_rng(seed)
    n = int(seconds / 0.02)
    times = np.arange(n) * 0.02 + 0.010 + rng.normal(0, 0.004, n)
    for start in np.arange(1.0, seconds - 1, 1.5):
        stall_end = start + rng.uniform(0.025, 0.070)
        hit = (times >= start) & (times < stall_end)
        times[hit] = stall_end
    return np.maximum.accumulate(times)


def _simulate(track: PipelineAudioTrack, push_times: np.ndarray, seconds: float) -> list[float]:
    """Fake clock: ticks every 20 ms take one frame; before each, push what the producer has handed
    over by then. Returns the backlog (ms) left after each tick."""
    backlog = []
    i = 0
    for k in range(int(seconds / 0.02)):
        now = k * 0.02
        while i < len(push_times) and push_times[i] <= now:
            track.push(_chunk())
            i += 1
        track.take_frame()
        backlog.append(track.queued_s * 1000)
    return backlog


def _conserved(track: PipelineAudioTrack) -> bool:
    s = track.stats()
    return s["samples_in"] == (
        s["samples_sent"] + s["trimmed_samples"] + s["dropped_samples"] + s["flushed_samples"] + s["queued_samples"]
    )


def _stalled_push_times(seconds: float, stalls: dict[float, float]) -> np.ndarray:
    """A steady real-time producer (mid-period, +-2 ms) that stalls ``{at_s: length_s}`` and then
    delivers the held frames at once -- as the bench's echo pipeline did once in a while."""
    rng = np.random.default_rng(3)
    n = int(seconds / 0.02)
    times = np.arange(n) * 0.02 + 0.010 + rng.uniform(-0.002, 0.002, n)
    for at, length in stalls.items():
        times[(times >= at) & (times < at + length)] = at + length
    return np.maximum.accumulate(times)


STALLS = {3.0: 0.060, 8.0: 0.180}


def test_without_trimming_a_stall_adds_latency_for_good() -> None:
    """The failure the bench saw (control for the next test): the silence sent during a stall is
    never caught up, so the stall's length stays as extra latency for the rest of the stream."""
    track = PipelineAudioTrack(RATE, target_ms=None)
    backlog = _simulate(track, _stalled_push_times(20, STALLS), 20)
    assert min(backlog[-250:]) >= 160
    assert track.trimmed_frames == 0


def test_stall_backlog_is_trimmed_back_to_target() -> None:
    track = PipelineAudioTrack(RATE)
    backlog = _simulate(track, _stalled_push_times(20, STALLS), 20)
    assert max(backlog[-250:]) <= 20  # 9.2 s on: back to the target
    assert max(backlog[int(9.5 / 0.02) :]) <= 20  # within about a second of the stall
    assert track.trimmed_frames >= 9  # 60 + 180 ms of late audio, minus what the target keeps
    assert track.trimmed_samples == track.trimmed_frames * SPF
    assert track.stats()["trimmed_frames"] == track.trimmed_frames
    assert _conserved(track)  # nothing dropped silently


def test_standing_backlog_stays_bounded_with_jittered_bursty_producer() -> None:
    track = PipelineAudioTrack(RATE)
    backlog = _simulate(track, _jittered_push_times(60), 60)
    late = np.array(backlog[250:])  # after the first 5 s
    assert track.silent_frames > 10  # the producer really did underrun
    assert np.median(late) <= 20
    assert np.percentile(late, 99) <= 80
    assert max(backlog[-250:]) <= 80
    assert track.trimmed_frames > 0
    assert _conserved(track)


def test_target_is_configurable() -> None:
    track = PipelineAudioTrack(RATE, target_ms=60)
    backlog = _simulate(track, _jittered_push_times(60), 60)
    late = np.array(backlog[250:])
    assert 20 <= np.median(late) <= 100
    assert _conserved(track)


def test_bulk_audio_faster_than_real_time_is_never_trimmed() -> None:
    """A TTS-like burst (3 s pushed at once after silence) drains at real time, untouched."""
    track = PipelineAudioTrack(RATE)
    for _ in range(20):
        track.take_frame()  # idle: silence
    for _ in range(150):
        track.push(_chunk())
    sent = 0
    for _ in range(200):
        if track.take_frame().any():
            sent += 1
    assert sent == 150
    assert track.trimmed_frames == 0 and track.dropped_samples == 0
    assert _conserved(track)


def test_overflow_and_flush_are_counted() -> None:
    track = PipelineAudioTrack(RATE, max_buffer_s=0.1)
    for _ in range(10):
        track.push(_chunk())
    assert track.dropped_samples == 5 * SPF
    assert track.flush() == 5
    assert track.stats()["flushed_samples"] == 5 * SPF
    assert _conserved(track)


async def test_real_time_recv_recovers_from_late_audio() -> None:
    """recv() paced in real time; the producer stalls 80 ms then catches up: the extra backlog goes."""
    track = PipelineAudioTrack(RATE, trim_window_s=0.2)
    stop = asyncio.Event()

    async def producer() -> None:
        t0 = time.monotonic()
        for i in range(100):  # 2 s of audio
            due = t0 + 0.010 + i * 0.02 + (0.080 if 10 <= i < 14 else 0.0)
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            track.push(_chunk())
        stop.set()

    async def consumer() -> list[float]:
        seen = []
        while not stop.is_set():
            await track.recv()
            seen.append(track.queued_s * 1000)
        return seen

    task = asyncio.ensure_future(producer())
    seen = await consumer()
    await task
    track.stop()
    assert track.frames_sent >= 90
    assert track.trimmed_frames >= 1
    assert np.median(seen[-20:]) <= 20
    assert _conserved(track)


async def _push_and_recv(track: PipelineAudioTrack, due: Any) -> list[tuple[float, float]]:
    """Push chunk i (its value names it) at monotonic offset ``due[i]`` while recv() runs in real time;
    returns (seconds since start, ms from push to send) of every chunk sent."""
    pushed: dict[int, float] = {}
    latencies: list[tuple[float, float]] = []
    done = asyncio.Event()
    t0 = time.monotonic()

    async def producer() -> None:
        for i, when in enumerate(due):
            wait = t0 + when - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pushed[i + 1] = time.monotonic()
            track.push(_chunk((i + 1) / 1000))
        await asyncio.sleep(0.1)
        done.set()

    async def consumer() -> None:
        while not done.is_set():
            frame = await track.recv()
            value = int(round(frame.to_ndarray()[0, 0] / 32768 * 1000))
            if value in pushed:
                latencies.append((time.monotonic() - t0, (time.monotonic() - pushed[value]) * 1000))

    task = asyncio.ensure_future(producer())
    await consumer()
    await task
    track.stop()
    return latencies


async def test_late_audio_after_silence_is_not_held_back() -> None:
    """Stalls make the track send silence in place of late frames; afterwards, real-time audio must
    still leave as soon as it is pushed (a pacing clock counting the silence ran ahead and then held
    every frame back by 20 ms per stall; a token bucket drained by the catch-up burst kept every frame
    waiting for its token)."""
    track = PipelineAudioTrack(RATE)
    due = 0.005 + np.arange(230) * 0.02
    for at, length in {0.4: 0.045, 0.8: 0.085, 1.2: 0.125, 1.6: 0.165, 2.0: 0.250}.items():
        due[(due >= at) & (due < at + length)] = at + length
    latencies = await _push_and_recv(track, np.maximum.accumulate(due))
    settled = [ms for t, ms in latencies if t > 3.6]
    assert len(settled) > 20
    assert np.median(settled) < 8.0, np.percentile(settled, [50, 95])
    assert _conserved(track)


async def test_after_a_long_stall_is_trimmed_audio_leaves_on_arrival_again() -> None:
    """A 2 s stall, then its backlog at once and real-time audio after it: the backlog is trimmed, and then
    frames must leave as they are pushed. The catch-up had emptied the token bucket, which refills only as fast
    as live audio arrives, so every later frame waited for its token: about 20 ms more, for good."""
    track = PipelineAudioTrack(RATE)
    jitter = np.random.default_rng(3).uniform(0, 0.008, 250)  # a pipeline's output is never quite regular
    due = 0.005 + np.arange(250) * 0.02 + jitter
    due[(due >= 0.4) & (due < 2.4)] = 2.4
    latencies = await _push_and_recv(track, due)
    assert track.trimmed_frames >= 80, track.stats()  # most of the 2 s of backlog
    settled = [ms for t, ms in latencies if t > 3.8]
    assert len(settled) > 20
    assert np.median(settled) < 8.0, np.percentile(settled, [50, 95])
    assert _conserved(track)
