"""TranslateNode with pluggable translators, and the phrase-book demo (which is not machine translation)."""

import re

import pytest

from remotemedia_nbrtc import JsonData, PipelineRunner, TextData
from remotemedia_nbrtc.nodes.text import ApertiumTranslator, PhrasebookTranslator, TranslateNode

pytestmark = pytest.mark.timeout(30)


def test_phrasebook_matches_longest_phrases_and_reports_unknown_words():
    book = PhrasebookTranslator()
    found = book.lookup("Turn on the lights, please!", "en", "es")
    assert found.text == "enciende las luces, por favor!"
    assert found.untranslated == []
    found = book.lookup("turn on the garage heater", "en", "es")
    assert found.text == "enciende el garage heater"
    assert found.untranslated == ["garage", "heater"]
    assert PhrasebookTranslator.is_machine_translation is False
    with pytest.raises(ValueError):
        book.lookup("hello", "en", "xx")


def test_custom_phrasebook():
    book = PhrasebookTranslator({("en", "pirate"): {"hello": "ahoy", "my friend": "matey"}})
    assert book.translate("Hello my friend", "en", "pirate") == "ahoy matey"
    assert book.pairs == [("en", "pirate")]


def test_translate_node_with_a_callable_and_with_an_object():
    calls = []

    def shout(text, source, target):
        calls.append((text, source, target))
        return f"[{target}] {text.upper()}"

    node = TranslateNode(translator=shout, source="en", target="xx", emit_json=False)
    (out,) = node.process(TextData("hi there", channel="ui"))
    assert out.text == "[xx] HI THERE" and out.channel == "ui"
    assert out.metadata["source_text"] == "hi there" and out.metadata["machine_translation"] is True
    assert calls == [("hi there", "en", "xx")]
    node.target = "yy"  # live
    assert node.process(TextData("a"))[0].text == "[yy] A"

    class Reverser:
        name = "reverser"

        def translate(self, text, source, target):
            return text[::-1]

    json_event, text = TranslateNode(translator=Reverser(), target="xx").process(TextData("abc"))
    assert text.text == "cba" and json_event.value["translator"] == "reverser"
    with pytest.raises(ValueError):
        TranslateNode(translator=42)


def test_translate_node_passes_other_data_and_translates_final_transcripts():
    node = TranslateNode(translator="phrasebook", target="de")
    other = JsonData({"kind": "level"})
    assert node.process(other) is other
    partial = JsonData({"kind": "transcript", "text": "turn on", "final": False})
    assert node.process(partial) is partial
    event, text = node.process(JsonData({"kind": "transcript", "text": "good morning", "final": True}))
    assert text.text == "guten Morgen"
    assert event.value == {"kind": "translation", "text": "guten Morgen", "source_text": "good morning",
                           "source": "en", "target": "de", "translator": "phrasebook",
                           "machine_translation": False, "untranslated": []}


async def test_translate_node_in_a_session_from_a_manifest():
    manifest = {"version": "v1", "metadata": {"name": "tr"},
                "nodes": [{"id": "tr", "node_type": "TranslateNode",
                           "params": {"translator": "phrasebook", "target": "fr", "emitJson": False,
                                      "textChannel": "ui"}}],
                "connections": []}
    session = await PipelineRunner().create_stream_session(manifest)
    await session.send_input(TextData("thank you"))
    await session.end_input()
    outs = [o async for o in session]
    await session.close()
    assert [(o.text, o.channel, o.metadata["translator"]) for o in outs] == [("merci", "ui", "phrasebook")]


# -- Apertium (real machine translation; CI installs apertium + apertium-eng-spa, so no skip) --------------

def test_apertium_translates_free_english_sentences_to_spanish():
    apertium = ApertiumTranslator()
    assert "eng-spa" in apertium.pairs and apertium.mode("en", "es") == "eng-spa"
    out = apertium.translate("The children played football in the park after school.", "en", "es")
    words = set(re.findall(r"\w+", out.lower()))
    assert {"niños", "parque", "fútbol"} <= words, out
    assert "children" not in words and "park" not in words
    assert apertium.translate("Good morning", "en", "es").lower().startswith("buenos d")
    assert apertium.translate("El perro es grande.", "es", "en").lower() == "the dog is big."
    assert apertium.translate("   ", "en", "es") == ""


def test_translate_node_defaults_to_apertium_and_a_missing_pair_is_an_error():
    node = TranslateNode(source="en", target="es")
    event, text = node.process(JsonData({"kind": "transcript", "text": "the door is open", "final": True}))
    assert event.value["translator"] == "apertium" and event.value["machine_translation"] is True
    assert "puerta" in text.text.lower() and "abierta" in text.text.lower(), text.text
    with pytest.raises(ValueError, match="apertium-eng-deu|apertium-deu-eng"):
        TranslateNode(source="en", target="de")  # not the phrase book: a clear error
    node.target = "xx"  # a live change to a missing pair fails clearly too
    with pytest.raises(ValueError, match="no Apertium pair"):
        node.process(TextData("hello"))


def test_translate_events_off_passes_transcripts_on_and_translates_text_once():
    node = TranslateNode(translator="phrasebook", target="es", translate_events=False, emit_json=False)
    event = JsonData({"kind": "transcript", "text": "hello", "final": True})
    assert node.process(event) is event
    assert [o.text for o in node.process(TextData("hello"))] == ["hola"]
