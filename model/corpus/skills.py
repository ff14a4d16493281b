"""Generated dialogues whose answers can be checked: skills (arithmetic, comparison, counting,
spelling) and calendar facts. Every answer is computed here, so the held-out ones measure
exact-match accuracy.

Each skill item carries a `key`, the problem itself ("47+38", "cmp 12 30 bigger"): items are
distinct by key, and the corpus splits them into train and val by item, so a held-out problem
is never seen in training under any of its phrasings.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

Example = tuple[str, str, str]  # (key, question, answer)

OPS = {"+": ("+", "plus"), "-": ("-", "minus"), "*": ("*", "x", "×", "times")}
ANSWER_OP = {"+": "+", "-": "-", "*": "×"}
ARITHMETIC_Q = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?", "What's {a} {op} {b}?"]


def arithmetic_problems() -> list[tuple[int, str, int]]:
    """Every problem: a + b and a - b (a >= b) for two-digit numbers, and the 12 × 12 table."""
    out = [(a, "+", b) for a in range(100) for b in range(100)]
    out += [(a, "-", b) for a in range(100) for b in range(a + 1)]
    out += [(a, "*", b) for a in range(13) for b in range(13)]
    return out


def arithmetic_answer(a: int, op: str, b: int) -> str:
    """The answer, with a worked step where a two-digit number is taken away: its tens first, then
    its units ("52 - 49 = 52 - 40 - 9 = 12 - 9 = 3."). Written in one go, close subtractions were
    what the model got wrong (it wrote a tens digit the answer does not have); each step is a
    pattern it gets right: a tens digit taken from a tens digit, then a one-digit fact."""
    result = a + b if op == "+" else a - b if op == "-" else a * b
    tens, units = divmod(b, 10)
    if op == "-" and tens and units:
        return f"{a} - {b} = {a} - {10 * tens} - {units} = {a - 10 * tens} - {units} = {result}."
    return f"{a} {ANSWER_OP[op]} {b} = {result}."


def arithmetic(rng: random.Random, problem: tuple[int, str, int]) -> Example:
    a, op, b = problem
    q = rng.choice(ARITHMETIC_Q).format(a=a, op=rng.choice(OPS[op]), b=b)
    return f"{a}{op}{b}", q, arithmetic_answer(a, op, b)


def comparison(rng: random.Random, words: Sequence[str]) -> Example:
    a, b = rng.sample(range(0, 1000), 2)
    which = rng.choice(["bigger", "larger", "smaller"])
    pick = min(a, b) if which == "smaller" else max(a, b)
    q = rng.choice(["Which is {w}, {a} or {b}?", "Which number is {w}: {a} or {b}?"])
    return f"cmp {a} {b} {which}", q.format(w=which, a=a, b=b), f"{pick} is {which} than {a + b - pick}."


def counting(rng: random.Random, words: Sequence[str]) -> Example:
    kind = rng.random()
    if kind < 0.3:
        n = rng.randint(0, 998)
        return f"after {n}", f"What number comes after {n}?", f"{n + 1} comes after {n}."
    if kind < 0.6:
        n = rng.randint(1, 999)
        return f"before {n}", f"What number comes before {n}?", f"{n - 1} comes before {n}."
    if kind < 0.8:
        a = rng.randint(0, 95)
        b = a + rng.randint(2, 6)
        return f"count {a} {b}", f"Count from {a} to {b}.", ", ".join(str(i) for i in range(a, b + 1)) + "."
    word = rng.choice(words)
    return (
        f"letters {word}",
        f'How many letters are in the word "{word}"?',
        f'"{word}" has {len(word)} letters.',
    )


def spelling(rng: random.Random, words: Sequence[str]) -> Example:
    word = rng.choice(words)
    if rng.random() < 0.6:
        return f"spell {word}", f'How do you spell "{word}"?', f'"{word}" is spelled {"-".join(word)}.'
    return f"backwards {word}", f'Spell "{word}" backwards.', f'"{word}" backwards is {word[::-1]}.'


SKILLS: dict[str, Callable[[random.Random, Sequence[str]], Example]] = {
    "comparison": comparison,
    "counting": counting,
    "spelling": spelling,
}
# items per skill in a corpus of n skill dialogues (arithmetic: at most every problem once)
SHARES = {"arithmetic": 0.45, "comparison": 0.25, "counting": 0.15, "spelling": 0.15}


def _item(name: str, question: str, answer: str) -> dict:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "skill": name, "answer": answer}


def generate(n: int, words: Sequence[str], seed: int) -> list[dict]:
    """n skill dialogues with distinct problems, `{"messages": [...], "skill", "answer"}`, in a
    seeded order; each skill gets its share of n (SHARES)."""
    rng = random.Random(seed)
    counts = {name: round(n * share) for name, share in SHARES.items()}
    counts["arithmetic"] += n - sum(counts.values())
    out = []
    problems = arithmetic_problems()
    if counts["arithmetic"] > len(problems):
        raise ValueError(
            f"only {len(problems)} distinct arithmetic problems, {counts['arithmetic']} were asked for"
        )
    for problem in rng.sample(problems, counts["arithmetic"]):
        _, q, a = arithmetic(rng, problem)
        out.append(_item("arithmetic", q, a))
    for name, make in SKILLS.items():
        seen: set[str] = set()
        for _ in range(100 * counts[name]):
            if len(seen) == counts[name]:
                break
            key, q, a = make(rng, words)
            if key not in seen:
                seen.add(key)
                out.append(_item(name, q, a))
        if len(seen) < counts[name]:
            raise ValueError(
                f"only {len(seen)} distinct {name} questions from {len(words)} words, {counts[name]} were asked for"
            )
    rng.shuffle(out)
    return out


DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
MONTH_DAYS = [31, "28 (29 in a leap year)", 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]
ORDINALS += ["eleventh", "twelfth"]


def calendar() -> list[dict]:
    """Every calendar question: days and months in order, their positions and lengths."""
    qa: list[tuple[str, str]] = []
    for names, unit, span in ((DAYS, "day", "week"), (MONTHS, "month", "year")):
        n = len(names)
        for i, name in enumerate(names):
            after, before = names[(i + 1) % n], names[(i - 1) % n]
            qa += [
                (f"What {unit} comes after {name}?", f"{after} comes after {name}."),
                (f"What comes after {name}?", f"{after} comes after {name}."),
                (f"What {unit} comes before {name}?", f"{before} comes before {name}."),
                (f"What is the {unit} before {name}?", f"The {unit} before {name} is {before}."),
                (f"What is the {unit} after {name}?", f"The {unit} after {name} is {after}."),
                (
                    f"What is the {ORDINALS[i]} {unit} of the {span}?",
                    f"The {ORDINALS[i]} {unit} of the {span} is {name}.",
                ),
                (
                    f"Which {unit} of the {span} is {name}?",
                    f"{name} is the {ORDINALS[i]} {unit} of the {span}.",
                ),
            ]
        qa.append((f"How many {unit}s are in a {span}?", f"There are {n} {unit}s in a {span}."))
        qa.append(
            (f"What are the {unit}s of the {span}?", f"The {unit}s of the {span} are {', '.join(names)}.")
        )
        qa.append((f"Name the {unit}s of the {span} in order.", f"{', '.join(names)}."))
    for name, days in zip(MONTHS, MONTH_DAYS, strict=True):
        qa.append((f"How many days are in {name}?", f"{name} has {days} days."))
    qa += [
        ("What days are the weekend?", "The weekend is Saturday and Sunday."),
        ("How many days are in a year?", "A year has 365 days, or 366 in a leap year."),
        ("How many hours are in a day?", "A day has 24 hours."),
        ("How many minutes are in an hour?", "An hour has 60 minutes."),
        ("How many seconds are in a minute?", "A minute has 60 seconds."),
    ]
    return [_item("calendar", q, a) for q, a in qa]
