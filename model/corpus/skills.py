"""Generated dialogues whose answers can be checked: skills (arithmetic, comparison, counting,
spelling) and calendar facts, each kind asked in many phrasings (model/corpus/phrasing.py).

Every answer is computed here and restates the question, the same way whatever the phrasing, so
the held-out rows measure exact-match accuracy: on problems never trained on in any phrasing
(held_out "problem") and on trained problems asked in a family of phrasings never trained on
(held_out "phrasing").
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from model.corpus.phrasing import Kind, Problem, family, split_kind

OPS = {"+": ("+", "plus"), "-": ("-", "minus"), "*": ("*", "x", "×", "times")}
ANSWER_OP = {"+": "+", "-": "-", "*": "×"}

ARITHMETIC = Kind(
    name="arithmetic",
    families=(
        family("what_is", "What is {a} {op} {b}?", "What's {a} {op} {b}?", "what's {a} {op} {b}"),
        family("compute", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}.", "Work out {a} {op} {b}."),
        family("equation", "{a} {op} {b} = ?", "{a} {op} {b} =", "{a} {op} {b}?"),
        family("can_you", "Can you work out {a} {op} {b}?", "Could you tell me what {a} {op} {b} is?"),
        family("tell_me", "Tell me what {a} {op} {b} is.", "Tell me {a} {op} {b}."),
        family("how_much", "How much is {a} {op} {b}?", "What does {a} {op} {b} equal?"),
        family(
            "solve",
            "Solve {a} {op} {b}.",
            "Please solve {a} {op} {b}.",
            "Solve this: {a} {op} {b}",
            held_out=True,
        ),
    ),
)
COMPARISON = Kind(
    name="comparison",
    families=(
        family(
            "which",
            "Which is {w}, {a} or {b}?",
            "Which number is {w}: {a} or {b}?",
            "which is {w} {a} or {b}",
        ),
        family("whats", "What's {w}, {a} or {b}?", "What is {w}: {a} or {b}?"),
        family("tell_me", "Tell me which is {w}: {a} or {b}.", "Tell me which number is {w}, {a} or {b}."),
        family(
            "can_you", "Can you tell me which is {w}, {a} or {b}?", "Could you say which is {w}, {a} or {b}?"
        ),
        family("or_first", "{a} or {b}: which is {w}?", "{a} or {b}, which one is {w}?"),
        family(
            "between",
            "Between {a} and {b}, which one is {w}?",
            "Of {a} and {b}, which is {w}?",
            held_out=True,
        ),
    ),
)
COUNTING = Kind(
    name="counting",
    families=(
        family(
            "what_number", "What number comes {rel} {n}?", "What comes {rel} {n}?", "what comes {rel} {n}"
        ),
        family("which_number", "Which number is {rel} {n}?", "Which number comes right {rel} {n}?"),
        family("tell_me", "Tell me the number {rel} {n}.", "Tell me what comes {rel} {n}."),
        family("whats", "What's the number {rel} {n}?", "What is the number that comes {rel} {n}?"),
        family("can_you", "Can you tell me what comes {rel} {n}?", "Could you tell me the number {rel} {n}?"),
        family(
            "name", "Name the number that comes {rel} {n}.", "{n}: what number comes {rel} it?", held_out=True
        ),
    ),
)
SEQUENCE = Kind(
    name="sequence",
    families=(
        family("count", "Count from {a} to {b}.", "count from {a} to {b}", "Count {a} to {b}."),
        family("can_you", "Can you count from {a} to {b}?", "Could you count from {a} up to {b}?"),
        family("list", "List the numbers from {a} to {b}.", "What are the numbers from {a} to {b}?"),
        family(
            "tell_me", "Tell me the numbers from {a} to {b}.", "Tell me all the numbers between {a} and {b}."
        ),
        family("please", "Please count from {a} to {b}.", "Count up from {a} to {b}, please.", held_out=True),
    ),
)
LETTERS = Kind(
    name="letters",
    word_fields=("w",),
    families=(
        family(
            "how_many",
            "How many letters are in the word {w}?",
            "How many letters are in {w}?",
            "how many letters in {w}",
            "How many letters does {w} have?",
        ),
        family("count", "Count the letters in {w}.", "Count the letters in the word {w}."),
        family(
            "tell_me", "Tell me how many letters are in {w}.", "Tell me how many letters the word {w} has."
        ),
        family("can_you", "Can you count the letters in {w}?", "Could you tell me how many letters {w} has?"),
        family("word_first", "{w}: how many letters?", "The word {w} has how many letters?"),
        family("length", "How long is the word {w}?", "What is the length of the word {w}?", held_out=True),
    ),
)
SPELLING = Kind(
    name="spelling",
    word_fields=("w",),
    families=(
        family("how_spell", "How do you spell {w}?", "how do you spell {w}", "How do I spell {w}?"),
        family("spell", "Spell {w}.", "spell {w}", "Spell the word {w}.", "Spell {w} for me."),
        family("can_you", "Can you spell {w}?", "Could you spell {w} for me?", "Can you spell the word {w}?"),
        family("tell_me", "Tell me how to spell {w}.", "Tell me how you spell {w}."),
        family("whats", "What's the spelling of {w}?", "What is the spelling of the word {w}?"),
        family("word_first", "{w}: how do you spell it?", "How is {w} spelled?"),
        family(
            "letters_of", "What are the letters in {w}?", "Which letters make up the word {w}?", held_out=True
        ),
    ),
)


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


def arithmetic_problems() -> list[Problem]:
    """Every problem: a + b and a - b (a >= b) for two-digit numbers, and the 12 × 12 table."""
    out = [(a, "+", b) for a in range(100) for b in range(100)]
    out += [(a, "-", b) for a in range(100) for b in range(a + 1)]
    out += [(a, "*", b) for a in range(13) for b in range(13)]
    return [
        Problem(
            key=f"{a}{op}{b}",
            fields={"a": str(a), "op": OPS[op], "b": str(b)},
            answer=arithmetic_answer(a, op, b),
        )
        for a, op, b in out
    ]


def comparison_pair(rng: random.Random) -> tuple[int, int]:
    """Two different numbers: a quarter of the time both under 21, a quarter both two-digit (a third of
    those the same two digits swapped, 42 and 24), else any two of 0..999. Pairs drawn evenly over
    0..999 put two numbers under 21 side by side once in 2,500 questions, and the default model
    answered "Which is smaller, 3 or 8?" with "8 is smaller than 3." (bench/everyday.py)."""
    draw = rng.random()
    if draw < 0.25:
        a, b = rng.sample(range(21), 2)
    elif draw < 0.5:
        if rng.random() < 1 / 3:
            x, y = rng.sample(range(1, 10), 2)
            a, b = 10 * x + y, 10 * y + x
        else:
            a, b = rng.sample(range(10, 100), 2)
    else:
        a, b = rng.sample(range(1000), 2)
    return a, b


def comparison_problems(n: int, rng: random.Random) -> list[Problem]:
    """n distinct (a, b, which) questions over 0..999, small numbers and swapped digits among them
    (comparison_pair)."""
    seen: dict[str, Problem] = {}
    while len(seen) < n:
        a, b = comparison_pair(rng)
        which = rng.choice(["bigger", "larger", "smaller"])
        pick = min(a, b) if which == "smaller" else max(a, b)
        words = ("bigger", "greater") if which == "bigger" else (which,)
        answer = f"{pick} is {which} than {a + b - pick}."
        seen.setdefault(
            f"cmp {a} {b} {which}",
            Problem(key=f"cmp {a} {b} {which}", fields={"a": str(a), "b": str(b), "w": words}, answer=answer),
        )
    return list(seen.values())


def counting_problems() -> list[Problem]:
    """The number after each of 0..998 and before each of 1..999."""
    out = [
        Problem(key=f"after {n}", fields={"rel": "after", "n": str(n)}, answer=f"{n + 1} comes after {n}.")
        for n in range(999)
    ]
    out += [
        Problem(key=f"before {n}", fields={"rel": "before", "n": str(n)}, answer=f"{n - 1} comes before {n}.")
        for n in range(1, 1000)
    ]
    return out


def sequence_problems() -> list[Problem]:
    """Counting runs of 3 to 7 numbers starting at 0..95."""
    return [
        Problem(
            key=f"count {a} {b}",
            fields={"a": str(a), "b": str(b)},
            answer=f"From {a} to {b}: " + ", ".join(str(i) for i in range(a, b + 1)) + ".",
        )
        for a in range(96)
        for b in range(a + 2, a + 7)
    ]


def spelled(word: str) -> str:
    return "-".join(word)


def word_problems(words: Sequence[str]) -> tuple[list[Problem], list[Problem]]:
    """(letter counts, spellings) of every word. The word is written as in the question, lower-case
    and unquoted (" house" is the same token there and in the answer), then spelled letter by letter;
    the count comes after the spelling, from which it is counted."""
    letters = [
        Problem(
            key=f"letters {w}",
            fields={"w": w},
            answer=f"The word {w} is spelled {spelled(w)}, so it has {len(w)} letters.",
        )
        for w in words
    ]
    spellings = [
        Problem(key=f"spell {w}", fields={"w": w}, answer=f"The word {w} is spelled {spelled(w)}.")
        for w in words
    ]
    return letters, spellings


SKILLS = (ARITHMETIC, COMPARISON, COUNTING, SEQUENCE, LETTERS, SPELLING)


def generate(
    words: Sequence[str], seed: int, comparisons: int = 12000, pinned: Collection[str] = ()
) -> tuple[list[dict], list[dict]]:
    """(train, val) skill dialogues: every arithmetic, counting and counting-run problem, `comparisons`
    comparisons, the letter count and spelling of every word; each kind split by phrasing.split_kind
    (pinned: keys always trained on, e.g. "spell dog").
    Rows: {"messages", "skill", "answer", "family"} (+ "held_out" in val)."""
    rng = random.Random(seed)
    letters, spellings = word_problems(words)
    problems = {
        ARITHMETIC: arithmetic_problems(),
        COMPARISON: comparison_problems(comparisons, rng),
        COUNTING: counting_problems(),
        SEQUENCE: sequence_problems(),
        LETTERS: letters,
        SPELLING: spellings,
    }
    train: list[dict] = []
    val: list[dict] = []
    for kind, items in problems.items():
        t, v = split_kind(kind, items, seed, phrasings=300, pinned=pinned)
        train += t
        val += v
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]
MONTHS += ["November", "December"]
MONTH_DAYS = ["31", "28 (29 in a leap year)", "31", "30", "31", "30", "31", "31", "30", "31", "30", "31"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]
ORDINALS += ["eleventh", "twelfth"]

CALENDAR_NEXT = Kind(
    name="calendar_next",
    computed=False,
    families=(
        family(
            "what_comes",
            "What {unit} comes {rel} {name}?",
            "What comes {rel} {name}?",
            "what comes {rel} {name}",
        ),
        family("what_is", "What is the {unit} {rel} {name}?", "What's the {unit} {rel} {name}?"),
        family("which", "Which {unit} is {rel} {name}?", "Which {unit} comes {rel} {name}?"),
        family("tell_me", "Tell me the {unit} {rel} {name}.", "Tell me what comes {rel} {name}."),
        family(
            "can_you",
            "Can you tell me what {unit} comes {rel} {name}?",
            "Could you tell me the {unit} {rel} {name}?",
        ),
        family(
            "name",
            "Name the {unit} that comes {rel} {name}.",
            "{name}: what {unit} comes {rel} it?",
            held_out=True,
        ),
    ),
)
CALENDAR_POSITION = Kind(
    name="calendar_position",
    computed=False,
    families=(
        family(
            "what_is", "What is the {nth} {unit} of the {span}?", "What's the {nth} {unit} of the {span}?"
        ),
        family(
            "which", "Which {unit} is the {nth} {unit} of the {span}?", "which {unit} is {nth} in the {span}"
        ),
        family(
            "tell_me",
            "Tell me the {nth} {unit} of the {span}.",
            "Tell me which {unit} is the {nth} of the {span}.",
        ),
        family(
            "can_you",
            "Can you tell me the {nth} {unit} of the {span}?",
            "Do you know the {nth} {unit} of the {span}?",
        ),
        family(
            "name",
            "Name the {nth} {unit} of the {span}.",
            "The {nth} {unit} of the {span} is which one?",
            held_out=True,
        ),
    ),
)
MONTH_LENGTH = Kind(
    name="month_length",
    computed=False,
    families=(
        family(
            "how_many",
            "How many days are in {name}?",
            "How many days does {name} have?",
            "how many days in {name}",
        ),
        family("how_long", "How long is {name}?", "How long is the month of {name}?"),
        family("tell_me", "Tell me how many days {name} has.", "Tell me the number of days in {name}."),
        family(
            "can_you", "Can you tell me how many days are in {name}?", "Do you know how many days {name} has?"
        ),
        family("whats", "What's the number of days in {name}?", "What is the length of {name} in days?"),
        family("count", "Count the days in {name}.", "{name} has how many days?", held_out=True),
    ),
)
# a few fixed facts, each in its own handful of phrasings
CALENDAR_FACTS = [
    (
        (
            "How many days are in a week?",
            "How many days does a week have?",
            "how many days in a week",
            "Tell me how many days are in a week.",
        ),
        "There are 7 days in a week.",
    ),
    (
        (
            "How many months are in a year?",
            "How many months does a year have?",
            "how many months in a year",
            "Tell me how many months are in a year.",
        ),
        "There are 12 months in a year.",
    ),
    (
        (
            "What are the days of the week?",
            "Name the days of the week.",
            "List the days of the week in order.",
            "Can you tell me the days of the week?",
        ),
        "The days of the week are " + ", ".join(DAYS) + ".",
    ),
    (
        (
            "What are the months of the year?",
            "Name the months of the year.",
            "List the months of the year in order.",
            "Can you tell me the months of the year?",
        ),
        "The months of the year are " + ", ".join(MONTHS) + ".",
    ),
    (
        ("What days are the weekend?", "Which days are the weekend?", "When is the weekend?"),
        "The weekend is Saturday and Sunday.",
    ),
    (
        ("How many days are in a year?", "How many days does a year have?", "How long is a year?"),
        "A year has 365 days, or 366 in a leap year.",
    ),
    (
        ("How many hours are in a day?", "How many hours does a day have?", "how many hours in a day"),
        "A day has 24 hours.",
    ),
    (
        (
            "How many minutes are in an hour?",
            "How many minutes does an hour have?",
            "how many minutes in an hour",
        ),
        "An hour has 60 minutes.",
    ),
    (
        (
            "How many seconds are in a minute?",
            "How many seconds does a minute have?",
            "how many seconds in a minute",
        ),
        "A minute has 60 seconds.",
    ),
]
CALENDAR = (CALENDAR_NEXT, CALENDAR_POSITION, MONTH_LENGTH)


def calendar_problems() -> dict[Kind, list[Problem]]:
    """Every calendar question: the day or month before and after each, their positions, the months' lengths."""
    nxt, position = [], []
    for names, unit, span in ((DAYS, "day", "week"), (MONTHS, "month", "year")):
        for i, name in enumerate(names):
            for rel, other in (("after", names[(i + 1) % len(names)]), ("before", names[i - 1])):
                fields = {"unit": unit, "rel": rel, "name": name}
                nxt.append(
                    Problem(key=f"{rel} {name}", fields=fields, answer=f"The {unit} {rel} {name} is {other}.")
                )
            fields = {"nth": ORDINALS[i], "unit": unit, "span": span}
            answer = f"The {ORDINALS[i]} {unit} of the {span} is {name}."
            position.append(Problem(key=f"{ORDINALS[i]} {unit}", fields=fields, answer=answer))
    length = [
        Problem(key=f"days {name}", fields={"name": name}, answer=f"{name} has {days} days.")
        for name, days in zip(MONTHS, MONTH_DAYS, strict=True)
    ]
    return {CALENDAR_NEXT: nxt, CALENDAR_POSITION: position, MONTH_LENGTH: length}


def calendar(seed: int) -> tuple[list[dict], list[dict]]:
    """(train, val): every calendar problem is trained on (the days and months are a closed set, so no
    problem is held out), each in two trained phrasings; val asks them in the held-out families.
    The fixed facts are trained on in every phrasing."""
    train: list[dict] = []
    val: list[dict] = []
    for kind, problems in calendar_problems().items():
        t, v = split_kind(kind, problems, seed, per_problem=2, hold_problems=False)
        train += t
        val += v
    for questions, answer in CALENDAR_FACTS:
        for q in questions:
            messages = [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]
            train.append({"messages": messages, "skill": "calendar_facts", "answer": answer})
    random.Random(seed).shuffle(train)
    return train, val
