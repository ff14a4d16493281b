"""Generated questions in many phrasings: the templates, the split that holds out problems and whole
families of phrasings, and answers that are right and restate the question."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from model.corpus import facts, lexicon, skills
from model.corpus.phrasing import Kind, Problem, family, split_kind, template_count

KINDS = [*skills.SKILLS, *skills.CALENDAR, *lexicon.LEXICON, *facts.QUIZ, facts.WIKI]
WORDS = [
    a + b for a in ("ban", "lev", "cat", "miss", "tor", "pal") for b in ("ana", "el", "ipp", "ing", "ow", "a")
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_is_asked_in_ten_templates_with_a_held_out_family(kind: Kind):
    assert template_count(kind) >= 10
    assert kind.held_out() and len(kind.trained()) >= 3
    assert len({f.name for f in kind.families}) == len(kind.families)
    templates = [t for f in kind.families for t in f.templates]
    assert len(set(templates)) == len(templates)
    assert any(t.startswith(("Can you", "Could you", "Do you")) for t in templates)
    assert any(t.startswith("Tell me") for t in templates)


def _matches(template: str, question: str) -> bool:
    """Whether a question was written from a template: any filling of its fields, any quoting or
    capitals, with or without the final punctuation, first letter in either case."""
    pattern = re.escape(template.rstrip("?.")).replace(r"\{", "{").replace(r"\}", "}")
    pattern = re.sub(r"\{\w+\}", ".+", pattern)
    return re.fullmatch(f"(?i){pattern}[?.]?", question) is not None


def test_a_held_out_family_is_never_trained_on_and_held_out_problems_never_in_any_phrasing():
    train, val = skills.generate(WORDS, seed=3, comparisons=500)
    by_kind = {k.name: k for k in skills.SKILLS}
    for row in train:
        kind = by_kind[row["skill"]]
        assert row["family"] in {f.name for f in kind.trained()}
        held = [t for f in kind.held_out() for t in f.templates]
        assert not any(_matches(t, row["messages"][0]["content"]) for t in held), row
    trained_answers = {r["answer"] for r in train}
    sets = Counter((r["skill"], r["held_out"]) for r in val)
    for row in val:
        kind = by_kind[row["skill"]]
        if row["held_out"] == "phrasing":  # a trained problem asked a new way
            assert row["family"] in {f.name for f in kind.held_out()} and row["answer"] in trained_answers
        else:  # a new problem asked a trained way (the answer names the problem)
            assert row["held_out"] == "problem" and row["family"] in {f.name for f in kind.trained()}
            assert row["answer"] not in trained_answers
    assert all(sets[k.name, "phrasing"] > 0 and sets[k.name, "problem"] > 0 for k in skills.SKILLS)
    assert skills.generate(WORDS, seed=3, comparisons=500) == (train, val)  # deterministic


def test_pinned_problems_are_always_trained_on():
    problems = [Problem(key=f"spell w{i}", fields={"w": f"w{i}"}, answer=f"w{i}") for i in range(400)]
    _, val = split_kind(skills.SPELLING, problems, seed=1)
    held = {r["answer"] for r in val if r["held_out"] == "problem"}
    assert held
    _, val = split_kind(skills.SPELLING, problems, seed=1, pinned={f"spell {a}" for a in held})
    assert not {r["answer"] for r in val if r["held_out"] == "problem"} & held


def test_skill_answers_are_right_and_restate_the_question():
    train, val = skills.generate(WORDS, seed=7, comparisons=500)
    seen = Counter()
    for row in train + val:
        q, a = row["messages"][0]["content"], row["answer"]
        assert row["messages"][1]["content"] == a
        seen[row["skill"]] += 1
        if m := re.fullmatch(r"(\d+) ([+×-]) (\d+) = (?:.* = )?(\d+)\.", a):
            x, op, y, result = int(m[1]), m[2], int(m[3]), int(m[4])
            assert result == (x + y if op == "+" else x - y if op == "-" else x * y)
            assert a == skills.arithmetic_answer(x, {"×": "*"}.get(op, op), y)
            assert re.search(rf"\b{x}\b.*\b{y}\b", q)
        elif m := re.fullmatch(r"The word (\w+) is spelled ([\w-]+)(?:, so it has (\d+) letters)?\.", a):
            assert m[2] == "-".join(m[1]) and (m[3] is None or int(m[3]) == len(m[1]))
            assert m[1] in q.lower()
        elif m := re.fullmatch(r"(\d+) comes (after|before) (\d+)\.", a):
            assert int(m[1]) == int(m[3]) + (1 if m[2] == "after" else -1) and m[3] in q and m[2] in q
        elif m := re.fullmatch(r"From (\d+) to (\d+): ([\d, ]+)\.", a):
            assert (
                m[3] == ", ".join(str(i) for i in range(int(m[1]), int(m[2]) + 1)) and m[1] in q and m[2] in q
            )
        elif m := re.fullmatch(r"(\d+) is (bigger|larger|smaller) than (\d+)\.", a):
            x, y = int(m[1]), int(m[3])
            assert (x < y) == (m[2] == "smaller") and m[1] in q and m[3] in q
        else:
            raise AssertionError(f"unrecognised answer {a!r} to {q!r}")
    assert set(seen) == {k.name for k in skills.SKILLS}
    spelled = [r for r in train if r["skill"] == "spelling"]
    assert any('"' in r["messages"][0]["content"] for r in spelled)  # quoted words
    assert any(not r["messages"][0]["content"].endswith(("?", ".")) for r in spelled)  # no question mark


def test_calendar_facts_are_right_and_every_one_is_trained_on():
    train, val = skills.calendar(seed=1)
    answers = {r["answer"] for r in train}
    assert "The day after Sunday is Monday." in answers
    assert "The month before January is December." in answers
    assert "The third month of the year is March." in answers
    assert "February has 28 (29 in a leap year) days." in answers
    assert {r["held_out"] for r in val} == {"phrasing"} and {r["answer"] for r in val} <= answers
    asked = {r["messages"][0]["content"] for r in train if r["answer"] == "The day after Sunday is Monday."}
    assert len(asked) >= 2  # each problem in two trained phrasings


def test_a_kind_without_a_held_out_family_is_refused():
    kind = Kind(name="x", families=(family("a", "{w}?"), family("b", "{w}!")))
    with pytest.raises(ValueError, match="held-out family"):
        split_kind(kind, [Problem(key="a", fields={"w": "a"}, answer="a")], seed=1)


def test_comparisons_put_small_numbers_and_swapped_digits_side_by_side():
    """Evenly drawn over 0..999, two numbers under 21 would meet once in 2,500 questions; the model then
    answered "Which is smaller, 3 or 8?" with the wrong one. A quarter of the pairs are small now, and
    some are the same two digits swapped."""
    problems = skills.comparison_problems(2000, random.Random(5))
    pairs = [(int(p.fields["a"]), int(p.fields["b"])) for p in problems]
    assert len({p.key for p in problems}) == 2000 and all(a != b for a, b in pairs)
    small = sum(a < 21 and b < 21 for a, b in pairs)
    swapped = sum(a > 9 and b > 9 and str(a)[::-1] == str(b) for a, b in pairs)
    assert 300 <= small <= 700 and swapped >= 50
    assert max(max(pair) for pair in pairs) > 500  # the large ones stay
    for problem in problems:
        a, b = int(problem.fields["a"]), int(problem.fields["b"])
        which = problem.key.split()[-1]
        pick = min(a, b) if which == "smaller" else max(a, b)
        assert problem.answer == f"{pick} is {which} than {a + b - pick}."
