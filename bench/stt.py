"""Speech to text: word accuracy and real-time factor, general model vs phrase list, runtime vs WebRTC.

One command (ICE on loopback; run it in a network namespace with only ``lo`` if the machine has others):

    python bench/stt.py            # writes the "Speech to text" section of bench/results.md
    python bench/stt.py --no-write # print only

Fixture: the 12 HOME_COMMANDS (62 words) spoken by espeak-ng, 1 s of leading silence, 0.8 s after each
sentence (34 s), generated at run time. Paths:

- runtime: 20 ms chunks of 16 kHz audio pushed into a session as fast as it takes them;
- WebRTC: the same track as a WAV, sent by ``ClientPeer`` + ``WavFileSource`` (48 kHz Opus, real time)
  to a standalone ``WebRTCServer`` over 127.0.0.1; transcripts come back on the data channel
  (``remotemedia_nbrtc.testing.stt_webrtc``, the path of tests/transport/test_stt_over_webrtc.py);
- WebRTC + VAD gate: WebRTCVAD -> SpeechGate -> STT, so only speech (with padding) is decoded.

RTF (node) = wall-clock time inside the STT node's ``process``/``flush`` / streamed audio duration;
RTF (CPU) = CPU time of the STT thread / streamed audio duration. For the runtime path, "session RTF" is
the whole session's wall time / audio duration when audio is pushed as fast as possible.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from remotemedia_nbrtc.testing.speech import HOME_COMMANDS, SttMeasurement, measure_stt_async
from remotemedia_nbrtc.testing.stt_webrtc import (
    TimedPocketSphinxSTT,
    measure_stt_over_webrtc_async,
    webrtc_track,
)

MODES = (("general", None), ("phrase list", list(HOME_COMMANDS)))


async def run_all() -> list[tuple[str, str, SttMeasurement]]:
    track = webrtc_track(HOME_COMMANDS)
    rows: list[tuple[str, str, SttMeasurement]] = []
    for mode, phrases in MODES:
        node = TimedPocketSphinxSTT(phrases=phrases)
        m = await measure_stt_async(track=track, phrases=phrases, node=node)
        m.rtf_node = m.extra["stt_wall_s"] / m.audio_s  # type: ignore[attr-defined]
        rows.append(("runtime (as fast as possible)", mode, m))
        print(rows[-1][0], "|", m.summary(), flush=True)
    for gate, path in ((False, "WebRTC (Opus, real time)"), (True, "WebRTC + VAD gate")):
        for mode, phrases in MODES:
            m = await measure_stt_over_webrtc_async(track=track, phrases=phrases, gate=gate)
            m.rtf_node = m.rtf  # type: ignore[attr-defined]
            rows.append((path, mode, m))
            print(path, "|", m.summary(), flush=True)
    return rows


def table(rows: list[tuple[str, str, SttMeasurement]]) -> str:
    lines = [
        "| path | model | word accuracy | RTF (node, wall) | RTF (CPU) | session RTF | decoder start s | finals |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, mode, m in rows:
        session_rtf = f"{m.rtf:.3f}" if path.startswith("runtime") else "real time"
        lines.append(
            f"| {path} | {mode} | {m.accuracy:.1%} | {m.rtf_node:.3f} | {m.cpu_rtf:.3f} | {session_rtf} | "  # type: ignore[attr-defined]
            f"{m.init_s:.2f} | {len(m.finals)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results.md alone")
    args = parser.parse_args()
    rows = asyncio.run(run_all())
    audio_s = rows[0][2].audio_s
    body = (
        f"Fixture: the 12 HOME_COMMANDS (62 words) by espeak-ng, 1 s lead, 0.8 s gaps; {audio_s:.1f} s of 16 kHz "
        "audio (WebRTC: plus 1.5 s of trailing silence, sent as 48 kHz Opus in real time through a standalone "
        "WebRTCServer on 127.0.0.1; transcripts read from the data channel). Word accuracy = 1 - WER over the "
        "concatenated finals (order-aware). RTF (node) = wall time inside the STT node / audio duration; "
        "RTF (CPU) = STT thread CPU time / audio duration; session RTF = whole runtime session wall time when "
        "audio is pushed as fast as possible. 'decoder start' = session start (runtime) or connect incl. "
        "session start (WebRTC).\n\n"
        + table(rows)
        + "\n\nFinals (phrase list, WebRTC + VAD gate): "
        + "; ".join(f'"{t}"' for t in rows[-1][2].finals)
        + "\n\nThe use-case bar (tests/transport/test_stt_over_webrtc.py, WebRTC + VAD gate, phrase list): "
        "word accuracy >= 75 %, RTF <= 0.3. The general en-us model is far less accurate on espeak-ng's "
        "synthetic voice (and Opus coding costs it more). Typical phrase-list errors: a leading 'turn' / 'dim' "
        "heard as 'the' or dropped, 'room blinds' -> 'on today'."
    )
    print(body)
    if not args.no_write:
        from report import write_section

        write_section("Speech to text", body, command="python bench/stt.py")


if __name__ == "__main__":
    main()
