"""Recording a stream's incoming audio to a WAV file: ``rm.stream(p, record="session.wav")``.

A :class:`WavRecorder` node is added as an extra source of the streamed pipeline (like the latency probe), so
it sees exactly the frames the pipeline gets, writes them as 16-bit PCM on its own worker thread and outputs
nothing. The file is written as the audio arrives and closed when the session ends; a browser that
reconnects starts a new session, which writes ``<name>-2.wav``, ``-3`` and so on beside the first.
"""

from __future__ import annotations

import itertools
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np

from .runtime import AudioData, Node, Pipeline, RuntimeData, load_manifest

__all__ = ["RECORDER_NODE_ID", "WavRecorder", "with_recorder"]

RECORDER_NODE_ID = "_rm_recorder"


class WavRecorder(Node, register=False):
    """Writes every ``AudioData`` input to ``path`` (16-bit PCM at the first frame's rate and channels)."""

    threaded = True  # file I/O off the pipeline loop

    def __init__(self, path: str | Path, *, counter: Any = None, lock: Any = None) -> None:
        self.path = Path(path)
        self._counter = counter if counter is not None else itertools.count(1)
        self._lock = lock if lock is not None else threading.Lock()
        self._file: wave.Wave_write | None = None
        self.written_path: Path | None = None
        self.frames_written = 0
        self.skipped = 0  # frames whose rate or channel count differs from the file's (counted, not written)
        self._format: tuple[int, int] | None = None
        self._stopped = False
        self._write_lock = threading.Lock()  # a write in flight on the worker thread vs stop() on the loop

    def _open(self, rate: int, channels: int) -> wave.Wave_write:
        with self._lock:
            n = next(self._counter)
        path = self.path if n == 1 else self.path.with_name(f"{self.path.stem}-{n}{self.path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        f = wave.open(str(path), "wb")  # noqa: SIM115  (open for the session's life; closed in close())
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        self.written_path, self._format = path, (rate, channels)
        return f

    def process(self, data: RuntimeData) -> None:
        if not isinstance(data, AudioData):
            return None
        with self._write_lock:
            if not self._stopped:
                self._write(data)
        return None

    def _write(self, data: AudioData) -> None:
        if self._file is None:
            self._file = self._open(data.sample_rate, data.channels)
        if (data.sample_rate, data.channels) != self._format:
            self.skipped += 1
            return
        pcm = np.clip(data.samples, -1.0, 1.0) * 32767.0
        self._file.writeframes(pcm.astype("<i2").tobytes())
        self.frames_written += data.num_samples

    async def stop(self) -> None:
        with self._write_lock:
            self._stopped = True  # frames still queued when the session closes are not written to a new file
            if self._file is not None:
                self._file.close()
                self._file = None


def with_recorder(pipeline: Any, path: str | Path) -> Pipeline:
    """A copy of ``pipeline`` with a :class:`WavRecorder` source writing to ``path`` (the original is unchanged)."""
    src = load_manifest(pipeline)
    out = src.copy()
    # one counter shared by every session's clone of the node: each session gets its own file
    out.add(RECORDER_NODE_ID, WavRecorder(path=path, counter=itertools.count(1), lock=threading.Lock()))
    return out.validate()
