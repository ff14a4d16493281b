"""The corpus builder's pure parts: Brown detokenizing, WordNet parsing, skill answers, the split."""

from __future__ import annotations

import random
import re
from collections import Counter

from model.corpus.skills import arithmetic_answer, calendar, generate
from model.corpus.sources import (
    chatterbot_conversations,
    chitchat_conversations,
    detokenize_brown,
    moby_dick_chapters,
    parse_wordnet_data,
    parse_wordnet_index,
    parse_wordnet_pointers,
    relation_dialogues,
    wordnet_answer,
)
from model.data import holdout

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
    rows = generate(400, WORDS, seed=7)
    counts = Counter(r["skill"] for r in rows)
    assert counts == {"arithmetic": 180, "comparison": 100, "counting": 60, "spelling": 60}
    assert len({r["messages"][0]["content"] for r in rows}) == 400
    symbol = {"+": "+", "plus": "+", "-": "-", "minus": "-", "*": "×", "x": "×", "×": "×", "times": "×"}
    for r in rows:
        q, a = r["messages"][0]["content"], r["messages"][1]["content"]
        assert a == r["answer"]
        if m := re.fullmatch(
            r"(?:What is |What's |Compute )?(\d+) (\+|plus|-|minus|\*|x|×|times) (\d+)(?:\?|\.| = \?)", q
        ):
            x, op, y = int(m[1]), symbol[m[2]], int(m[3])
            result = x + y if op == "+" else x - y if op == "-" else x * y
            assert a.startswith(f"{x} {op} {y} = ") and a.endswith(f" {result}.")
            if op == "-" and y >= 10 and y % 10:  # the worked step: the tens, then the units
                t, u = y - y % 10, y % 10
                assert a == f"{x} - {y} = {x} - {t} - {u} = {x - t} - {u} = {result}."
            else:
                assert a == f"{x} {op} {y} = {result}."
            assert (op != "-" or x >= y) and (op != "×" or max(x, y) <= 12) and max(x, y) <= 99
        elif m := re.fullmatch(r'How many letters are in the word "(\w+)"\?', q):
            assert a == f'"{m[1]}" has {len(m[1])} letters.'
        elif m := re.fullmatch(r"What number comes (after|before) (\d+)\?", q):
            n = int(m[2]) + (1 if m[1] == "after" else -1)
            assert a == f"{n} comes {m[1]} {m[2]}."
        elif m := re.fullmatch(r"Count from (\d+) to (\d+)\.", q):
            assert a == ", ".join(str(i) for i in range(int(m[1]), int(m[2]) + 1)) + "."
        elif m := re.fullmatch(r'How do you spell "(\w+)"\?', q):
            assert a == f'"{m[1]}" is spelled {"-".join(m[1])}.'
        elif m := re.fullmatch(r'Spell "(\w+)" backwards\.', q):
            assert a == f'"{m[1]}" backwards is {m[1][::-1]}.'
        elif m := re.fullmatch(r"Which (?:number )?is (bigger|larger|smaller)(?:,|:) (\d+) or (\d+)\?", q):
            x, y = int(m[2]), int(m[3])
            pick = min(x, y) if m[1] == "smaller" else max(x, y)
            assert a == f"{pick} is {m[1]} than {x + y - pick}."
        else:
            raise AssertionError(f"unrecognised question {q!r}")


def test_subtraction_answers_show_the_tens_then_the_units():
    assert arithmetic_answer(52, "-", 49) == "52 - 49 = 52 - 40 - 9 = 12 - 9 = 3."
    assert arithmetic_answer(90, "-", 84) == "90 - 84 = 90 - 80 - 4 = 10 - 4 = 6."
    assert arithmetic_answer(52, "-", 40) == "52 - 40 = 12."  # nothing to work: one step
    assert arithmetic_answer(52, "-", 7) == "52 - 7 = 45."
    assert arithmetic_answer(47, "+", 38) == "47 + 38 = 85."
    assert arithmetic_answer(12, "*", 11) == "12 × 11 = 132."


def test_held_out_problems_are_never_trained_on_in_any_phrasing():
    rows = generate(4000, [a + b for a in WORDS for b in WORDS], seed=3)
    train, val = holdout(rows, "1234:skills")
    problem = lambda r: re.sub(r"[^0-9+×-]| ", "", r["answer"].split("=")[0])  # noqa: E731 - "47+38"
    arithmetic = lambda rs: {problem(r) for r in rs if r["skill"] == "arithmetic"}  # noqa: E731
    assert arithmetic(val) and not arithmetic(val) & arithmetic(train)
    assert sum(r["skill"] == "arithmetic" for r in val) == len(arithmetic(val))  # each problem once


def test_calendar_facts_are_right():
    rows = {r["messages"][0]["content"]: r["answer"] for r in calendar()}
    assert rows["What day comes after Sunday?"] == "Monday comes after Sunday."
    assert rows["What month comes before January?"] == "December comes before January."
    assert rows["What is the third month of the year?"] == "The third month of the year is March."
    assert rows["How many days are in February?"] == "February has 28 (29 in a leap year) days."
    assert len(rows) == len(calendar())  # no question twice


def test_wordnet_relations_from_pointers():
    line = (
        "01123148 00 a 01 good 0 003 ! 01125429 a 0101 & 01123879 a 0000 @ 05142180 n 0000 | having "
        "desirable or positive qualities"
    )
    assert parse_wordnet_pointers(line)[:2] == [("!", "01125429", "a", 1, 1), ("&", "01123879", "a", 0, 0)]
    data = {"a": {"01125429": ("01125429", ["bad"], "", [])}, "n": {}}
    synset = ("01123148", ["good", "goodness"], "having desirable or positive qualities", [])
    qa = relation_dialogues("good", "adj", synset, parse_wordnet_pointers(line), data, random.Random(0))
    answers = [a for _, a in qa]
    assert 'Another word for "good" is "goodness".' in answers
    assert 'The opposite of "good" is "bad".' in answers
    hyper = {"n": {"02083346": ("02083346", ["canine", "canid"], "", [])}, "a": {}}
    dog = ("02084071", ["dog", "domestic_dog"], "", [])
    dog_line = DATA.replace(" 023 @ ", " 001 @ ")
    qa = relation_dialogues("dog", "noun", dog, parse_wordnet_pointers(dog_line), hyper, random.Random(0))
    assert "A dog is a kind of canine." in [a for _, a in qa]


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
