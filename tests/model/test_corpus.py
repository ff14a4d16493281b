"""The corpus builder's pure parts: Brown detokenizing, WordNet parsing, skill answers, the split."""

from __future__ import annotations

import re

import pytest

from model.corpus.skills import generate
from model.corpus.sources import (
    chatterbot_conversations,
    chitchat_conversations,
    detokenize_brown,
    holdout,
    moby_dick_chapters,
    parse_wordnet_data,
    parse_wordnet_index,
    wordnet_answer,
)

BROWN = (
    "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.\n\n\n"
    "\tIt/pps did/dod n't/* agree/vb ,/, however/rb ;/. the/at city's/nn$ plan/nn (/( 1961/cd )/) "
    "failed/vbd ./.\n\tIs/bez it/pps over/rp ?/.\n"
)


def test_detokenize_brown_strips_tags_and_joins_punctuation():
    assert detokenize_brown(BROWN) == (
        'The jury said "no evidence" was found.\n\n'
        "It didn't agree, however; the city's plan (1961) failed. Is it over?"
    )


INDEX = [
    "  1 This software and database is being provided to you, the LICENSEE, by  ",
    "dog n 7 5 @ ~ #m #p %p 7 1 02084071 10114209 10023039 09886220 07676602 03907626 02710044  ",
    "hot_dog n 2 2 @ ~ 2 0 07697537 10187990  ",
]
DATA = (
    "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ 02083346 n 0000 | a member of the "
    'genus Canis; "the dog barked all night"  '
)


def test_parse_wordnet_index_and_data_lines():
    index = parse_wordnet_index(INDEX)
    assert index == {"dog": (1, "02084071"), "hot_dog": (0, "07697537")}
    offset, words, definition, examples = parse_wordnet_data(DATA)  # type: ignore[misc]
    assert (offset, words) == ("02084071", ["dog", "domestic dog", "Canis familiaris"])
    assert definition == "a member of the genus Canis"
    assert examples == ["the dog barked all night"]
    assert wordnet_answer("dog", definition, examples) == (
        '"dog" means a member of the genus Canis. For example: "the dog barked all night".'
    )
    assert parse_wordnet_data("  1 licence header") is None


WORDS = [
    a + b
    for a in ("ban", "lev", "cat", "miss", "tor", "pal")
    for b in ("ana", "el", "ipp", "ing", "ow", "ster", "a", "ed")
]


def test_skill_answers_are_correct():
    rows = generate(200, WORDS, seed=7)
    assert {r["skill"] for r in rows} == {"arithmetic", "counting", "spelling", "comparison"}
    assert len({r["messages"][0]["content"] for r in rows}) == 200
    for r in rows:
        q, a = r["messages"][0]["content"], r["messages"][1]["content"]
        assert a == r["answer"]
        if m := re.fullmatch(r"(?:What is |Compute )?(\d+) ([-+*]) (\d+)(?:\?|\.| = \?)", q):
            x, op, y = int(m[1]), m[2], int(m[3])
            assert a == f"{x} {op} {y} = {eval(f'{x}{op}{y}')}."  # noqa: S307 - two integers and an operator
            assert op != "-" or x >= y
        elif m := re.fullmatch(r'How many letters are in the word "(\w+)"\?', q):
            assert a == f'"{m[1]}" has {len(m[1])} letters.'
        elif m := re.fullmatch(r'How many times does the letter "(\w)" appear in "(\w+)"\?', q):
            n = m[2].count(m[1])
            assert a.startswith(f'The letter "{m[1]}" appears {n} time')
        elif m := re.fullmatch(r'How do you spell "(\w+)"\?', q):
            assert a == f'"{m[1]}" is spelled {"-".join(m[1])}.'
        elif m := re.fullmatch(r'Spell "(\w+)" backwards\.', q):
            assert a == f'"{m[1]}" backwards is {m[1][::-1]}.'
        elif m := re.fullmatch(r"Which is (bigger|smaller), (\d+) or (\d+)\?", q):
            x, y = int(m[2]), int(m[3])
            pick = max(x, y) if m[1] == "bigger" else min(x, y)
            assert a.startswith(f"{pick} is {m[1]} than {x + y - pick}")
        else:
            raise AssertionError(f"unrecognised question {q!r}")


def test_generate_is_reproducible_by_seed():
    assert generate(50, WORDS, seed=1) == generate(50, WORDS, seed=1)
    assert generate(50, WORDS, seed=1) != generate(50, WORDS, seed=2)
    with pytest.raises(ValueError, match="distinct questions"):
        generate(50, ["cat"], seed=1)  # one word cannot give 12 different spelling questions


def test_chitchat_turns_alternate_and_end_on_the_assistant():
    dataset = {
        "b": {
            "messages": [
                [{"text": "hi", "sender": "x"}, {"text": "you there?", "sender": "x"}],
                [{"text": "yes", "sender": "y"}],
            ]
        },
        "a": {"messages": [[{"text": "alone", "sender": "x"}]]},
    }
    assert list(chitchat_conversations(dataset)) == [
        [{"role": "user", "content": "hi\nyou there?"}, {"role": "assistant", "content": "yes"}]
    ]
    doc = {"conversations": [["Hello", "Hi", "How are you?"], ["Only one"]]}
    assert list(chatterbot_conversations(doc)) == [
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]
    ]


def test_moby_dick_chapters_are_unwrapped_documents():
    text = (
        "Front matter\n\nCHAPTER 1. Loomings.\n\nCall me\nIshmael.\n\nCHAPTER 2. The Carpet-Bag.\n\nI stuffed"
    )
    assert moby_dick_chapters(text) == [
        "Front matter",
        "CHAPTER 1. Loomings.\n\nCall me Ishmael.",
        "CHAPTER 2. The Carpet-Bag.\n\nI stuffed",
    ]


def test_split_is_by_item_disjoint_and_fixed_by_seed():
    items = [f"conversation {i}" for i in range(100)]
    train, val = holdout(items, "1234:chitchat")
    assert len(val) == 5 and sorted(train + val) == sorted(items)
    assert holdout(items, "1234:chitchat") == (train, val)
    assert holdout(items, "99:chitchat")[1] != val
    assert holdout(["only one"], "1234:x") == (["only one"], [])
