"""Facts from licensed packages (quiz files, Wikipedia summaries, jokes, Jane Austen's novels in an R
data file), courtesy turns, and the manifest's record of every package's licence."""

from __future__ import annotations

import struct
import zlib

from model.corpus import courtesy
from model.corpus.build import GENERATED, KINDS, PACKAGES, SOURCES
from model.corpus.facts import (
    CAPITAL,
    OPPOSITE,
    first_sentences,
    joke_dialogues,
    quiz_answer,
    quiz_problems,
    wiki_problems,
)
from model.corpus.sources import austen_chapters, r_character_vectors


def test_quiz_fields_give_their_main_answer():
    assert quiz_answer("Cal{if{ornia}}|CA") == "California"
    assert quiz_answer("{{People's }Republic of }China") == "China"
    assert quiz_answer("Reykjav['i|i'|i]k") == "Reykjavik"  # the accent spelled in ASCII: the plain letter
    assert quiz_answer("Mo[z|,c|c,|c]ambique") == "Mozambique"
    assert quiz_answer("Rom[e|a]") == "Rome" and quiz_answer("Brussel{s}|Bruxelles") == "Brussels"
    assert quiz_answer("[unclosed") == "[unclosed"


def test_quiz_problems_skip_questions_with_two_answers():
    files = {name: "" for name in ("africa", "america", "asia", "europe", "state", "elements", "babies")}
    files |= {"collectives": "crows:murder\n", "posneg": "hot:cold\nhigh:low\n"}
    files["europe"] = "France:Paris\nGeorgia:Tbilisi\nAbkhazia:Sukhumi\n"
    files["state"] = "Georgia|GA:Atlanta:GA:cherokee rose\nTexas|TX:Austin:TX:bluebonnet\n"
    files["elements"] = "Au:79:196.967:Gold\n"
    files["babies"] = "cub:lion|bear\n"
    found = {k.name: {p.key: p.answer for p in v} for k, v in quiz_problems(files).items()}
    assert found["capital"] == {
        "France": "The capital of France is Paris.",
        "Texas": "The capital of Texas is Austin.",
    }
    assert found["element"] == {"gold": "The chemical symbol for gold is Au."}
    assert found["baby_animal"]["bear"] == "A baby bear is called a cub."
    assert found["animal_group"]["crows"] == "A group of crows is called a murder."
    assert found["opposite"]["cold"] == "The opposite of cold is hot."  # both ways
    assert (
        CAPITAL in quiz_problems(files)
        and OPPOSITE.families[0].templates[0] == "What is the opposite of {w}?"
    )


def test_wiki_answers_are_the_opening_sentences_and_name_the_thing_as_the_summary_does():
    text = "A warship is a ship built for war. It is armed. " + "Long sentence with many words. " * 10
    (problem,) = wiki_problems({"Warship": {"title": "Warship", "extract": text, "topic": "Technology"}})
    assert problem.fields == {"title": "a warship", "what": "What is"}
    # as many whole sentences as fit in 45 words: 11 + 6 × 5
    assert (
        problem.answer
        == (
            "A warship is a ship built for war. It is armed. " + "Long sentence with many words. " * 6
        ).strip()
    )
    assert first_sentences("One two. Three.", max_words=1) == "One two."
    assert wiki_problems({"X (film)": {"extract": text}, "Y": {"extract": "Too short."}}) == []


def test_jokes_are_kept_only_with_harmless_tags():
    jokes = [
        {"body": "I used to be a banker, but I lost interest.", "tags": ["puns", "money"]},
        {"body": "rude one", "tags": ["insults", "life"]},
        {"body": "untagged", "tags": []},
    ]
    (only,) = joke_dialogues(jokes)
    assert only[1] == {"role": "assistant", "content": "I used to be a banker, but I lost interest."}


def _rdb(*vectors: list[str]) -> bytes:
    """An R lazy-load database of character vectors, serialized as R 4 writes them (format 3)."""
    out = b""
    for strings in vectors:
        raw = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
        raw += struct.pack(">ii", 16, len(strings))
        for s in strings:
            data = s.encode()
            raw += struct.pack(">ii", 0x00040009, len(data)) + data
        out += struct.pack(">i", len(raw)) + zlib.compress(raw)
    return out


def test_austen_novels_are_read_from_the_r_data_file_one_document_per_chapter():
    novel = [
        "EMMA",
        "",
        "CHAPTER I",
        "",
        "Emma Woodhouse, handsome,",
        "clever, and _rich_.",
        "",
        "CHAPTER II",
        "",
        "Mr. Weston",
    ]
    other = ["Persuasion", "", "Chapter 1", "", "Sir Walter Elliot"]
    vectors = r_character_vectors(_rdb(novel, other))
    assert vectors == [novel, other]
    assert austen_chapters(vectors[0]) == [
        "EMMA",
        "CHAPTER I\n\nEmma Woodhouse, handsome, clever, and rich.",
        "CHAPTER II\n\nMr. Weston",
    ]
    assert austen_chapters(vectors[1])[1] == "Chapter 1\n\nSir Walter Elliot"


def test_courtesy_turns_come_first_or_after_an_exchange_and_are_answered_in_kind():
    exchange = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}]
    dialogues = courtesy.dialogues([exchange], 300, seed=1)
    firsts = [d[0]["content"] for d in dialogues]
    assert "Thank you!" in firsts or "Thanks!" in firsts
    assert sum(f in courtesy.ACTS["greeting"][0] for f in firsts) < len(firsts) / 2  # not always a greeting
    for d in dialogues:
        for said, answer in zip(d[::2], d[1::2], strict=True):
            act = next((a for a, (asks, _) in courtesy.ACTS.items() if said["content"] in asks), None)
            if act == "thanks":
                assert answer["content"] in courtesy.ACTS["thanks"][1]
            if act == "goodbye":
                assert answer["content"] in courtesy.ACTS["goodbye"][1]
    later = [d for d in dialogues if exchange[0] in d and d.index(exchange[0]) < len(d) - 2]
    assert later and all(d[-2]["content"] not in courtesy.ACTS["greeting"][0] for d in later)
    assert {"Thank you!", "Goodbye!", "Have a nice day!", "Sorry!", "How was your day?"} <= {
        s for asks, _ in courtesy.ACTS.values() for s in asks
    }


def test_every_package_records_its_licence_and_what_it_asks_of_the_weights():
    for name, package in PACKAGES.items():
        assert package.licence and package.asks and package.registry in ("pypi", "npm", "debian"), name
    assert {SOURCES[s][0] for s in SOURCES} - {"generated"} == set(PACKAGES)
    assert (
        "brown" not in SOURCES
    )  # "free for non-commercial and research use" does not fit redistributed weights
    assert "attribution" in PACKAGES["wiki"].asks and "CC BY-SA 4.0" in PACKAGES["wiki"].licence
    assert {"skills", "calendar", "courtesy"} == GENERATED and set(KINDS) <= set(SOURCES)
