"""The low-latency jitter buffer: unit tests on add() and a real aiortc loopback latency comparison."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiortc
import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from remotemedia_nbrtc.transport import aiortc_internals
from remotemedia_nbrtc.transport.aiortc_internals import UnsupportedAiortcError, aiortc_version_supported
from remotemedia_nbrtc.transport.ice import prepare_peer_connection, rtc_configuration
from remotemedia_nbrtc.transport.loop_thread import LoopThread
from remotemedia_nbrtc.transport.receiver import AudioJitterBuffer, VideoJitterBuffer, install_low_latency_buffer
from tests.transport._peer_helpers import LOOPBACK, ToneTrack

pytestmark = pytest.mark.timeout(60)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def pkt(seq: int, ts: int | None = None, marker: bool = False, data: bytes | None = None) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF,
                  timestamp=(seq * 960 if ts is None else ts) & 0xFFFFFFFF)
    p.marker = int(marker)
    p._data = data if data is not None else seq.to_bytes(4, "big")  # type: ignore[attr-defined]
    return p


class Collect:
    """Frames released by a buffer: via the sink (extras, timer) and the return value, in order."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.plis = 0

    def sink(self, frame: Any, payload_type: int) -> None:
        self.frames.append(frame)

    def add(self, buf: Any, packet: RtpPacket) -> None:
        pli, frame = buf.add(packet)
        self.plis += pli
        if frame is not None:
            self.frames.append(frame)

    def seqs(self) -> list[int]:
        return [int.from_bytes(f.data[:4], "big") for f in self.frames]


def audio_buf(clock: FakeClock, out: Collect, **kw: Any) -> AudioJitterBuffer:
    return AudioJitterBuffer(deliver=out.sink, clock=clock, adaptive=False, **kw)


def test_audio_in_order_released_on_arrival() -> None:
    clock, out = FakeClock(), Collect()
    buf = audio_buf(clock, out)
    for seq in range(1, 6):
        out.add(buf, pkt(seq))
        assert out.seqs()[-1] == seq  # no prefetch: each packet leaves as it arrives
        clock.t += 0.02
    assert buf.stats.lost == 0 and buf.stats.max_hold_ms == 0


def test_audio_reorder_within_target_is_fixed() -> None:
    clock, out = FakeClock(), Collect()
    buf = audio_buf(clock, out, target_ms=30)
    for seq in (1, 2, 4):
        out.add(buf, pkt(seq))
        clock.t += 0.005
    assert out.seqs() == [1, 2]
    out.add(buf, pkt(3))
    assert out.seqs() == [1, 2, 3, 4]
    assert buf.stats.lost == 0 and buf.stats.late == 0


def test_audio_loss_is_skipped_after_the_wait() -> None:
    clock, out = FakeClock(), Collect()
    buf = audio_buf(clock, out, target_ms=20)
    out.add(buf, pkt(10))
    out.add(buf, pkt(12))
    clock.t += 0.010
    out.add(buf, pkt(13))
    assert out.seqs() == [10]
    clock.t += 0.011  # 12 has now waited 21 ms
    _, frames = buf.poll()
    assert [int.from_bytes(f.data, "big") for f in frames] == [12, 13]
    assert buf.stats.lost == 1
    out.add(buf, pkt(11))  # too late now
    assert buf.stats.late == 1


def test_audio_timer_releases_without_further_packets() -> None:
    async def scenario() -> list[int]:
        out = Collect()
        buf = AudioJitterBuffer(deliver=out.sink, target_ms=15, adaptive=False)
        out.add(buf, pkt(1))
        out.add(buf, pkt(3))
        await asyncio.sleep(0.05)
        return out.seqs()

    assert asyncio.run(scenario()) == [1, 3]


def test_audio_sequence_wraparound_and_duplicates() -> None:
    clock, out = FakeClock(), Collect()
    buf = audio_buf(clock, out)
    for seq in (65533, 65534, 65535, 65536, 65537, 65537):
        out.add(buf, pkt(seq))
    assert out.seqs() == [65533, 65534, 65535, 65536, 65537]
    assert buf.stats.late == 1 and buf.stats.lost == 0  # the repeat of a released packet is late
    out.add(buf, pkt(65539))
    out.add(buf, pkt(65539))  # a repeat of a held packet is a duplicate
    assert buf.stats.duplicates == 1


def test_audio_adaptive_target_follows_jitter() -> None:
    clock, out = FakeClock(), Collect()
    buf = AudioJitterBuffer(deliver=out.sink, clock=clock, target_ms=5, max_ms=80)
    for seq in range(200):
        out.add(buf, pkt(seq))
        clock.t += 0.02 + (0.015 if seq % 2 else -0.015)  # +-15 ms arrival jitter
    assert buf.stats.jitter_ms > 10
    assert buf.target_ms() > 25
    assert buf.target_ms() <= 80
    assert len(out.frames) == 200


