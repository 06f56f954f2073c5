"""Translation latency: Apertium eng-spa (the TranslateNode default) per sentence.

    python bench/translate.py            # writes the "Translation" section of bench/results.md
    python bench/translate.py --no-write # print only

Each sentence is translated by ``ApertiumTranslator.translate`` (one Apertium pipeline per call, as
TranslateNode does) ``--rounds`` times; the table gives wall-clock latency per sentence.
"""

from __future__ import annotations

import argparse
import statistics
import time

from stt import FREE_SENTENCES

from remotemedia_nbrtc.nodes.text import ApertiumTranslator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    apertium = ApertiumTranslator()
    times: list[float] = []
    samples: list[tuple[str, str]] = []
    for _ in range(args.rounds):
        for text in FREE_SENTENCES:
            started = time.perf_counter()
            out = apertium.translate(text, "en", "es")
            times.append((time.perf_counter() - started) * 1000)
            if len(samples) < len(FREE_SENTENCES):
                samples.append((text, out))
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    body = (
        f"Apertium {apertium.mode('en', 'es')} (Debian apertium + apertium-eng-spa), {len(FREE_SENTENCES)} sentences "
        f"x {args.rounds} rounds, one Apertium pipeline per sentence (as TranslateNode runs it).\n\n"
        "| translator | sentences | median ms | p95 ms | max ms |\n|---|---|---|---|---|\n"
        f"| apertium eng-spa | {len(times)} | {statistics.median(times):.0f} | {p95:.0f} | {times[-1]:.0f} |\n\n"
        "Samples: " + "; ".join(f'"{a}" -> "{b}"' for a, b in samples[:4])
    )
    print(body)
    if not args.no_write:
        from report import write_section

        write_section("Translation", body, command="python bench/translate.py")


if __name__ == "__main__":
    main()
