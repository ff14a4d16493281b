"""Questions asked in many ways, and the split that holds out problems and whole phrasings.

Every generated kind of question (spelling, arithmetic, "What is the capital of France?") has
template FAMILIES: one way of asking, with its near copies (quoted or bare word, with or without a
question mark). A family marked held_out is never trained on. The split of a kind:

- its problems (the thing asked: "spell house", "47+38", "capital France") go to train or val by
  a seeded shuffle of their keys (model.data.holdout, key "<seed>:<kind>");
- train: each train problem asked in `per_problem` trained families;
- val, held_out "problem": each val problem asked once in a trained family (a computed skill
  must get it right; a fact never trained on is scored for perplexity only: held_out "fact");
- val, held_out "phrasing": up to `phrasings` train problems asked in a held-out family, so the
  model knows the answer and only the phrasing is new.

The answer depends on the problem only, never on the phrasing: one way of answering per kind,
which restates the question ("The word house is spelled h-o-u-s-e.").
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from model.data import holdout


@dataclass(frozen=True, kw_only=True)
class Family:
    name: str
    templates: tuple[str, ...]
    held_out: bool = False


@dataclass(frozen=True, kw_only=True)
class Kind:
    name: str
    families: tuple[Family, ...]
    word_fields: tuple[str, ...] = ()  # single words a template may quote or capitalize
    computed: bool = True  # the answer follows from the question: held-out problems are exact-matched

    def trained(self) -> list[Family]:
        return [f for f in self.families if not f.held_out]

    def held_out(self) -> list[Family]:
        return [f for f in self.families if f.held_out]


@dataclass(frozen=True, kw_only=True)
class Problem:
    key: str  # what is asked, whatever the phrasing: "spell house"
    fields: Mapping[str, str | tuple[str, ...]]  # a tuple: ways of writing it, one drawn per question
    answer: str


def family(name: str, *templates: str, held_out: bool = False) -> Family:
    return Family(name=name, templates=templates, held_out=held_out)


def ask(kind: Kind, fam: Family, problem: Problem, rng: random.Random) -> str:
    """One template of the family, filled in: a word field bare (mostly), quoted or capitalized;
    and now and then written casually, lower-case and without its final punctuation."""
    fields = {k: v if isinstance(v, str) else rng.choice(v) for k, v in problem.fields.items()}
    for name in kind.word_fields:
        r = rng.random()
        if r < 0.2:
            fields[name] = f'"{fields[name]}"'
        elif r < 0.3:
            fields[name] = fields[name].capitalize()
    text = rng.choice(fam.templates).format(**fields)
    r = rng.random()
    if r < 0.2:
        text = text[0].lower() + text[1:]
        text = text[:-1] if text[-1] in "?." else text
    elif r < 0.3 and text[-1] == "?":
        text = text[:-1]
    return text


def row(kind: Kind, fam: Family, problem: Problem, rng: random.Random, held_out: str | None) -> dict:
    """A one-exchange dialogue with what evaluation needs: the kind, the reference answer, the family
    and (val rows) what is held out."""
    messages = [
        {"role": "user", "content": ask(kind, fam, problem, rng)},
        {"role": "assistant", "content": problem.answer},
    ]
    out = {"messages": messages, "skill": kind.name, "answer": problem.answer, "family": fam.name}
    return {**out, "held_out": held_out} if held_out else out


def split_kind(
    kind: Kind,
    problems: Sequence[Problem],
    seed: int,
    *,
    per_problem: int = 1,
    phrasings: int = 400,
    hold_problems: bool = True,
    pinned: Collection[str] = (),
) -> tuple[list[dict], list[dict]]:
    """(train, val) dialogues of one kind (module docstring). Problems must have distinct keys;
    hold_problems=False trains on every problem (a closed set such as the days of the week), so
    only phrasings are held out; a problem whose key is pinned is always trained on (everyday words:
    "spell dog" is never held out)."""
    if len({p.key for p in problems}) != len(problems):
        raise ValueError(f"{kind.name}: two problems share a key")
    if not kind.held_out() or len(kind.trained()) < per_problem:
        raise ValueError(f"{kind.name}: needs a held-out family and {per_problem} trained ones")
    rng = random.Random(f"{seed}:{kind.name}:phrasing")
    pinned = set(pinned)
    free = [p for p in problems if p.key not in pinned]
    train_problems, val_problems = holdout(free, f"{seed}:{kind.name}") if hold_problems else (free, [])
    train_problems += [p for p in problems if p.key in pinned]
    train = [
        row(kind, fam, p, rng, None)
        for p in train_problems
        for fam in rng.sample(kind.trained(), per_problem)
    ]
    unseen = "problem" if kind.computed else "fact"
    val = [row(kind, rng.choice(kind.trained()), p, rng, unseen) for p in val_problems]
    for p in rng.sample(train_problems, min(phrasings, len(train_problems))):
        val.append(row(kind, rng.choice(kind.held_out()), p, rng, "phrasing"))
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def template_count(kind: Kind) -> int:
    return sum(len(f.templates) for f in kind.families)


def describe(kinds: Sequence[Kind]) -> dict[str, dict]:
    """What the manifest records of each kind: its templates and the families held out."""
    return {
        k.name: {
            "templates": template_count(k),
            "families": len(k.families),
            "held_out_families": [f.name for f in k.held_out()],
        }
        for k in kinds
    }
