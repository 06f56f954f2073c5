"""Audio on the ``rm-audio`` data channel: a plain aiortc client and a ServerPeer on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
import pytest

from remotemedia_nbrtc.protocol.datachannel import DC_AUDIO_LABEL as LABEL
from remotemedia_nbrtc.protocol.media_frames import KIND_AUDIO, KIND_VIDEO, pack_frame, unpack_frame, wall_us
from remotemedia_nbrtc.transport.dcaudio import OUT_FRAME_MS, DataChannelAudio, parse_protocol
from remotemedia_nbrtc.transport.loop_thread import LoopThread
from tests.transport._peer_helpers import Client
from tests.transport.test_peer import config, connect, json_messages, manifest

pytestmark = pytest.mark.timeout(60)
RATE = 48000
QUANTUM = 128  # one Web Audio render quantum, what the widget sends


def tone_pcm(n: int, start: int, amplitude: float = 0.5, freq: float = 440.0) -> bytes:
    t = (np.arange(n) + start) / RATE
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype("<i2").tobytes()


class AudioChannelClient(Client):
    """The widget's data-channel audio, from Python: pcm16 quanta out, returned frames collected."""

    def __init__(self, protocol: str = f"pcm16/{RATE}", **kw: Any) -> None:
        super().__init__(**kw)
        self.audio = self.pc.createDataChannel(LABEL, ordered=False, maxRetransmits=0, protocol=protocol)
        self.returned: list[tuple[float, int, bytes]] = []  # (monotonic s, seq, pcm)
        self.seq = 0

        @self.audio.on("message")
        def on_audio(message: Any) -> None:
            kind, seq, _, payload = unpack_frame(message)
            assert kind == KIND_AUDIO
            self.returned.append((time.monotonic(), seq, payload))

    async def wait_open(self) -> None:
        await self.wait_for(lambda: self.audio.readyState == "open", 10)

    def send_pcm(self, pcm: bytes, *, skip: int = 0) -> None:
        self.seq += skip
        self.audio.send(pack_frame(KIND_AUDIO, self.seq, wall_us(), pcm))
        self.seq += 1

    def returned_samples(self) -> np.ndarray:
        return np.frombuffer(b"".join(p for _, _, p in self.returned), "<i2").astype(np.float64) / 32768.0

    def loud_frames(self) -> list[np.ndarray]:
        """Returned frames that carry the tone (the outgoing track also sends silence when nothing is due)."""
        frames = [np.frombuffer(p, "<i2").astype(np.float64) / 32768.0 for _, _, p in self.returned]
        return [f for f in frames if f.size and math.sqrt(float(np.mean(f**2))) > 0.05]


def accounted(out: dict[str, Any]) -> bool:
    """Every sample the pipeline returned was sent, is queued, or was trimmed/dropped/flushed (counted)."""
    return out["samples_in"] == (out["samples_sent"] + out["queued_samples"] + out["trimmed_samples"]
                                 + out["dropped_samples"] + out["flushed_samples"])


async def session(node: tuple[str, str, dict[str, Any]], body: Any, protocol: str = f"pcm16/{RATE}",
                  *, wait_open: bool = True) -> tuple[AudioChannelClient, dict[str, Any]]:
    """Connect an :class:`AudioChannelClient` to a one-node pipeline, run ``await body(client)``, return the
    client and the server peer's stats taken before both close."""
    client = AudioChannelClient(protocol=protocol)
    peer, _ = await connect(manifest(node), client)
    try:
        if wait_open:
            await client.wait_open()
        await body(client)
        return client, peer.stats()
    finally:
        await client.close()
        await peer.close()


def test_protocol_parsing() -> None:
    assert parse_protocol("pcm16/48000") == (48000, 48000)
    assert parse_protocol("pcm16/22050/48000") == (22050, 48000)
    for bad in ("", "opus/48000", "pcm16/8000", "pcm16/96000", "pcm16", "pcm16/48000/8000", "pcm16/48000/"):
        with pytest.raises(ValueError, match=LABEL):
            parse_protocol(bad)


