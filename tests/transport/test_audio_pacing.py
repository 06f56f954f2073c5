"""Outgoing audio for browsers: smooth pacing, 10 ms Opus packets, ``a=ptime`` in the answer."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from remotemedia_nbrtc.runtime import AudioData
from remotemedia_nbrtc.transport.config import PeerConfig
from remotemedia_nbrtc.transport.peer import with_audio_ptime
from remotemedia_nbrtc.transport.tracks import PipelineAudioTrack, install_opus_frame_size

pytestmark = pytest.mark.timeout(30)

RATE = 48000


def _chunk(n: int, value: float = 0.25) -> AudioData:
    return AudioData(np.full((n, 1), value, np.float32), RATE)


async def _run(track: PipelineAudioTrack, due: np.ndarray, n: int) -> tuple[list[float], dict[int, float]]:
    """Push ``n``-sample chunks at monotonic times ``due`` (value = chunk number); recv() in real time.
    Returns the send times and {chunk number: ms from its push to its send}."""
    pushed: dict[int, float] = {}
    sent: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def producer() -> None:
        for i, when in enumerate(due):
            wait = when - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pushed[i + 1] = time.monotonic()
            track.push(_chunk(n, (i + 1) / 1000))
        await asyncio.sleep(0.1)
        done.set()

    async def consumer() -> None:
        while not done.is_set():
            frame = await track.recv()
            sent.append((time.monotonic(), round(frame.to_ndarray()[0, 0] / 32768 * 1000)))

    task = asyncio.ensure_future(producer())
    await consumer()
    await task
    track.stop()
    return [t for t, _ in sent], {v: (t - pushed[v]) * 1000 for t, v in sent if v in pushed}


async def test_smooth_pacing_sends_evenly_spaced_frames_from_jittered_audio() -> None:
    """10 ms chunks arriving with +-4 ms jitter (as from a browser through the kernel) leave on a regular
    10 ms grid in smooth mode, each within a few ms of its arrival; immediate mode passes the jitter on."""
    rng = np.random.default_rng(5)
    results = {}
    for pacing in ("immediate", "smooth"):
        track = PipelineAudioTrack(RATE, frame_ms=10, pacing=pacing)
        t0 = time.monotonic() + 0.05
        due = np.maximum.accumulate(t0 + np.arange(300) * 0.010 + rng.uniform(-0.004, 0.004, 300))
        sends, waits = await _run(track, due, 480)
        intervals = np.diff(sends[100:280]) * 1000  # after the grid settled
        delays = [waits[v] for v in range(120, 280) if v in waits]
        results[pacing] = (np.percentile(intervals, [5, 95]), np.median(delays), track)
    (lo, hi), delay, track = results["smooth"]
    assert lo >= 8.0 and hi <= 12.5, (lo, hi)
    assert delay < 8.0, delay  # waits for the slot, not for a fixed long buffer
    assert track.stats()["pacing"] == "smooth" and track.stats()["frame_ms"] == 10
    (ilo, ihi), idelay, _ = results["immediate"]
    assert ihi - ilo > hi - lo + 2.0, (ilo, ihi)  # control: the jitter is really there
    assert idelay < delay


async def test_smooth_pacing_sends_bulk_audio_at_real_time() -> None:
    """Audio queued in bulk (TTS) is not "early": it leaves one frame per 20 ms slot, never faster."""
    track = PipelineAudioTrack(RATE, pacing="smooth")
    for _ in range(3):
        await track.recv()
    for _ in range(100):
        track.push(_chunk(960))
    start = time.monotonic()
    for _ in range(75):
        await track.recv()
    elapsed = time.monotonic() - start
    track.stop()
    assert 1.40 <= elapsed <= 1.60, elapsed
    assert track.trimmed_frames == 0 and track.dropped_samples == 0


def test_invalid_pacing_and_frame_size_are_refused() -> None:
    with pytest.raises(ValueError):
        PipelineAudioTrack(RATE, pacing="asap")
    with pytest.raises(ValueError):
        PipelineAudioTrack(RATE, frame_ms=5)
    with pytest.raises(ValueError):
        PeerConfig(audio_out_frame_ms=30)
    with pytest.raises(ValueError):
        PeerConfig(audio_out_pacing="fast")
    with pytest.raises(ValueError):
        PeerConfig(audio_ptime_ms=5)


def test_answer_gets_ptime_in_audio_sections_only() -> None:
    sdp = "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=ptime:20", "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=rtpmap:96 VP8/90000", "",
    ])
    out = with_audio_ptime(sdp, 10).split("\r\n")
    audio = out[out.index("m=audio 9 UDP/TLS/RTP/SAVPF 111"):out.index("m=video 9 UDP/TLS/RTP/SAVPF 96")]
    assert audio[1:3] == ["c=IN IP4 0.0.0.0", "a=ptime:10"]  # after c=, before the other attributes
    assert sum(line.startswith("a=ptime:") for line in out) == 1
    assert with_audio_ptime(sdp, None) == sdp


def test_opus_encoder_sends_10_ms_packets() -> None:
    class Sender:
        _RTCRtpSender__encoder = None

    sender = Sender()
    assert install_opus_frame_size(sender, 10)
    encoder = sender._RTCRtpSender__encoder
    stamps = []
    for i in range(5):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = i * 480
        frame.time_base = Fraction(1, RATE)
        payloads, timestamp = encoder.encode(frame)
        assert len(payloads) == 1
        stamps.append(timestamp)
    assert np.diff(stamps).tolist() == [480] * 4
    decoder = av.CodecContext.create("libopus", "r")
    packet = av.Packet(payloads[0])
    assert sum(f.samples for f in decoder.decode(packet)) == 480
