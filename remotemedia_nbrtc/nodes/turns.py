"""Turn-taking: call a function with what the caller said when they pause, speak what it returns.

What users of fastrtc know as ``ReplyOnPause``::

    import remotemedia_nbrtc as rm
    rm.stream(rm.ReplyOnPause(lambda audio: "you said something"))

:class:`ReplyOnPause` buffers one utterance (a VAD starts it on speech, with ``pre_roll_ms`` before the
onset; ``pause_ms`` of silence ends it; ``max_utterance_s`` bounds it), then calls ``reply(audio)`` on its own
thread (never on an event loop). ``reply`` returns a ``str`` (spoken with text to speech, :class:`HibariTTS`
by default, 24 kHz), an :class:`AudioData` (sent as is), ``None``, or an iterable / generator of those
(each piece is sent as soon as it is ready, so a generator can start speaking early).

Reply audio is released in step with the incoming audio (a browser sends audio all the time, silence
included): the return track then holds no standing backlog, and when the caller starts speaking again
(``interrupt=True``) the rest of the reply is dropped at once (barge-in; counted in ``interrupted``). With
``interrupt=False`` speech while a reply is pending or playing is ignored (counted in ``ignored``), as
fastrtc's ``can_interrupt=False``. At end of stream the reply still pending is awaited and sent in full.
The widget turns the browser's echo cancellation off; with speakers, stream with
``options=StreamOptions(audio_constraints={"echoCancellation": True})`` or the mic hears the reply and it
interrupts itself.
The voice's leading silence (about 0.3 s) is trimmed from the first speech of each reply.
Counters: :meth:`ReplyOnPause.counters` (also under ``"counters"`` in ``session.metrics()``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..runtime import AudioData, ErrorData, Node, RuntimeData, TextData
from .audio import FastResample
from .speech import SileroVAD, WebRTCVAD
from .tts import HibariTTS

__all__ = ["ReplyOnPause", "ReplyValue"]

log = logging.getLogger(__name__)

VAD_RATE = 16000
#: reply audio may run this far ahead of the wall clock: under the return track's trim hysteresis (20 ms)
RELEASE_LEAD_S = 0.01
#: what ``reply`` may return (or yield)
ReplyValue = str | AudioData | None
ReplyFunction = Callable[[AudioData], ReplyValue | Iterable[ReplyValue]]


class ReplyOnPause(Node, register=False):
    """Calls ``reply(utterance)`` when the caller pauses and sends back what it returns, as audio.

    ``reply``: ``f(audio: AudioData) -> str | AudioData | None`` or an iterable of those; ``audio`` is the
    utterance as 16 kHz mono float32. ``pause_ms``: silence that ends an utterance. ``min_speech_ms``: speech
    needed to start one. ``pre_roll_ms``: audio kept from before the VAD's onset. ``max_utterance_s``: an
    utterance this long is cut and answered (counted in ``truncated``). ``vad``: ``"webrtc"`` (webrtcvad,
    ``aggressiveness`` 0-3) or ``"silero"``. ``tts``: ``True`` (:class:`HibariTTS`, loaded in ``start``),
    a text-to-speech node with a sync ``process`` (e.g. ``HibariTTS(speed=1.2)``), or ``False`` (text replies
    are then an error). ``interrupt``: new speech cuts off a pending or playing reply. ``show_text``: also
    output each text reply as a ``ui`` :class:`TextData` (the widget shows it). ``max_ahead_s``: reply audio
    the reply thread may have ready beyond what was sent (a generator waits beyond that). Inputs other than
    audio pass through. ``turns`` records each utterance answered (its length, when it was submitted on the
    :attr:`input_time_s` clock, the latency to its first reply audio).
    """

    node_type = "ReplyOnPause"
    threaded = True  # VAD and buffering on the node's worker thread; ``reply`` on a thread of its own
    audio_input = (VAD_RATE, 1)

    def __init__(self, reply: ReplyFunction, *, pause_ms: float = 600.0, min_speech_ms: float = 150.0,
                 pre_roll_ms: float = 300.0, max_utterance_s: float = 30.0, vad: str = "webrtc",
                 aggressiveness: int = 2, tts: Node | bool = True, interrupt: bool = True, show_text: bool = True,
                 max_ahead_s: float = 60.0) -> None:
        if not callable(reply):
            raise TypeError(f"reply must be a function of the utterance's AudioData, not {type(reply).__name__}")
        if pause_ms < 30 or min_speech_ms < 0 or pre_roll_ms < 0:
            raise ValueError("pause_ms must be >= 30, min_speech_ms and pre_roll_ms >= 0")
        if max_utterance_s <= 0 or max_ahead_s <= 0:
            raise ValueError("max_utterance_s and max_ahead_s must be positive")
        if vad not in ("webrtc", "silero"):
            raise ValueError(f"vad must be 'webrtc' or 'silero', not {vad!r}")
        if tts is not True and tts is not False and not isinstance(tts, Node):
            raise TypeError("tts must be True, False or a text-to-speech Node")
        self._init_kwargs["reply"] = reply  # given positionally: sessions clone the node with it
        self._params.pop("reply", None)  # a function has no place in a manifest
        self.reply = reply
        self.pause_ms = float(pause_ms)
        self.min_speech_ms = float(min_speech_ms)
        self.pre_roll_ms = float(pre_roll_ms)
        self.max_utterance_s = float(max_utterance_s)
        self.vad = vad
        self.aggressiveness = aggressiveness
        self.interrupt = interrupt
        self.show_text = show_text
        self.max_ahead_s = float(max_ahead_s)
        self._tts_option = tts
        self._tts: Node | None = None
        self._vad: Node = self._make_vad()
        self._resample = FastResample(target_rate=VAD_RATE, channels=1)
        # caller side (the node's worker thread)
        self._input_samples = 0  # at VAD_RATE: the input clock
        self._ring: deque[np.ndarray] = deque()
        self._ring_samples = 0
        self._utterance: list[np.ndarray] | None = None
        self._utterance_samples = 0
        self._wait_for_silence = False  # after a cut or an ignored utterance: no new one until speech ends
        self._playing: deque[AudioData] = deque()  # reply audio ready to release, of the current turn
        self._play_input0 = 0.0  # input clock, wall clock and reply audio released since playing began
        self._play_t0 = 0.0
        self._released_s = 0.0
        # shared with the reply thread
        self._cond = threading.Condition()
        self._jobs: deque[tuple[int, AudioData]] = deque()
        self._ready: deque[tuple[int, Any]] = deque()
        self._ready_s = 0.0
        self._turn = 0  # the newest turn submitted
        self._floor = 1  # turns below this are cancelled
        self._busy_turn = 0  # the turn the reply thread works on (0: idle)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.turns: deque[dict[str, Any]] = deque(maxlen=256)  # one record per utterance answered (newest)
        self._submitted_at: dict[int, float] = {}
        self._counts = {"utterances": 0, "replies": 0, "interrupted": 0, "ignored": 0, "truncated": 0,
                        "errors": 0, "reply_audio_s": 0.0}

    def _make_vad(self) -> Node:
        if self.vad == "silero":
            return SileroVAD(min_speech_duration_ms=self.min_speech_ms, min_silence_duration_ms=self.pause_ms,
                             passthrough=False)
        return WebRTCVAD(aggressiveness=self.aggressiveness, min_speech_ms=self.min_speech_ms,
                         min_silence_ms=self.pause_ms, passthrough=False)

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._tts_option is True:
            self._tts = HibariTTS()
        elif isinstance(self._tts_option, Node):
            self._tts = self._tts_option.fresh_copy()
        tts = self._tts  # a local, so the warm-up lambda sees it narrowed to a Node
        if tts is not None:
            await tts.start()  # the voice loads before media flows
            # hibari's first synthesis costs ~2 s more (warm-up): pay it here, not on the first reply
            await asyncio.to_thread(lambda: list(_values(tts.process(TextData("hello", channel="tts")))))
        self._thread = threading.Thread(target=self._reply_loop, name="rm-reply-on-pause", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._floor = self._turn + 1
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            if self._thread.is_alive():
                log.warning("ReplyOnPause: the reply function was still running 5 s after close")
        if self._tts is not None:
            await self._tts.stop()

    # -- public state ----------------------------------------------------------------------------------
    @property
    def input_time_s(self) -> float:
        """Seconds of audio received so far (the clock that utterances and turns are timed on)."""
        return self._input_samples / VAD_RATE

    def counters(self) -> dict[str, Any]:
        """``utterances`` answered, ``replies`` completed, ``interrupted`` / ``ignored`` / ``truncated``
        utterances or replies, reply ``errors``, ``reply_audio_s`` sent, ``last_latency_ms`` (end of the
        utterance to the first reply audio ready), ``busy`` (a reply pending or playing)."""
        with self._cond:  # called from the pipeline loop while the node's threads update them
            out: dict[str, Any] = dict(self._counts)
            latencies = [t["latency_ms"] for t in self.turns if t.get("latency_ms") is not None]
        out["reply_audio_s"] = round(out["reply_audio_s"], 3)
        out["last_latency_ms"] = latencies[-1] if latencies else None
        out["busy"] = self._reply_active()
        return out

    # -- the caller's audio ----------------------------------------------------------------------------
    def process(self, data: RuntimeData) -> Any:
        if not isinstance(data, AudioData):
            return data
        outs: list[RuntimeData] = []
        for piece in self._as_mono16(data):
            outs += self._hear(piece)
        outs += self._collect_ready()
        outs += self._release(data.duration_s)
        return outs

    def _as_mono16(self, data: AudioData) -> list[AudioData]:
        if data.sample_rate == VAD_RATE and data.channels == 1:
            return [data]
        return [d for d in self._resample.process(data) if isinstance(d, AudioData)]

    def _hear(self, piece: AudioData) -> list[RuntimeData]:
        samples = piece.samples[:, 0]
        self._input_samples += len(samples)
        event = self._vad.process(piece)
        event = event[0] if isinstance(event, list) else event
        v = event.value if event is not None else {}
        outs: list[RuntimeData] = []
        speech, start, end = bool(v.get("has_speech")), bool(v.get("is_speech_start")), bool(v.get("is_speech_end"))
        if self._utterance is not None:
            self._utterance.append(samples)
            self._utterance_samples += len(samples)
            if end or not speech:
                self._submit(truncated=False)
            elif self._utterance_samples >= self.max_utterance_s * VAD_RATE:
                self._submit(truncated=True)
                self._wait_for_silence = True
            return outs
        self._remember(samples)
        if self._wait_for_silence:
            if not speech:
                self._wait_for_silence = False
            return outs
        if start or speech:
            if self._reply_active():
                if not self.interrupt:
                    with self._cond:
                        self._counts["ignored"] += 1
                    self._wait_for_silence = True
                    return outs
                self._cancel_reply()
            self._utterance = list(self._ring)
            self._utterance_samples = self._ring_samples
            self._ring.clear()
            self._ring_samples = 0
        return outs

    def _remember(self, samples: np.ndarray) -> None:
        self._ring.append(samples)
        self._ring_samples += len(samples)
        keep = int(self.pre_roll_ms * VAD_RATE / 1000)
        while self._ring and self._ring_samples - len(self._ring[0]) >= keep:
            self._ring_samples -= len(self._ring.popleft())

    def _submit(self, *, truncated: bool) -> None:
        audio = AudioData(np.concatenate(self._utterance or [np.zeros(0, np.float32)]), VAD_RATE)
        self._utterance = None
        self._utterance_samples = 0
        with self._cond:
            self._turn += 1
            self._counts["utterances"] += 1
            if truncated:
                self._counts["truncated"] += 1
            self.turns.append({"turn": self._turn, "utterance_s": round(audio.duration_s, 3),
                               "submitted_at_s": round(self.input_time_s, 3), "truncated": truncated,
                               "latency_ms": None})
            self._submitted_at[self._turn] = time.perf_counter()
            self._jobs.append((self._turn, audio))
            self._cond.notify_all()

    def _reply_active(self) -> bool:
        with self._cond:
            pending = (bool(self._jobs) or self._busy_turn >= self._floor
                       or any(t >= self._floor for t, _ in self._ready))
        return pending or bool(self._playing)

    def _cancel_reply(self) -> None:
        with self._cond:
            self._floor = self._turn + 1
            self._jobs.clear()
            self._ready.clear()
            self._ready_s = 0.0
            self._counts["interrupted"] += 1
            self._cond.notify_all()
        self._playing.clear()

    def _collect_ready(self) -> list[RuntimeData]:
        outs: list[RuntimeData] = []
        with self._cond:
            while self._ready:
                turn, item = self._ready.popleft()
                if turn < self._floor:
                    continue
                if isinstance(item, AudioData):
                    self._ready_s -= item.duration_s
                    if not self._playing:  # playing (again) from here: both release clocks restart
                        self._play_input0, self._play_t0, self._released_s = self.input_time_s, time.perf_counter(), 0.0
                    self._playing.append(item)
                else:
                    outs.append(item)
            self._cond.notify_all()
        return outs

    def _release(self, seconds: float | None) -> list[RuntimeData]:
        """Reply audio up to what has been heard since it became ready, and never faster than real time
        (``seconds`` None: all of it). Input processed in a burst (a backlog catching up) would otherwise
        push a standing backlog into the return track, which trims it."""
        if seconds is None:
            outs: list[RuntimeData] = list(self._playing)
            self._playing.clear()
        else:
            outs = []
            heard = self.input_time_s - self._play_input0
            wall = time.perf_counter() - self._play_t0 + RELEASE_LEAD_S
            allowed = min(heard, wall) - self._released_s
            while self._playing and allowed > 1e-9:
                head = self._playing.popleft()
                take = min(head.num_samples, max(1, round(allowed * head.sample_rate)))
                if take < head.num_samples:
                    self._playing.appendleft(head.replace(samples=head.samples[take:]))
                    head = head.replace(samples=head.samples[:take])
                allowed -= head.duration_s
                self._released_s += head.duration_s
                outs.append(head)
        if outs:
            with self._cond:
                self._counts["reply_audio_s"] += sum(p.duration_s for p in outs if isinstance(p, AudioData))
        return outs

    def flush(self) -> Any:
        """End of stream: answer the utterance in progress, wait for pending replies, send all of them."""
        if self._utterance is not None and self._utterance_samples:
            self._submit(truncated=False)
        deadline = time.monotonic() + 60.0
        with self._cond:
            while (self._jobs or self._busy_turn >= self._floor) and time.monotonic() < deadline:
                self._cond.wait(0.05)
        outs = self._collect_ready()
        return outs + self._release(None)

    # -- the reply thread ------------------------------------------------------------------------------
    def _reply_loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                turn, audio = self._jobs.popleft()
                self._busy_turn = turn
            try:
                self._answer(turn, audio)
            finally:
                with self._cond:
                    self._busy_turn = 0
                    self._cond.notify_all()

    def _cancelled(self, turn: int) -> bool:
        return turn < self._floor or self._stopping

    def _answer(self, turn: int, audio: AudioData) -> None:
        first_speech = True
        try:
            for value in _values(self.reply(audio)):
                if self._cancelled(turn):
                    return
                if value is None:
                    continue
                if isinstance(value, str):
                    if self.show_text and value.strip():
                        self._put(turn, TextData(value, channel="ui"))
                    for speech in self._speak(value):
                        if self._cancelled(turn):
                            return
                        if first_speech:  # the voice starts with ~0.3 s of silence: the caller waits less
                            speech, first_speech = _trim_leading_silence(speech), False
                        self._put(turn, speech)
                elif isinstance(value, AudioData):
                    self._put(turn, value)
                else:
                    raise TypeError(f"reply returned {type(value).__name__}; expected str, AudioData or None")
            with self._cond:
                if not self._cancelled(turn):
                    self._counts["replies"] += 1
        except Exception as exc:
            log.debug("reply function failed", exc_info=True)
            with self._cond:
                self._counts["errors"] += 1
            self._put(turn, ErrorData(self.id or "ReplyOnPause", f"reply failed: {exc}", type(exc).__name__))

    def _speak(self, text: str) -> Iterator[AudioData]:
        if self._tts is None:
            raise RuntimeError("reply returned text but this ReplyOnPause has tts=False: return AudioData instead")
        for out in _values(self._tts.process(TextData(text, channel="tts"))):
            if isinstance(out, AudioData):
                yield out

    def _put(self, turn: int, item: RuntimeData) -> None:
        with self._cond:
            while (isinstance(item, AudioData) and self._ready_s > self.max_ahead_s
                   and not self._cancelled(turn)):
                self._cond.wait(0.1)
            if self._cancelled(turn):
                return
            if isinstance(item, AudioData):
                self._ready_s += item.duration_s
                record = next((t for t in self.turns if t["turn"] == turn), None)
                t0 = self._submitted_at.pop(turn, None)
                if record is not None and t0 is not None:
                    record["latency_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            self._ready.append((turn, item))


def _values(result: Any) -> Iterator[Any]:
    """The pieces of a reply: a single value, or each item of an iterable (not of a str or AudioData)."""
    if result is None or isinstance(result, (str, AudioData, RuntimeData)):
        yield result
        return
    if isinstance(result, Iterable):
        yield from result
        return
    yield result


def _trim_leading_silence(audio: AudioData, *, threshold: float = 0.003, keep_s: float = 0.03) -> AudioData:
    """``audio`` from ``keep_s`` before its first 10 ms frame above ``threshold`` RMS (about -50 dBFS)."""
    hop = max(1, audio.sample_rate // 100)
    mono = audio.samples[:, 0]
    frames = mono[: len(mono) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) > threshold)
    if not loud.size:
        return audio
    start = max(0, int(loud[0]) * hop - int(keep_s * audio.sample_rate))
    return audio if start == 0 else audio.replace(samples=audio.samples[start:])

