"""Plain-aiortc baseline for the transport bench: the same workloads with nothing of this project.

Server (its own process), shaped like aiortc's ``examples/server``: tornado ``POST /offer`` with the
whole SDP (non-trickle), default ``RTCRtpReceiver`` (aiortc's own jitter buffer), a ``track.recv()``
loop per received track, results as JSON on the client's data channel::

    .venv/bin/python bench/baseline_aiortc.py serve --workload audio|echo|video|audio_echo [--port 0]

It prints ``{"port": N, "pid": P}`` once listening; stdin ``stats`` prints counters, ``quit``/EOF stops.

- ``audio``: per received frame ``{"kind": "level", "rms_dbfs", "peak_dbfs"}`` (as AudioLevelNode)
- ``echo``: the received audio track is sent back (``MediaRelay``), as the aiortc example relays media
- ``video``: per received frame ``{"kind": "video_stats", "mean_luma", "source_frame_number", ...}``
- ``audio_echo``: both ``audio`` and ``echo`` on one connection (the browser bench, ``browser_latency.py``)

Off the media path, every workload answers a data-channel ``{"type": "json", "value": {"kind": "rm.ping", ...}}``
with the same value and ``ts_us`` (its wall clock), as the project's latency probe does: the browser bench
aligns clocks with it.

:class:`PlainClient` is the matching plain-aiortc client used in the bench process.

ICE is limited to 127.0.0.1 on both sides by narrowing each gatherer's host addresses (the only
change to aiortc's defaults, and it touches no media path).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
import time
from typing import Any

import numpy as np
import tornado.httpclient
import tornado.web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("baseline")

DATA_CHANNEL_LABEL = "pipeline-data"


def now_us() -> int:
    return time.monotonic_ns() // 1000


def wall_us() -> int:
    return time.time_ns() // 1000


def loopback_only(pc: RTCPeerConnection) -> None:
    """Gather host candidates on 127.0.0.1 only (call before the description that gathers)."""
    gatherers = [t.receiver.transport.transport.iceGatherer for t in pc.getTransceivers()]
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    for gatherer in gatherers:
        conn = gatherer._connection
        if getattr(conn, "_bench_loopback", False):
            continue
        original = conn.get_component_candidates

        @functools.wraps(original)
        async def patched(component: int, addresses: list[str], timeout: Any = 5, *, _orig: Any = original) -> Any:
            return await _orig(component=component, addresses=["127.0.0.1"], timeout=timeout)

        conn.get_component_candidates = patched
        conn._bench_loopback = True


def _dbfs(x: float) -> float:
    return round(20 * np.log10(x), 2) if x > 1e-10 else -200.0


def _decode_frame_number(yuv: np.ndarray) -> int:
    # the bench's measuring tool (pure numpy), shared with the project's synthetic source
    from remotemedia_nbrtc.transport.sources import decode_frame_number

    return decode_frame_number(yuv[: yuv.shape[0] * 2 // 3])


# -- server ----------------------------------------------------------------------------------------
class StallOnceTrack(MediaStreamTrack):
    """Relays audio; once ``after_s`` of it has gone through, its processing pauses for ``stall_s`` while the
    transport keeps receiving (the plain-aiortc counterpart of the bench's BenchStallOnceNode)."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, after_s: float = 3.0, stall_s: float = 5.0) -> None:
        super().__init__()
        self.source, self.after_s, self.stall_s = source, after_s, stall_s
        self.seen_s = 0.0
        self.stalled = False

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.seen_s += frame.samples / frame.sample_rate
        if not self.stalled and self.seen_s >= self.after_s:
            self.stalled = True
            await asyncio.sleep(self.stall_s)
        return frame


class BaselineServer:
    def __init__(self, workload: str) -> None:
        self.workload = workload
        self.pcs: set[RTCPeerConnection] = set()
        self.relay = MediaRelay()
        self.frames = 0
        self.results_sent = 0
        self.first_frame_wall_us: int | None = None
        self.first_frame_wall_us_per_peer: list[int] = []  # one per connection, in connection order
        self.errors = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    async def offer(self, params: dict[str, Any]) -> dict[str, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)
        channel: dict[str, Any] = {}

        @pc.on("datachannel")
        def on_datachannel(dc: Any) -> None:
            channel["dc"] = dc
            dc.on("message", lambda m: self._answer_ping(dc, m))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                self.pcs.discard(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if self.workload in ("echo", "audio_echo") and track.kind == "audio":
                pc.addTrack(self.relay.subscribe(track))
            if self.workload == "echo_stall" and track.kind == "audio":
                pc.addTrack(StallOnceTrack(self.relay.subscribe(track)))
                return
            if self.workload != "echo" or track.kind != "audio":
                self._spawn(self._consume(self.relay.subscribe(track) if self.workload == "audio_echo" else track,
                                          channel))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type=params["type"]))
        loopback_only(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    @staticmethod
    def _answer_ping(dc: Any, message: Any) -> None:
        try:
            value = json.loads(message).get("value")
        except (ValueError, AttributeError):
            return
        if isinstance(value, dict) and value.get("kind") == "rm.ping" and dc.readyState == "open":
            dc.send(json.dumps({"type": "json", "value": value, "ts_us": wall_us()}, separators=(",", ":")))

    async def _consume(self, track: MediaStreamTrack, channel: dict[str, Any]) -> None:
        first = True
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if first:
                first = False
                self.first_frame_wall_us_per_peer.append(wall_us())
            if self.first_frame_wall_us is None:
                self.first_frame_wall_us = wall_us()
            self.frames += 1
            try:
                if track.kind == "audio":
                    pcm = frame.to_ndarray().astype(np.float32).reshape(-1) / 32768.0
                    value = {"kind": "level",
                             "rms_dbfs": _dbfs(float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))),
                             "peak_dbfs": _dbfs(float(np.max(np.abs(pcm)))), "samples": frame.samples,
                             "sample_rate": frame.sample_rate}
                else:
                    yuv = frame.to_ndarray(format="yuv420p")
                    luma = yuv[: frame.height]
                    value = {"kind": "video_stats", "frame_number": self.frames - 1, "width": frame.width,
                             "height": frame.height, "mean_luma": round(float(np.mean(luma)), 2),
                             "source_frame_number": _decode_frame_number(yuv)}
                dc = channel.get("dc")
                if dc is not None and dc.readyState == "open":
                    dc.send(json.dumps({"type": "json", "value": value, "node": "baseline", "ts_us": wall_us()},
                                       separators=(",", ":")))
                    self.results_sent += 1
            except Exception:
                self.errors += 1
                if self.errors == 1:
                    log.exception("processing a frame failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "results_sent": self.results_sent, "errors": self.errors,
                "first_frame_wall_us": self.first_frame_wall_us,
                "first_frame_wall_us_per_peer": self.first_frame_wall_us_per_peer, "peers": len(self.pcs)}

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self.pcs)), return_exceptions=True)
        self.pcs.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)


