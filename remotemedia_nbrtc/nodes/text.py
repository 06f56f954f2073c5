"""Text nodes: machine translation behind a plain interface (Apertium by default), and a phrase-book demo.

:class:`TranslateNode` accepts any callable ``translate(text, source, target) -> str`` (or an object
with such a ``.translate`` method). The default, :class:`ApertiumTranslator`, is real rule-based
machine translation with Debian's ``apertium`` and a language-pair package (``apertium-eng-spa`` for
English <-> Spanish), offline. :class:`PhrasebookTranslator` is only a word/phrase look-up table for
demos and tests: it is **not** machine translation, and every output it makes says so in its metadata.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..runtime.data import JsonData, RuntimeData, TextData
from ..runtime.node import Node

__all__ = [
    "ApertiumTranslator", "DEMO_PHRASEBOOKS", "PhrasebookTranslator",
    "TranslateNode", "TranslationResult", "Translator",
]


class Translator(Protocol):
    """Anything with ``translate(text, source, target) -> str``."""

    def translate(self, text: str, source: str, target: str) -> str: ...


@dataclass
class TranslationResult:
    """What :meth:`PhrasebookTranslator.lookup` found."""

    text: str
    untranslated: list[str] = field(default_factory=list)


# A tiny demo vocabulary (home-automation words). Not a translation model.
DEMO_PHRASEBOOKS: dict[tuple[str, str], dict[str, str]] = {
    ("en", "es"): {
        "good morning": "buenos días", "good night": "buenas noches", "thank you": "gracias",
        "turn on": "enciende", "turn off": "apaga", "the lights": "las luces", "the light": "la luz",
        "the kitchen": "la cocina", "the bedroom": "el dormitorio", "the door": "la puerta",
        "the music": "la música", "open": "abre", "close": "cierra", "stop": "detén", "play": "pon",
        "hello": "hola", "yes": "sí", "no": "no", "please": "por favor", "in": "en", "and": "y",
        "kitchen": "cocina", "lights": "luces", "door": "puerta", "music": "música", "the": "el",
    },
    ("en", "de"): {
        "good morning": "guten Morgen", "good night": "gute Nacht", "thank you": "danke",
        "turn on": "schalte ein", "turn off": "schalte aus", "the lights": "das Licht",
        "the kitchen": "die Küche", "the door": "die Tür", "the music": "die Musik", "open": "öffne",
        "close": "schließe", "stop": "stoppe", "hello": "hallo", "yes": "ja", "no": "nein",
        "please": "bitte", "in": "in", "and": "und", "kitchen": "Küche", "lights": "Lichter", "the": "die",
    },
    ("en", "fr"): {
        "good morning": "bonjour", "good night": "bonne nuit", "thank you": "merci",
        "turn on": "allume", "turn off": "éteins", "the lights": "les lumières", "the kitchen": "la cuisine",
        "the door": "la porte", "the music": "la musique", "open": "ouvre", "close": "ferme",
        "stop": "arrête", "hello": "bonjour", "yes": "oui", "no": "non", "please": "s'il vous plaît",
        "in": "dans", "and": "et", "kitchen": "cuisine", "lights": "lumières", "the": "le",
    },
}


class PhrasebookTranslator:
    """Replaces known words and phrases from a dictionary, longest match first. **Not** machine translation.

    Word order, agreement and anything not in the phrase book are left as they are; the words it
    could not look up are reported (``lookup(...).untranslated``). Use it to demo or test a
    translation pipeline; plug a real engine into :class:`TranslateNode` for real translation.
    """

    name = "phrasebook"
    is_machine_translation = False

    def __init__(self, phrasebooks: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> None:
        books = DEMO_PHRASEBOOKS if phrasebooks is None else phrasebooks
        self._books = {pair: {k.lower(): v for k, v in book.items()} for pair, book in books.items()}

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._books)

    def lookup(self, text: str, source: str, target: str) -> TranslationResult:
        book = self._books.get((source, target))
        if book is None:
            raise ValueError(f"no phrase book for {source}->{target} (have: {self.pairs})")
        longest = max((len(k.split()) for k in book), default=1)
        tokens = re.findall(r"[\w']+|[^\w\s]", text)
        out: list[str] = []
        untranslated: list[str] = []
        i = 0
        while i < len(tokens):
            for n in range(min(longest, len(tokens) - i), 0, -1):
                key = " ".join(tokens[i:i + n]).lower()
                if key in book:
                    out.append(book[key])
                    i += n
                    break
            else:
                token = tokens[i]
                out.append(token)
                if re.match(r"\w", token):
                    untranslated.append(token)
                i += 1
        joined = " ".join(out)
        return TranslationResult(re.sub(r"\s+([^\w\s'])", r"\1", joined), untranslated)

    def translate(self, text: str, source: str, target: str) -> str:
        return self.lookup(text, source, target).text


# ISO 639-1 -> the ISO 639-3 codes Apertium's newer pairs use (eng-spa); older pairs use 639-1 (en-gl)
_ISO3 = {"en": "eng", "es": "spa", "ca": "cat", "gl": "glg", "eo": "epo", "eu": "eus", "fr": "fra",
         "de": "deu", "it": "ita", "pt": "por", "oc": "oci", "an": "arg", "ro": "ron", "nl": "nld", "sh": "hbs"}
APERTIUM_MODES = Path("/usr/share/apertium/modes")


class ApertiumTranslator:
    """Rule-based machine translation with Apertium (offline; Debian ``apertium`` + a pair package).

    Language codes may be ISO 639-1 (``"en"``) or the pair's own (``"eng"``). A pair that is not
    installed raises ``ValueError`` naming the Debian package to install; there is no silent fallback.
    Unknown words are passed through unmarked (``apertium -u``). One sentence takes ~0.5 s (a fresh
    Apertium pipeline per call; bench/results.md "Translation").
    """

    name = "apertium"
    is_machine_translation = True

    def __init__(self, *, modes_dir: str | Path = APERTIUM_MODES, timeout_s: float = 30.0) -> None:
        executable = shutil.which("apertium")
        if executable is None:
            raise RuntimeError("Apertium is not installed: apt-get install apertium apertium-eng-spa "
                               "(Binder: binder/apt.txt)")
        self.executable: str = executable
        self.modes_dir = Path(modes_dir)
        self.timeout_s = timeout_s

    @property
    def pairs(self) -> list[str]:
        """The installed translation modes, e.g. ``["eng-spa", "spa-eng"]``."""
        return sorted(p.stem for p in self.modes_dir.glob("*.mode")) if self.modes_dir.is_dir() else []

    def mode(self, source: str, target: str) -> str:
        """The Apertium mode for ``source -> target``; ``ValueError`` when no such pair is installed."""
        installed = set(self.pairs)
        for s in dict.fromkeys((source, _ISO3.get(source, source))):
            for t in dict.fromkeys((target, _ISO3.get(target, target))):
                if f"{s}-{t}" in installed:
                    return f"{s}-{t}"
        a, b = _ISO3.get(source, source), _ISO3.get(target, target)
        raise ValueError(f"no Apertium pair for {source}->{target} is installed (installed: {sorted(installed)}); "
                         f"install its Debian package, e.g. apt-get install apertium-{a}-{b} or apertium-{b}-{a}")

    def translate(self, text: str, source: str, target: str) -> str:
        mode = self.mode(source, target)
        if not text.strip():
            return ""
        done = subprocess.run([self.executable, "-u", mode], input=text, capture_output=True, text=True,
                              timeout=self.timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"apertium {mode} failed ({done.returncode}): {done.stderr.strip()[:300]}")
        return done.stdout.strip()


class TranslateNode(Node):
    """Translates ``TextData`` from ``source`` to ``target`` language with a pluggable translator.

    ``translator``: ``"apertium"`` (the default: :class:`ApertiumTranslator`, real machine
    translation; a language pair that is not installed is an error, never a silent fallback),
    a callable ``(text, source, target) -> str``, an object with ``.translate``, or
    ``"phrasebook"`` (the demo :class:`PhrasebookTranslator`, which is not machine translation —
    its outputs carry ``metadata["machine_translation"] = False``). Outputs
    ``TextData(translated, channel=text_channel)`` with the original in ``metadata["source_text"]``
    and, with ``emit_json``, a ``{"kind": "translation", ...}`` event. Final transcript events
    (``{"kind": "transcript", "final": true}``) are translated too unless ``translate_events=False``
    (after a :class:`~.speech.SpeechToTextNode`, which emits both an event and ``TextData`` per final,
    that translates each final once and passes the transcript events on). Other inputs pass through.
    """

    node_type = "TranslateNode"
    threaded = True  # a real model is slow: keep it off the event loop

    def __init__(self, *, translator: Any = "apertium", source: str = "en", target: str = "es",
                 text_channel: str | None = None, emit_json: bool = True, translate_events: bool = True) -> None:
        self.translator = translator
        self.translate_events = translate_events
        self.source = source
        self.target = target
        self.text_channel = text_channel
        self.emit_json = emit_json
        self._resolve()  # fail early on a bad translator

    def _resolve(self) -> tuple[Callable[[str, str, str], str], Any]:
        t = self.translator
        if t == "phrasebook":
            t = self.translator = PhrasebookTranslator()
        elif t == "apertium":
            t = self.translator = ApertiumTranslator()
        if isinstance(t, ApertiumTranslator):
            t.mode(self.source, self.target)  # the pair is installed, or a clear error now
        if hasattr(t, "translate") and callable(t.translate):
            return t.translate, t
        if callable(t):
            return t, t
        raise ValueError("translator must be a callable (text, source, target) -> str, an object with "
                         "a .translate method, 'apertium' or 'phrasebook'")

    def process(self, data: RuntimeData) -> Any:
        if isinstance(data, TextData):
            text, channel, timestamp_us, stream_id = data.text, data.channel, data.timestamp_us, data.stream_id
        elif (self.translate_events and isinstance(data, JsonData) and isinstance(data.value, dict)
              and data.value.get("kind") == "transcript"
              and data.value.get("final") and data.value.get("text")):
            text, channel, timestamp_us, stream_id = str(data.value["text"]), "tts", data.timestamp_us, data.stream_id
        else:
            return data
        fn, obj = self._resolve()
        source, target = self.source, self.target
        if isinstance(obj, PhrasebookTranslator):
            found = obj.lookup(text, source, target)
            translated, untranslated = found.text, found.untranslated
        else:
            translated, untranslated = str(fn(text, source, target)), None
        name = getattr(obj, "name", getattr(obj, "__name__", type(obj).__name__))
        machine = bool(getattr(obj, "is_machine_translation", True))
        meta = {"source_text": text, "source": source, "target": target, "translator": name,
                "machine_translation": machine}
        if untranslated is not None:
            meta["untranslated"] = untranslated
        outs: list[RuntimeData] = []
        if self.emit_json:
            outs.append(JsonData({"kind": "translation", "text": translated, **meta},
                                 timestamp_us=timestamp_us, stream_id=stream_id))
        outs.append(TextData(translated, channel=self.text_channel or channel, timestamp_us=timestamp_us,
                             stream_id=stream_id, metadata=meta))
        return outs
