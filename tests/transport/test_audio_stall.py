"""A node that stalls on its first frame, over real aiortc peers: what comes back and what is counted.

The cold-start bug: PitchShift imported scipy inside its first ``process`` call (2 s on a cold machine); the
return track then held a 2 s standing backlog and its latency policy trimmed it, and the client saw 2 s of
silence followed by less than a second of processed audio, with the trim visible nowhere but a kernel-side
counter. The policy stays (a live return path must not stay 2 s late), but every sample is accounted for and
the trim reaches the client through ``media.stats`` (what the widget's doctor panel shows).
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np

import remotemedia_nbrtc as rm
from remotemedia_nbrtc.standalone.webrtc_client import ClientPeer
from remotemedia_nbrtc.transport.sources import WavFileSource

from ._peer_helpers import LOOPBACK, start_server

RATE = 48000
FRAME = RATE // 50
SIGNAL_S = 4.0
STALL_S = 2.0


class StallOnFirstFrame(rm.Node, register=False):
    """Passes audio on; its first ``process`` call blocks the pipeline loop for ``stall_s``."""

    def __init__(self, *, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self.stalled = False

    def process(self, data: rm.RuntimeData) -> rm.RuntimeData:
        if not self.stalled:
            self.stalled = True
            time.sleep(self.stall_s)
        return data


def write_tone(path: Path) -> None:
    t = np.arange(int(SIGNAL_S * RATE)) / RATE
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.round(0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).tobytes())


async def test_first_frame_stall_is_trimmed_counted_and_reported(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_tone(wav)
    pipeline = rm.Pipeline("stall", metadata={"audio_input": {"sample_rate": RATE, "channels": 1}})
    pipeline.add("stall", StallOnFirstFrame())
    server = await start_server(pipeline, peer={"send_audio": True, "send_video": False})
    source = WavFileSource(wav)
    client = await ClientPeer.connect(server.url, audio=source, ice=LOOPBACK)
    try:
        deadline = time.monotonic() + SIGNAL_S + STALL_S + 10
        while source.readyState == "live" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # until everything the pipeline returned has left the kernel and reached the client
        while time.monotonic() < deadline:
            out = (await client.call("media.stats"))["audio_out"]
            if out["queued_samples"] == 0 and out["samples_in"] == int(SIGNAL_S * RATE):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        out = (await client.call("media.stats"))["audio_out"]
        received = client.received_audio_samples()[:, 0]
        frames_received = client.stats()["tracks"]["audio"]["frames"]
    finally:
        await client.close()
        await server.stop()

    # every sample the pipeline returned is sent, trimmed, dropped, flushed or still queued: nothing else
    assert out["samples_in"] == int(SIGNAL_S * RATE)
    assert out["samples_in"] == (out["samples_sent"] + out["trimmed_samples"] + out["dropped_samples"]
                                 + out["flushed_samples"] + out["queued_samples"])
    assert out["dropped_samples"] == 0 and out["flushed_samples"] == 0
    # the policy bounded the latency: about the stall's worth of backlog trimmed, in whole frames, and reported
    assert out["trimmed_samples"] % FRAME == 0 and out["trimmed_frames"] * FRAME == out["trimmed_samples"]
    assert abs(out["trimmed_samples"] / RATE - STALL_S) < 0.25, out
    assert out["trimmed_ms"] == round(out["trimmed_samples"] * 1000 / RATE, 1)
    # silence went out while the pipeline stalled (counted), never in place of audio it had produced
    assert out["silent_frames"] >= (STALL_S - 0.3) * 50, out
    assert out["samples_sent"] == (out["frames_sent"] - out["silent_frames"]) * FRAME
    # the client got every frame the kernel sent, and the tone in it lasts exactly what was sent, not trimmed
    assert abs(frames_received - out["frames_sent"]) <= 2, (frames_received, out)
    blocks = received[: received.size // FRAME * FRAME].reshape(-1, FRAME)
    tone_frames = int(np.count_nonzero(np.sqrt((blocks**2).mean(axis=1)) > 0.1))  # the tone's RMS is 0.21
    assert abs(tone_frames - out["samples_sent"] // FRAME) <= 3, (tone_frames, out)
