"""Media sources, a plain aiortc client and a standalone server for the transport tests (loopback only)."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from remotemedia_nbrtc.standalone.server import ServerConfig, WebRTCServer
from remotemedia_nbrtc.transport.config import IceConfig, PeerConfig
from remotemedia_nbrtc.transport.ice import prepare_peer_connection, rtc_configuration

LOOPBACK = IceConfig(loopback_only=True)


async def start_server(pipeline: Any, peer: dict[str, Any] | None = None, **config: Any) -> WebRTCServer:
    """A started standalone WebRTCServer on a free port serving ``pipeline``; loopback ICE plus ``peer`` options."""
    server = WebRTCServer(ServerConfig(port=0, peer=PeerConfig(ice=LOOPBACK, **(peer or {})), **config), pipeline)
    await server.start()
    return server


class ToneTrack(MediaStreamTrack):
    """A paced 20 ms sine at 48 kHz, stereo (aiortc's mono->stereo upmix would lower it by 3 dB);
    remembers when each frame index was produced."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, amplitude: float = 0.5, rate: int = 48000) -> None:
        super().__init__()
        self.freq, self.amplitude, self.rate = freq, amplitude, rate
        self.n = 0
        self.t0: float | None = None
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        spf = self.rate // 50
        if self.t0 is None:
            self.t0 = time.monotonic()
        wait = self.t0 + self.n * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(spf) + self.n * spf) / self.rate
        mono = (np.sin(2 * np.pi * self.freq * t) * self.amplitude * 32767).astype(np.int16)
        pcm = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = self.rate
        frame.pts = self.n * spf
        frame.time_base = fractions.Fraction(1, self.rate)
        self.sent_at[self.n] = time.monotonic()
        self.n += 1
        return frame


class ColorTrack(MediaStreamTrack):
    """Paced synthetic video: solid frames whose grey level ramps with the frame index."""

    kind = "video"

    def __init__(self, width: int = 160, height: int = 120, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.n = 0
        self.t0: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.t0 is None:
            self.t0 = time.monotonic()
        wait = self.t0 + self.n / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        img = np.full((self.height, self.width, 3), 128, np.uint8)
        img[:, : self.width // 2] = (200, 40, 40)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = int(self.n * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.n += 1
        return frame


class Client:
    """A browser-like aiortc peer: sendrecv audio/video lines plus a data channel opened before the offer."""

    def __init__(self, *, audio: MediaStreamTrack | None = None, video: MediaStreamTrack | None = None,
                 datachannel: bool = True) -> None:
        self.pc = RTCPeerConnection(rtc_configuration(LOOPBACK))
        self.messages: list[Any] = []
        self.message_event = asyncio.Event()
        self.received: dict[str, list[Any]] = {"audio": [], "video": []}
        self.recv_tasks: list[asyncio.Task[None]] = []
        if audio is not None:
            self.pc.addTransceiver(audio, direction="sendrecv")
        if video is not None:
            self.pc.addTransceiver(video, direction="sendrecv")
        self.channel = self.pc.createDataChannel("pipeline-data") if datachannel else None
        if self.channel is not None:
            @self.channel.on("message")
            def on_message(message: Any) -> None:
                self.messages.append(message)
                self.message_event.set()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.recv_tasks.append(asyncio.ensure_future(self._drain(track)))

    async def _drain(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.received[track.kind].append((time.monotonic(), frame))
        except MediaStreamError:
            pass

    async def offer(self) -> str:
        prepare_peer_connection(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()
        for task in self.recv_tasks:
            task.cancel()
        await asyncio.gather(*self.recv_tasks, return_exceptions=True)