def test_video_frame_released_on_marker() -> None:
    clock, out = FakeClock(), Collect()
    buf = VideoJitterBuffer(deliver=out.sink, clock=clock)
    out.add(buf, pkt(1, ts=0, data=b"a"))
    out.add(buf, pkt(2, ts=0, data=b"b"))
    assert out.frames == []
    out.add(buf, pkt(3, ts=0, marker=True, data=b"c"))
    assert [f.data for f in out.frames] == [b"abc"]  # without waiting for the next frame
    out.add(buf, pkt(5, ts=3000, marker=True, data=b"e"))
    out.add(buf, pkt(4, ts=3000, data=b"d"))
    assert [f.data for f in out.frames] == [b"abc", b"de"]


def test_video_incomplete_frame_dropped_with_pli() -> None:
    clock, out = FakeClock(), Collect()
    buf = VideoJitterBuffer(deliver=out.sink, clock=clock, wait_ms=50)
    out.add(buf, pkt(1, ts=0, marker=True, data=b"a"))
    out.add(buf, pkt(2, ts=3000, data=b"b"))  # 3 (marker of frame 2) is lost
    out.add(buf, pkt(4, ts=6000, marker=True, data=b"d"))
    assert [f.data for f in out.frames] == [b"a"]
    clock.t += 0.06
    out.add(buf, pkt(5, ts=9000, marker=True, data=b"e"))
    assert [f.data for f in out.frames] == [b"a", b"d", b"e"]
    assert out.plis >= 1 and buf.stats.frames_dropped == 1


def test_aiortc_internals_present_and_version_pinned() -> None:
    """Fails loudly when aiortc changes the private fields this package uses (all in aiortc_internals)."""
    assert aiortc_version_supported(), aiortc.__version__
    assert aiortc_version_supported("1.15.0") and aiortc_version_supported("1.16.0")
    assert not aiortc_version_supported("1.14.0")
    assert not aiortc_version_supported("1.17.0")

    async def make() -> RTCRtpReceiver:
        pc = RTCPeerConnection()
        t = pc.addTransceiver("audio")
        receiver = t.receiver
        assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, JitterBuffer)
        internals = aiortc_internals.receiver_internals(receiver)
        assert (internals.kind, internals.decoding) == ("audio", False)
        assert aiortc_internals.sender_encoder(t.sender) is None  # made at the first frame
        assert aiortc_internals.transceiver_codecs(t) == [] and aiortc_internals.offer_direction(t) is None
        gatherer = t.receiver.transport.transport.iceGatherer
        assert hasattr(aiortc_internals.ice_connection(gatherer), "get_component_candidates")
        buf = install_low_latency_buffer(receiver)
        assert receiver._RTCRtpReceiver__jitter_buffer is buf
        assert install_low_latency_buffer(receiver) is buf
        await pc.close()
        return receiver

    asyncio.run(make())

    class Bare:
        pass

    with pytest.raises(UnsupportedAiortcError, match="supports aiortc >= 1.15, < 1.17"):
        install_low_latency_buffer(Bare())  # type: ignore[arg-type]
    for accessor in (aiortc_internals.sender_encoder, aiortc_internals.transceiver_codecs,
                     aiortc_internals.offer_direction, aiortc_internals.ice_connection):
        with pytest.raises(UnsupportedAiortcError):
            accessor(Bare())


async def _latency_run(ours: bool, frames: int = 80) -> list[float]:
    tone = ToneTrack()
    a = RTCPeerConnection(rtc_configuration(LOOPBACK))
    b = RTCPeerConnection(rtc_configuration(LOOPBACK))
    a.addTrack(tone)
    latencies: list[float] = []
    done = asyncio.Event()
    tasks = []

    async def read(track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                idx = round(frame.pts / 960)
                if idx in tone.sent_at:
                    latencies.append((time.monotonic() - tone.sent_at[idx]) * 1000)
                if len(latencies) >= frames:
                    done.set()
        except MediaStreamError:
            pass

    b.on("track", lambda track: tasks.append(asyncio.ensure_future(read(track))))
    try:
        prepare_peer_connection(a, LOOPBACK)
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        if ours:
            for t in b.getTransceivers():
                install_low_latency_buffer(t.receiver)
        prepare_peer_connection(b, LOOPBACK)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        await asyncio.wait_for(done.wait(), 15)
    finally:
        await a.close()
        await b.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies[10:]


def test_loopback_latency_ours_vs_default(rtc: LoopThread) -> None:
    """Send->decoded-frame latency over a real aiortc pair: ours releases on arrival, aiortc prefetches 4."""
    ours = rtc.run(_latency_run(True), timeout=30)
    default = rtc.run(_latency_run(False), timeout=30)
    p50_ours, p50_default = statistics.median(ours), statistics.median(default)
    print(f"audio send->recv p50: low-latency {p50_ours:.1f} ms, aiortc default {p50_default:.1f} ms")
    assert p50_ours < 20, p50_ours
    assert p50_default > 60, p50_default