class _OfferHandler(tornado.web.RequestHandler):
    def initialize(self, server: BaselineServer) -> None:
        self.server = server

    async def post(self) -> None:
        answer = await self.server.offer(json.loads(self.request.body))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))


async def serve(workload: str, port: int) -> None:
    server = BaselineServer(workload)
    app = tornado.web.Application([(r"/offer", _OfferHandler, {"server": server})])
    http = app.listen(port, "127.0.0.1")
    bound = next(iter(http._sockets.values())).getsockname()[1]
    print(json.dumps({"port": bound, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() == "stats":
                print(json.dumps(server.stats()), flush=True)
            elif line.strip() == "quit" or not line:
                break
    finally:
        http.stop()
        await server.close()


# -- client ----------------------------------------------------------------------------------------
class PlainClient:
    """Plain aiortc client: whole-SDP offer by HTTP POST, results from the data channel.

    ``outputs``: ``(recv_us, message dict)``; ``audio_chunks``: ``(recv_us, peak)`` of received audio;
    ``audio_frames``: ``(recv_us, mono float32 samples)`` when connected with ``keep_audio=True``.
    """

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.outputs: list[tuple[int, dict[str, Any]]] = []
        self.audio_chunks: list[tuple[int, float]] = []
        self.audio_frames: list[tuple[int, np.ndarray]] = []
        self.keep_audio = False
        self.connected_us: int | None = None
        self.marks: dict[str, float] = {}  # ms since connect() began: offer, answer, connected, dc_open
        self._tasks: list[asyncio.Task[Any]] = []

    @classmethod
    async def connect(cls, url: str, *, audio: MediaStreamTrack | None = None, video: MediaStreamTrack | None = None,
                      receive_audio: bool = False, timeout_s: float = 15.0, keep_audio: bool = False) -> PlainClient:
        self = cls()
        self.keep_audio = keep_audio
        start = now_us()
        mark = lambda name: self.marks.setdefault(name, (now_us() - start) / 1000)  # noqa: E731
        pc = self.pc
        connected = asyncio.Event()
        dc_open = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected_us = now_us()
                mark("connected")
                connected.set()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.ensure_future(self._read_audio(track)))

        if audio is not None:
            pc.addTransceiver(audio, direction="sendrecv" if receive_audio else "sendonly")
        if video is not None:
            pc.addTransceiver(video, direction="sendonly")
        dc = pc.createDataChannel(DATA_CHANNEL_LABEL, ordered=True)
        dc.on("open", lambda: (mark("dc_open"), dc_open.set()))
        dc.on("message", lambda m: self.outputs.append((now_us(), json.loads(m))))
        loopback_only(pc)
        await pc.setLocalDescription(await pc.createOffer())
        mark("offer")
        body = json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
        resp = await tornado.httpclient.AsyncHTTPClient().fetch(url, method="POST", body=body,
                                                                request_timeout=timeout_s)
        answer = json.loads(resp.body)
        mark("answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(asyncio.gather(connected.wait(), dc_open.wait()), timeout_s)
        return self

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            pcm = frame.to_ndarray()
            t = now_us()
            self.audio_chunks.append((t, float(np.max(np.abs(pcm))) / 32768.0 if pcm.size else 0.0))
            if self.keep_audio:  # packed s16: channels interleaved; the bench's sources send equal channels
                mono = pcm.reshape(-1, len(frame.layout.channels)).mean(axis=1) / 32768.0
                self.audio_frames.append((t, mono.astype(np.float32)))

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--workload", choices=("audio", "echo", "video", "audio_echo", "echo_stall"), required=True)
    s.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.workload, args.port))
