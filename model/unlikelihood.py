"""Sequence-level unlikelihood training against greedy loops (Welleck et al., 2019, "Neural Text
Generation with Unlikelihood Training").

Maximum likelihood alone never tells the model that "I'm going to go to the doctor, but I'm going to
go to the doctor" is bad: every token of it is likely given the last. Here the model answers training
prompts greedily, as `model.evaluate` and a temperature-0 user do, and every token of an n-gram the
answer already said is pushed down with -log(1 - p(token)). Answers that do not loop add nothing, so
the loss is zero once the model stops looping on the prompts it is shown. Fine-tuning mixes it into
each SFT step (model/train.py --unlikelihood).
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import torch

from model.corpus.build import GENERATED
from model.engine import Engine
from model.gpt import GPT
from model.tokenizer import Tokenizer, render_prompt

NGRAM = 4  # tokens; about three words, the report card's loop check
ANSWER_TOKENS = 64  # as long as model.evaluate's greedy answers


def answer_prompts(tok: Tokenizer, train: dict[str, list], block_size: int) -> dict[str, list[list[int]]]:
    """Each dialogue source's distinct first user turns, rendered for the assistant's answer; the
    generated skills aside (their worked steps repeat by design, and exact match checks them), and
    turns too long to leave a whole answer's room in the window (chitchat has turns of 600+ tokens)."""
    out: dict[str, list[list[int]]] = {}
    for name, conversations in train.items():
        if name in GENERATED or not conversations or isinstance(conversations[0], str):  # or prose
            continue
        turns = {next((m["content"] for m in c if m["role"] == "user"), ""): None for c in conversations}
        rendered = (render_prompt(tok, [{"role": "user", "content": t}]) for t in turns if t)
        out[name] = [p for p in rendered if len(p) + ANSWER_TOKENS <= block_size]
    return {k: v for k, v in out.items() if v}


def repeated_ngrams(ids: Sequence[Hashable], n: int = NGRAM) -> list[bool]:
    """For each item (a token; model.evaluate's loop check passes words), whether it belongs to an
    n-gram that already occurred earlier in `ids`."""
    seen: set[tuple[Hashable, ...]] = set()
    flags = [False] * len(ids)
    for i in range(len(ids) - n + 1):
        gram = tuple(ids[i : i + n])
        if gram in seen:
            flags[i : i + n] = [True] * n
        seen.add(gram)
    return flags


@torch.no_grad()
def greedy_answers(model: GPT, prompts: list[list[int]], max_new_tokens: int, eos_id: int) -> list[list[int]]:
    """Each prompt's greedy answer (at most max_new_tokens, without the <|eos|>), all in one batch."""
    was_training = model.training
    engine = Engine(model, max_batch=len(prompts), eos_id=eos_id)
    budget = [min(max_new_tokens, model.config.block_size - len(p)) for p in prompts]
    answers: list[list[int]] = [[] for _ in prompts]
    last = [int(engine.prefill(i, p).argmax()) for i, p in enumerate(prompts)]
    live = [i for i in range(len(prompts)) if budget[i] > 0]
    while live:
        for i in list(live):
            if last[i] == eos_id:
                live.remove(i)
                continue
            answers[i].append(last[i])
            if len(answers[i]) >= budget[i]:
                live.remove(i)
        if not live:
            break
        logits = engine.decode(live, [last[i] for i in live])
        for i, token in zip(live, logits.argmax(-1).tolist(), strict=True):
            last[i] = token
    model.train(was_training)
    return answers


def sequence_unlikelihood(
    net: torch.nn.Module,
    prompts: list[list[int]],
    answers: list[list[int]],
    pad_id: int,
    block_size: int,
    n: int = NGRAM,
) -> tuple[torch.Tensor, float]:
    """(loss, share of the answers' tokens penalized): mean over all answer tokens of -log(1 - p) for
    the tokens of repeated n-grams. `net` is the model (or its compiled/DDP wrapper) being trained."""
    rows, marks = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        rows.append(prompt + answer)
        marks.append([False] * len(prompt) + repeated_ngrams(answer, n))
    longest = max(len(r) for r in rows)  # at most block_size (greedy_answers stops there)
    width = min(-(-longest // 64) * 64, block_size + 1)  # a few distinct shapes for torch.compile
    x = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    target = torch.zeros_like(x, dtype=torch.bool)  # the tokens to push down, as targets of position t-1
    for b, m in enumerate(marks):
        target[b, : len(m)] = torch.tensor(m)
    total = max(sum(len(a) for a in answers), 1)
    if not target.any():
        return torch.zeros(()), 0.0
    device = next(net.parameters()).device
    logits, _ = net(x[:, :-1].to(device), all_logits=True)
    logp = logits.float().log_softmax(-1).gather(-1, x[:, 1:, None].to(device))[..., 0]
    penalized = target[:, 1:].to(device)
    ul = -torch.log((1 - logp.exp()).clamp(min=1e-5))
    return (ul * penalized).sum() / total, penalized.sum().item() / total


def unlikelihood_loss(
    model: GPT, net: torch.nn.Module, prompts: dict[str, list[list[int]]], k: int, key: str, tok: Tokenizer
) -> tuple[torch.Tensor, float]:
    """One step's loss on k prompts drawn by `key` (a pure function of it: a resumed run draws the same),
    each from a source drawn uniformly (as model.evaluate asks each source equally often): the model
    answers them greedily, then `net` scores the answers (sequence_unlikelihood)."""
    rng, names = random.Random(key), sorted(prompts)
    picked = [rng.choice(prompts[rng.choice(names)]) for _ in range(k)]
    answers = greedy_answers(model, picked, ANSWER_TOKENS, tok.eos_id)
    return sequence_unlikelihood(net, picked, answers, tok.pad_id, model.config.block_size)
