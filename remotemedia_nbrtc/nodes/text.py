"""Text nodes: translation behind a plain interface, and an honest phrase-book demo translator.

No machine-translation model ships with this package. :class:`TranslateNode` accepts any callable
``translate(text, source, target) -> str`` (or an object with such a ``.translate`` method), so a
real engine plugs in. :class:`PhrasebookTranslator` is only a word/phrase look-up table for demos
and tests: it is **not** machine translation, and every output it makes says so in its metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..runtime.data import JsonData, RuntimeData, TextData
from ..runtime.node import Node

__all__ = ["DEMO_PHRASEBOOKS", "PhrasebookTranslator", "TranslateNode", "TranslationResult", "Translator"]


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


class TranslateNode(Node):
    """Translates ``TextData`` from ``source`` to ``target`` language with a pluggable translator.

    ``translator``: a callable ``(text, source, target) -> str``, an object with ``.translate``,
    or ``"phrasebook"`` (default: the demo :class:`PhrasebookTranslator`, which is not machine
    translation — its outputs carry ``metadata["machine_translation"] = False``). Outputs
    ``TextData(translated, channel=text_channel)`` with the original in ``metadata["source_text"]``
    and, with ``emit_json``, a ``{"kind": "translation", ...}`` event. Final transcript events
    (``{"kind": "transcript", "final": true}``) are translated too. Other inputs pass through.
    """

    node_type = "TranslateNode"
    threaded = True  # a real model is slow: keep it off the event loop

    def __init__(self, *, translator: Any = "phrasebook", source: str = "en", target: str = "es",
                 text_channel: str | None = None, emit_json: bool = True) -> None:
        self.translator = translator
        self.source = source
        self.target = target
        self.text_channel = text_channel
        self.emit_json = emit_json
        self._resolve()  # fail early on a bad translator

    def _resolve(self) -> tuple[Callable[[str, str, str], str], Any]:
        t = self.translator
        if t == "phrasebook":
            t = self.translator = PhrasebookTranslator()
        if hasattr(t, "translate") and callable(t.translate):
            return t.translate, t
        if callable(t):
            return t, t
        raise ValueError("translator must be a callable (text, source, target) -> str, an object with "
                         "a .translate method, or 'phrasebook'")

    def process(self, data: RuntimeData) -> Any:
        if isinstance(data, TextData):
            text, channel, timestamp_us, stream_id = data.text, data.channel, data.timestamp_us, data.stream_id
        elif (isinstance(data, JsonData) and isinstance(data.value, dict) and data.value.get("kind") == "transcript"
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
