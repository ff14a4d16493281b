"""The corpus builder's pure parts: WordNet parsing, skill answers, the split."""

from __future__ import annotations

from model.corpus.lexicon import meaning_answer, parse_index_senses
from model.corpus.skills import arithmetic_answer
from model.corpus.sources import (
    chatterbot_conversations,
    chitchat_conversations,
    moby_dick_chapters,
    parse_wordnet_data,
)
from model.data import holdout

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
    index = parse_index_senses(INDEX)
    assert index["dog"] == (
        1,
        ["02084071", "10114209", "10023039", "09886220", "07676602", "03907626", "02710044"],
    )
    assert index["hot dog"] == (0, ["07697537", "10187990"])
    offset, words, definition, examples = parse_wordnet_data(DATA)  # type: ignore[misc]
    assert (offset, words) == ("02084071", ["dog", "domestic dog", "Canis familiaris"])
    assert definition == "a member of the genus Canis"
    assert examples == ["the dog barked all night"]
    assert meaning_answer("dog", definition, examples) == (
        'The word dog means a member of the genus Canis. For example: "the dog barked all night".'
    )
    assert parse_wordnet_data("  1 licence header") is None


def test_subtraction_answers_show_the_tens_then_the_units():
    assert arithmetic_answer(52, "-", 49) == "52 - 49 = 52 - 40 - 9 = 12 - 9 = 3."
    assert arithmetic_answer(90, "-", 84) == "90 - 84 = 90 - 80 - 4 = 10 - 4 = 6."
    assert arithmetic_answer(52, "-", 40) == "52 - 40 = 12."  # nothing to work: one step
    assert arithmetic_answer(52, "-", 7) == "52 - 7 = 45."
    assert arithmetic_answer(47, "+", 38) == "47 + 38 = 85."
    assert arithmetic_answer(12, "*", 11) == "12 × 11 = 132."


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
