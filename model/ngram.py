"""Interpolated Kneser-Ney n-gram models: the baselines a GPT has to beat.

Fitted on token sequences (a source's train split, rendered with the GPT's own tokenizer) and
scored on exactly the positions the GPT is scored on (model/evaluate.py), so the perplexities
compare like with like. Bigram (order 2) and trigram (order 3), after Chen & Goodman (1998):

    P3(w | u v) = max(c(u v w) - D3, 0) / c(u v ·) + D3 N1+(u v ·) / c(u v ·) · P2(w | v)
    P2(w | v)   = max(n(v w) - D2, 0) / n(v ·) + D2 N1+(v ·) / n(v ·) · P1(w)
    P1(w)       = max(n(w) - D1, 0) / n(·) + D1 N1+(·) / n(·) · 1 / V

c are counts; n are continuation counts (how many distinct tokens precede the n-gram) below the
top order, where a bigram model uses counts at the top; N1+ counts distinct continuations; an
unseen context falls through to the order below. Each discount is D = n1 / (n1 + 2 n2), n1 and
n2 the numbers of n-grams seen once and twice at that order.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import torch


def _discount(counts: Iterable[int]) -> float:
    hist = Counter(c for c in counts if c <= 2)
    n1, n2 = hist[1], hist[2]
    return n1 / (n1 + 2 * n2) if n1 else 0.5


class _Level:
    """One order: (context, token) -> count, and per context the total and distinct count."""

    def __init__(self, counts: Counter):
        self.counts = counts
        self.total: dict[tuple, int] = defaultdict(int)
        self.types: dict[tuple, int] = defaultdict(int)
        for (ctx, _), c in counts.items():
            self.total[ctx] += c
            self.types[ctx] += 1
        self.discount = _discount(counts.values())


class KneserNey:
    """An interpolated Kneser-Ney model of order 2 or 3 over token ids 0..vocab_size-1."""

    def __init__(self, order: int, vocab_size: int):
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, got {order}")
        self.order, self.vocab_size = order, vocab_size
        self.levels: list[_Level] = []

    def fit(self, sequences: Iterable[Sequence[int]]) -> KneserNey:
        bigrams: Counter = Counter()
        trigrams: Counter = Counter()
        for seq in sequences:
            seq = list(seq)
            bigrams.update(zip(seq, seq[1:], strict=False))
            if self.order == 3:
                trigrams.update(zip(seq, seq[1:], seq[2:], strict=False))
        unigram_cont = Counter(w for _, w in bigrams)  # distinct tokens before w
        levels = [_Level(Counter({((), w): c for w, c in unigram_cont.items()}))]
        if self.order == 2:
            levels.append(_Level(Counter({((v,), w): c for (v, w), c in bigrams.items()})))
        else:
            bigram_cont = Counter((v, w) for _, v, w in trigrams)  # distinct tokens before v w
            levels.append(_Level(Counter({((v,), w): c for (v, w), c in bigram_cont.items()})))
            levels.append(_Level(Counter({((u, v), w): c for (u, v, w), c in trigrams.items()})))
        self.levels = levels
        return self

    def prob(self, context: Sequence[int], w: int) -> float:
        """P(w | the last order-1 tokens of context); a shorter context uses the lower orders."""
        p = 1.0 / self.vocab_size
        context = tuple(context)
        for n, level in enumerate(self.levels):  # n = context length at this level
            if n > len(context):
                break
            ctx = context[len(context) - n :] if n else ()
            total = level.total.get(ctx, 0)
            if total:
                d = level.discount
                p = max(level.counts.get((ctx, w), 0) - d, 0) / total + d * level.types[ctx] / total * p
        return p

    def score(self, rows: torch.Tensor, masks: torch.Tensor) -> tuple[float, int]:
        """(sum of -log P in nats, positions) over rows (N, T+1) where masks[:, 1:] is 1: each
        token predicted from the tokens before it in its row, as the GPT sees them."""
        nats, count = 0.0, 0
        k = self.order - 1
        for row, mask in zip(rows.tolist(), masks.tolist(), strict=True):
            for t in range(1, len(row)):
                if mask[t]:
                    nats -= math.log(self.prob(row[max(0, t - k) : t], row[t]))
                    count += 1
        return nats, count