def test_gain_processed_audio_returns_on_the_audio_channel(rtc: LoopThread) -> None:
    """128-sample pcm16 quanta -> Gain -6 dB -> back on the same channel in 10 ms frames, 6 dB lower, no RTP audio."""

    async def body(client: AudioChannelClient) -> None:
        for i in range(300):  # 0.8 s, paced in real time
            client.send_pcm(tone_pcm(QUANTUM, i * QUANTUM))
            await asyncio.sleep(QUANTUM / RATE)
        await client.wait_for(lambda: len(client.loud_frames()) >= 78, 10)
        await asyncio.sleep(0.1)

    client, stats = rtc.run(session(("gain", "Gain", {"gain_db": -6.0}), body), timeout=40)
    loud = client.loud_frames()
    assert all(f.size == RATE * OUT_FRAME_MS // 1000 for f in loud)
    # pcm16 both ways, no codec in the way: the tone's peak is exactly 6 dB down (frames may be part silence
    # where the paced track sent silence while the client's sleep-paced quanta were late, so not the RMS)
    peak = float(np.abs(np.concatenate(loud)).max())
    assert abs(20 * math.log10(peak / 0.5) + 6.0) < 0.1, peak
    assert [s for _, s, _ in client.returned] == list(range(len(client.returned)))
    a = stats["dc_audio"]
    assert (a["frames_in"], a["lost_frames"], a["bad_frames"], a["out_drops"]) == (300, 0, 0, 0), a
    out = a["out"]
    assert out["samples_in"] == 300 * QUANTUM and accounted(out), out  # nothing lost silently
    assert out["samples_sent"] + out["queued_samples"] >= 300 * QUANTUM - 2 * RATE * OUT_FRAME_MS // 1000, out
    assert a["rate"] == RATE and a["state"] == "open"
    assert "audio_out" not in stats and stats["bridge"]["audio_drops"] == 0


def test_level_results_and_gap_filled_with_silence(rtc: LoopThread) -> None:
    """Each quantum gives a level result on the data channel; lost frames become silence of their length."""

    async def body(client: AudioChannelClient) -> None:
        for i in range(20):
            client.send_pcm(tone_pcm(QUANTUM, i * QUANTUM), skip=3 if i == 10 else 0)
            await asyncio.sleep(0.003)
        await client.wait_for(lambda: len(json_messages(client)) >= 21, 10)

    client, stats = rtc.run(session(("level", "AudioLevelNode", {}), body), timeout=40)
    levels = [m["value"]["rms_dbfs"] for m in json_messages(client)]
    assert len(levels) == 21  # 20 frames + one of silence as long as the 3 lost ones
    assert sum(1 for v in levels if v < -60) == 1
    assert all(-10.5 < v < -7.5 for v in levels if v > -60)
    a = stats["dc_audio"]
    assert a["frames_in"] == 20 and a["lost_frames"] == 3


def test_bad_frames_are_counted_and_the_stream_goes_on(rtc: LoopThread) -> None:
    async def body(client: AudioChannelClient) -> None:
        client.audio.send(b"short")
        client.audio.send("text is not audio")
        client.audio.send(pack_frame(KIND_VIDEO, 0, wall_us(), b"\xff\xd8"))
        for i in range(5):
            client.send_pcm(tone_pcm(QUANTUM, i * QUANTUM))
        await client.wait_for(lambda: len(json_messages(client)) >= 5, 10)

    a = rtc.run(session(("level", "AudioLevelNode", {}), body), timeout=40)[1]["dc_audio"]
    assert a["bad_frames"] == 3 and a["frames_in"] == 5


def test_unusable_protocol_is_refused_and_reported(rtc: LoopThread) -> None:
    async def body(client: AudioChannelClient) -> None:
        await client.wait_for(lambda: client.audio.readyState == "closed", 10)

    _, stats = rtc.run(session(("level", "AudioLevelNode", {}), body, "opus/48000", wait_open=False), timeout=40)
    assert "opus/48000" in stats["dc_audio"]["error"]


def test_returned_audio_is_released_in_real_time(rtc: LoopThread) -> None:
    """A pipeline that returns 1 s of audio at once: about 10 ms leave at once, the rest is paced, none is trimmed."""

    async def body(client: AudioChannelClient) -> None:
        for i in range(375):  # 1 s of audio in one go
            client.send_pcm(tone_pcm(QUANTUM, i * QUANTUM))
        await client.wait_for(lambda: len(client.loud_frames()) >= 100, 10)

    client, stats = rtc.run(session(("pass", "PassThrough", {}), body), timeout=40)
    times = [t for t, _, p in client.returned if np.abs(np.frombuffer(p, "<i2")).max() > 1000]
    span = times[-1] - times[0]
    assert 0.9 < span < 1.2, span  # paced at the audio's rate, not dumped
    early = sum(1 for t in times if t - times[0] < 0.01)
    assert early <= 3, early  # 10 ms of lead: 2 frames of 10 ms (+1 for timing)
    out = stats["dc_audio"]["out"]
    assert out["samples_in"] == RATE and out["trimmed_samples"] == 0 and accounted(out), out
    assert stats["dc_audio"]["out_drops"] == 0


def test_no_rtp_audio_line_needed_and_close_closes_the_channel(rtc: LoopThread) -> None:
    """No RTP audio line: nothing goes to an audio track; closing the peer closes the audio channel."""

    async def scenario() -> tuple[str, dict[str, Any]]:
        client = AudioChannelClient()
        peer, _ = await connect(manifest(("pass", "PassThrough", {})), client, config())
        await client.wait_open()
        client.send_pcm(tone_pcm(QUANTUM, 0))
        await client.wait_for(lambda: len(client.returned) >= 1, 10)
        stats = peer.stats()
        await peer.close()
        await client.wait_for(lambda: client.audio.readyState == "closed", 10)
        state = client.audio.readyState
        await client.close()
        return state, stats

    state, stats = rtc.run(scenario(), timeout=40)
    assert state == "closed"
    assert stats["unrouted_outputs"] == 0 and "audio_out" not in stats


def test_unit_out_queue_is_bounded() -> None:
    """Unit: with the channel stalled (huge bufferedAmount), returned audio is dropped and counted."""

    class StalledChannel:
        readyState = "open"
        protocol = "pcm16/48000"
        bufferedAmount = 1 << 30

        def on(self, *_: Any) -> None:
            pass

        def send(self, _: bytes) -> None:  # pragma: no cover - never reached
            raise AssertionError("sent despite the stalled channel")

        def close(self) -> None:
            self.readyState = "closed"

    from remotemedia_nbrtc.runtime import AudioData

    async def run() -> dict[str, Any]:
        audio = DataChannelAudio(lambda _: None, None)
        assert audio.attach(StalledChannel())
        audio.push(AudioData(np.full((480, 1), 0.5, np.float32), RATE))
        await asyncio.sleep(0.05)
        stats = audio.stats()
        audio.close()
        return stats

    stats = asyncio.run(run())
    assert stats["out_drops"] >= 1 and stats["frames_out"] == 0 and stats["out"]["samples_sent"] == 480


def test_mic_rate_in_and_context_rate_back(rtc: LoopThread) -> None:
    """pcm16/16000/48000: 16 kHz from the browser, 48 kHz back (the kernel resamples with PyAV)."""

    async def body(client: AudioChannelClient) -> None:
        for i in range(100):  # 1 s of 10 ms chunks at 16 kHz
            t = (np.arange(160) + i * 160) / 16000
            client.send_pcm((np.sin(2 * np.pi * 440 * t) * 0.5 * 32767).astype("<i2").tobytes())
            await asyncio.sleep(0.01)
        await client.wait_for(lambda: len(client.loud_frames()) >= 95, 10)

    client, stats = rtc.run(session(("gain", "Gain", {"gain_db": 0.0}), body, "pcm16/16000/48000"), timeout=40)
    got = np.concatenate(client.loud_frames())
    assert got.size >= 95 * 480  # 48 kHz frames
    spectrum = np.abs(np.fft.rfft(got[4800:43200]))
    assert abs(np.argmax(spectrum) * 48000 / 38400 - 440) < 5  # still 440 Hz
    assert (stats["dc_audio"]["rate"], stats["dc_audio"]["out_rate"]) == (16000, 48000)
