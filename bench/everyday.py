"""Everyday prompts: how a checkpoint answers what a new user types first (a benchmark, not a test).

    python -m bench.everyday                                  # the default checkpoint, both sets
    python -m bench.everyday --checkpoint runs/int8 --checkpoint model/checkpoints/default

Two sets of 20 prompts written for this script, never in the training data (greetings, courtesy, small
talk, arithmetic, spelling, meanings, opposites, simple facts), answered greedily by the served engine
(ONNX Runtime on an int8 checkpoint, as the chat function answers at temperature 0, with its loop guard:
`--loop-guard 0` for the model alone). Each answer is
printed with its verdict: for a prompt with one right answer, whether the answer says it (a pattern
below: it can pass a muddled answer that says the word, so read them too); for an open one (a greeting,
small talk), "judge": on topic or not is a person's call.
An answer that repeats a 3-word sequence is marked "loop" whatever it says. Prints, per set, the right
answers among the checkable ones and the loops, so that two checkpoints compare on the same prompts.
"""

from __future__ import annotations

import argparse
import re
from functools import partial
from pathlib import Path

from model.config import DEFAULT_CHECKPOINT, TOKENIZER
from model.evaluate import greedy, repeats_a_3gram
from model.loops import NGRAM_WORDS, WordTable
from model.runtime import cpu_description
from model.tokenizer import Tokenizer

# (prompt, pattern a right answer matches, case-insensitive; None: an open prompt, judged by reading)
SETS: dict[str, list[tuple[str, str | None]]] = {
    "A": [
        ("Hi there!", None),
        ("Good morning!", None),
        ("Thanks a lot!", r"welcome|pleasure|glad"),
        ("Bye for now.", r"bye|see you|take care"),
        ("Sorry about that.", r"no (worries|problem)|it'?s (ok|okay|fine|alright)|don'?t worry"),
        ("What do you like to do for fun?", None),
        ("Do you have any pets?", None),
        ("How was your weekend?", None),
        ("What is 12 plus 7?", r"\b19\b"),
        ("What is 6 times 4?", r"\b24\b"),
        ("Which is bigger, 42 or 24?", r"^\D*42\b[^.]*\bbigger|^\D*42\D*$"),
        ("How do you spell cat?", r"c-a-t"),
        ("How many letters are in the word apple?", r"^(?!.*spelled (?!a-p-p-l-e)).*(\b5\b|five)"),
        ("What does happy mean?", r"pleas|joy|glad|content|cheer"),
        ("What is a cat?", r"feline|mammal|\bpet\b"),
        ("What is the opposite of hot?", r"\bcold\b"),
        ("What's the opposite of fast?", r"\bslow\b"),
        ("What is the capital of France?", r"\bparis\b"),
        ("How many days are in a week?", r"\b7\b|seven"),
        ("What day comes after Monday?", r"tuesday"),
    ],
    "B": [
        ("Hey, how are you doing?", None),
        ("Hello, nice to meet you.", None),
        ("Have a great weekend!", r"you too|thank|thanks"),
        ("Good night!", r"night|sleep|dream"),
        ("Thank you so much for your help.", r"welcome|pleasure|glad|happy to help"),
        ("What is your favorite food?", None),
        ("What kind of music do you like?", None),
        ("How was your day?", None),
        ("What is 15 minus 6?", r"\b9\b|nine"),
        ("What is 8 plus 5?", r"\b13\b|thirteen"),
        ("Which is smaller, 3 or 8?", r"^\D*3\b[^.]*\bsmaller|^\D*3\D*$"),
        ("Can you spell the word water?", r"w-a-t-e-r"),
        ("Spell happy.", r"h-a-p-p-y"),
        (
            "What does tired mean?",
            r"sleepy|weary|exhaust|fatigue|need(s|ing)? (of )?(sleep|rest)|lack(s|ing)? energy",
        ),
        ("What is a dog?", r"canine|mammal|\bpet\b|\bwolf"),
        ("What is the opposite of up?", r"\bdown\b"),
        ("What is the opposite of big?", r"\bsmall\b|\blittle\b"),
        ("What color is the sky?", r"\bblue\b"),
        ("What month comes before June?", r"\bmay\b"),
        ("Is ice hot or cold?", r"^(?:(?!\bhot\b).)*\bcold\b"),  # cold, named before any "hot"
    ],
}


def greedy_answers(
    checkpoint: Path, prompts: list[str], max_new_tokens: int, loop_guard: int = NGRAM_WORDS
) -> list[str]:
    """Each prompt's greedy answer from the served engine, one at a time (model.evaluate.greedy), with
    the chat function's loop guard of `loop_guard` words (0: the model alone)."""
    from model.ort_engine import OrtEngine

    engine = OrtEngine.from_checkpoint(checkpoint, max_batch=1)
    tok = Tokenizer.from_file(checkpoint / TOKENIZER)
    words = WordTable(tok)
    ask = partial(greedy, engine, tok, max_new_tokens=max_new_tokens, words=words, loop_guard=loop_guard)
    return [ask([{"role": "user", "content": p}]) for p in prompts]


def verdict(answer: str, pattern: str | None) -> str:
    if repeats_a_3gram(answer):
        return "loop"
    if pattern is None:
        return "judge"
    return "right" if re.search(pattern, answer, re.IGNORECASE) else "wrong"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, action="append", help="int8 checkpoint folder (repeatable)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48, help="longest answer")
    parser.add_argument(
        "--loop-guard",
        type=int,
        default=NGRAM_WORDS,
        help="no sequence of this many words twice in an answer, as the chat function serves; 0 = off",
    )
    args = parser.parse_args()
    # the int8 kernels differ by CPU (and by the one a pass takes, as the first start measured), and with them
    # a few greedy answers: the eighth checkpoint had 10 and 9 right on an Intel Xeon with AMX, 10 or 11 and
    # 10 on an AVX2 EPYC
    print(f"CPU: {cpu_description()}")
    for checkpoint in args.checkpoint or [DEFAULT_CHECKPOINT]:
        print(f"\n## {checkpoint}")
        for name, items in SETS.items():
            prompts = [p for p, _ in items]
            answers = greedy_answers(checkpoint, prompts, args.max_new_tokens, args.loop_guard)
            verdicts = [verdict(a, pattern) for a, (_, pattern) in zip(answers, items, strict=True)]
            print(f"\n| set {name} | prompt | answer | verdict |\n|---|---|---|---|")
            for i, ((prompt, _), answer, v) in enumerate(zip(items, answers, verdicts, strict=True), 1):
                print(f"| {i} | {prompt} | {answer.replace('|', '/').replace(chr(10), ' ')} | {v} |")
            checkable = sum(pattern is not None for _, pattern in items)
            print(
                f"\nset {name}: {verdicts.count('right')} of {checkable} checkable answers right, "
                f"{verdicts.count('judge')} open ones to read, {verdicts.count('loop')} loops"
            )


if __name__ == "__main__":
    main()
