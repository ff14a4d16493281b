"""Generated skill dialogues whose answers can be checked: arithmetic, counting, spelling,
comparisons. Every answer is computed here, so the held-out ones measure exact-match accuracy."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

Example = tuple[str, str]  # (question, answer)


def arithmetic(rng: random.Random, words: Sequence[str]) -> Example:
    op = rng.choice("+-*")
    if op == "*":
        a, b = rng.randint(0, 12), rng.randint(0, 12)
    else:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
    if op == "-" and b > a:
        a, b = b, a
    result = a + b if op == "+" else a - b if op == "-" else a * b
    q = rng.choice(["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?"])
    return q.format(a=a, op=op, b=b), f"{a} {op} {b} = {result}."


def counting(rng: random.Random, words: Sequence[str]) -> Example:
    word = rng.choice(words)
    if rng.random() < 0.5:
        return f'How many letters are in the word "{word}"?', f'"{word}" has {len(word)} letters.'
    letter = rng.choice(word) if rng.random() < 0.7 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    n = word.count(letter)
    return (
        f'How many times does the letter "{letter}" appear in "{word}"?',
        f'The letter "{letter}" appears {n} {"time" if n == 1 else "times"} in "{word}".',
    )


def spelling(rng: random.Random, words: Sequence[str]) -> Example:
    word = rng.choice(words)
    if rng.random() < 0.6:
        return f'How do you spell "{word}"?', f'"{word}" is spelled {"-".join(word)}.'
    return f'Spell "{word}" backwards.', f'"{word}" backwards is {word[::-1]}.'


def comparison(rng: random.Random, words: Sequence[str]) -> Example:
    a, b = rng.sample(range(0, 1000), 2)
    if rng.random() < 0.5:
        return f"Which is bigger, {a} or {b}?", f"{max(a, b)} is bigger than {min(a, b)}."
    return f"Which is smaller, {a} or {b}?", f"{min(a, b)} is smaller than {max(a, b)}."


SKILLS: dict[str, Callable[[random.Random, Sequence[str]], Example]] = {
    "arithmetic": arithmetic,
    "counting": counting,
    "spelling": spelling,
    "comparison": comparison,
}


def generate(n: int, words: Sequence[str], seed: int) -> list[dict]:
    """n distinct skill dialogues, `{"messages": [...], "skill": name, "answer": reply}`."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    names = sorted(SKILLS)
    for _ in range(100 * n):
        if len(out) == n:
            break
        name = names[len(out) % len(names)]
        question, answer = SKILLS[name](rng, words)
        if question in seen:
            continue
        seen.add(question)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        out.append({"messages": messages, "skill": name, "answer": answer})
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct questions from {len(words)} words, {n} were asked for")
    return out
