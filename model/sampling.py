"""Sampling and the slot bookkeeping both engines share (torch's and ONNX Runtime's), in numpy:
no torch import.

`sample_next_token` turns a (B, V) block of logits into B token ids with one set of batched array
ops (the server samples all its streams each step, on the thread that runs the model, so every
microsecond here is one the batch's next pass waits for). Each sampled row draws one uniform number
from its own generator, so a seeded stream gets the same tokens decoded alone or in a batch, and on
either engine where their logits agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.loops import RepeatGuard, WordTable, forbid_repeats


@dataclass(kw_only=True)
class SamplingParams:
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 50  # 0 = off
    top_p: float = 0.95  # 1.0 = off
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # <|eos|> is not sampled before this many tokens
    seed: int | None = None
    # words: no sequence of this many words twice in one answer (model/loops.py); 0 = off
    no_repeat_ngram: int = 0


def new_generator(seed: int | None) -> np.random.Generator | None:
    """A stream's own random generator (None: draw from the process-wide one)."""
    return None if seed is None else np.random.default_rng(seed)


def _as_array(logits: Any) -> np.ndarray:
    """numpy float32 logits from a numpy array or a CPU torch tensor (which needs no torch import)."""
    if hasattr(logits, "detach"):
        logits = logits.detach().float().numpy()
    return np.asarray(logits, dtype=np.float32)


def forbid_eos(logits: Any, eos_id: int, rows: Sequence[bool]) -> np.ndarray:
    """logits (B, V) with <|eos|> made impossible in the rows marked True (those still under their
    min_new_tokens); a copy only where some row is marked."""
    out = _as_array(logits)
    if any(rows):
        out = out.copy()
        out[np.asarray(rows, dtype=bool), eos_id] = -np.inf
    return out


_SHARED = np.random.default_rng()


def sample_next_token(
    logits: Any,
    params: SamplingParams | Sequence[SamplingParams],
    generator: np.random.Generator | Sequence[np.random.Generator | None] | None = None,
) -> np.ndarray:
    """logits (B, V) -> next token ids (B,) int64. params and generator: one for all rows, or one
    per row. temperature 0 or top_k 1 is greedy; otherwise softmax at the temperature over each
    row's top_k, then the smallest prefix whose mass reaches top_p (at least one token)."""
    x_all = _as_array(logits)
    B, V = x_all.shape
    rows = [params] * B if isinstance(params, SamplingParams) else list(params)
    gens = list(generator) if isinstance(generator, Sequence) else [generator] * B
    if len(rows) != B or len(gens) != B:
        raise ValueError(f"{B} rows of logits need {B} sampling params and generators")
    out = x_all.argmax(-1).astype(np.int64)
    sampled = [i for i, p in enumerate(rows) if p.temperature > 0 and p.top_k != 1]
    if not sampled:
        return out
    x = x_all if len(sampled) == B else x_all[sampled]  # read only: no copy of every row
    # shifted to <= 0 and the temperature floored: a tiny temperature is near-greedy, never inf/nan
    temperature = np.array([max(rows[i].temperature, 1e-6) for i in sampled])[:, None]
    ks = np.array([rows[i].top_k if 0 < rows[i].top_k < V else V for i in sampled])
    k = int(ks.max())
    top_p = np.array([rows[i].top_p if rows[i].top_p < 1.0 else math.inf for i in sampled])
    u = np.array([(gens[i] or _SHARED).random() for i in sampled])  # one draw per sampled row
    if k == V and np.isinf(top_p).all():  # the whole softmax: no order needed, no sort of 16k logits
        weights = np.subtract(x, x.max(-1, keepdims=True))  # the one new array; the rest in place
        if (temperature != 1.0).any():
            weights /= temperature.astype(np.float32)
        out[sampled] = _inverse_cdf(np.exp(weights, out=weights), u)
        return out
    # each row's k best, best first (the order of the raw logits is the same at any temperature)
    idx = top_k_indices(x, k) if k < V else np.argsort(-x, axis=-1, kind="stable")
    x = np.take_along_axis(x, idx, -1).astype(np.float64)
    x = (x - x[:, :1]) / temperature
    x = np.where(np.arange(k)[None, :] >= ks[:, None], -np.inf, x)  # each row's own top-k
    probs = np.exp(x)
    probs /= probs.sum(-1, keepdims=True)
    keep = (np.cumsum(probs, -1) - probs) < top_p[:, None]
    keep[:, 0] = True
    cdf = np.cumsum(probs * keep, -1)
    u = u * cdf[:, -1]
    choice = np.minimum([np.searchsorted(cdf[r], u[r], side="left") for r in range(len(sampled))], k - 1)
    out[sampled] = idx[np.arange(len(sampled)), choice]
    return out


TOP_K_GROUPS = 256  # top_k_indices' groups of a row: any top_k up to 256 (the API's bound is 200)


def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's k largest entries of x (R, V), largest first, ties in index order: (R, k) indices.

    A row's entries fall in TOP_K_GROUPS groups (entry i in group i % TOP_K_GROUPS, over the first
    TOP_K_GROUPS * (V // TOP_K_GROUPS) entries). The k-th largest of the groups' maxima is a floor that
    at least k entries reach (those k groups' own maxima), so the row's k largest all reach it too: they
    are found among the entries at or above the floor, typically a few dozen of 16k, sorted, instead of
    by a partition of the whole row (np.argpartition over 8 x 16,387 logits took ~220 us; this ~90).
    The groups' maxima are an elementwise maximum of contiguous runs, which vectorises well."""
    rows, V = x.shape
    size = V // TOP_K_GROUPS
    if k > TOP_K_GROUPS or size == 0:  # a small vocabulary, or k past the API's bound: sort the rows
        return np.argsort(-x, axis=-1, kind="stable")[:, :k]
    maxima = x[:, : size * TOP_K_GROUPS].reshape(rows, size, TOP_K_GROUPS).max(1)  # a view of x, reduced
    floor = np.partition(maxima, TOP_K_GROUPS - k, axis=-1)[:, TOP_K_GROUPS - k]
    flat = np.flatnonzero(x >= floor[:, None])  # the candidates, row by row, each in index order
    row, col = np.divmod(flat, V)
    counts = np.bincount(row, minlength=rows)
    if (counts < k).any():  # only NaN logits compare below a floor of their own: sort those rows
        return np.argsort(-x, axis=-1, kind="stable")[:, :k]
    order = np.lexsort((-x[row, col], row))  # by row, then largest first; stable: ties keep index order
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return col[order[starts[:, None] + np.arange(k)]]


CDF_BLOCK = 128


def _inverse_cdf(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each row of non-negative weights (R, V), the first index where the running sum reaches u times
    the row's total (numpy's searchsorted "left" on the cumulative sum). The running sum goes by blocks of
    CDF_BLOCK: the blocks' sums (vectorised, over a view of the rows: a vocabulary that is not a multiple
    of the block has a short last block of its own), their running sum, then the running sum inside the
    one block the draw lands in; 3x faster than a cumsum of 16k float32 logits per row, and nearer
    float64's answer (a sequential float32 sum drifts: 307 of 16,000 draws disagreed with float64's,
    against 7)."""
    rows, V = weights.shape
    full = V // CDF_BLOCK
    blocks = weights[:, : full * CDF_BLOCK].reshape(rows, full, CDF_BLOCK)  # a view: no copy of the weights
    tail = weights[:, full * CDF_BLOCK :]  # the short last block (V not a multiple of the block), if any
    sums = np.concatenate([blocks.sum(-1), tail.sum(-1, keepdims=True)], -1) if tail.size else blocks.sum(-1)
    running = np.cumsum(sums, -1)  # (rows, blocks)
    target = u * running[:, -1]
    block = np.minimum((running < target[:, None]).sum(-1), sums.shape[1] - 1)
    every = np.arange(rows)
    before = np.where(block > 0, running[every, block - 1], 0.0)
    inner = np.zeros((rows, CDF_BLOCK), np.float32)  # each row's block the draw lands in (the tail: 0-padded)
    main = block < full
    inner[main] = blocks[every[main], block[main]]
    inner[~main, : tail.shape[1]] = tail[~main]
    inside = np.cumsum(inner, -1) + before[:, None]
    index = np.minimum((inside < target[:, None]).sum(-1), CDF_BLOCK - 1)
    return np.minimum(block * CDF_BLOCK + index, V - 1)


class Slots:
    """What both engines share: a KV cache of `max_batch` slots of `block_size` positions, each slot's
    length, the checks on prefill and decode arguments, and the single-stream `generate` loop.
    Subclasses provide prefill(slot, ids) -> (V,) logits, prefill_many(slots, prompts) -> (B, V) and
    decode(slots, tokens) -> (B, V)."""

    def __init__(self, max_batch: int, block_size: int, eos_id: int) -> None:
        self.max_batch, self.block_size, self.eos_id = max_batch, block_size, eos_id
        self.positions = [0] * max_batch

    def prefill(self, slot: int, ids: list[int]) -> Any:
        raise NotImplementedError

    def prefill_many(self, slots: list[int], prompts: list[list[int]]) -> Any:
        """prefill of each prompt into its slot (distinct slots); their logits (len(slots), V)."""
        raise NotImplementedError

    def decode(self, slots: list[int], tokens: list[int]) -> Any:
        raise NotImplementedError

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.max_batch:
            raise ValueError(f"slot {slot} out of range 0..{self.max_batch - 1}")

    def position(self, slot: int) -> int:
        """Tokens held in the slot's cache (the position the next token goes to)."""
        self._check_slot(slot)
        return self.positions[slot]

    def release(self, slot: int) -> None:
        self._check_slot(slot)
        self.positions[slot] = 0

    def _check_prefill(self, slot: int, ids: list[int]) -> None:
        self._check_slot(slot)
        if not 0 < len(ids) < self.block_size:
            raise ValueError(f"prompt of {len(ids)} tokens: need 1..{self.block_size - 1} (the caller trims)")

    def _check_prefill_many(self, slots: list[int], prompts: list[list[int]]) -> None:
        if len(set(slots)) != len(slots) or len(slots) != len(prompts):
            raise ValueError("prefill_many needs one prompt for each of distinct slots")
        for slot, ids in zip(slots, prompts, strict=True):
            self._check_prefill(slot, ids)

    def _check_decode(self, slots: list[int], tokens: list[int]) -> None:
        if len(slots) != len(tokens) or not slots or len(set(slots)) != len(slots):
            raise ValueError("decode needs as many tokens as distinct slots, at least one")
        for s in slots:
            self._check_slot(s)
            if self.positions[s] == 0 or self.positions[s] >= self.block_size:
                raise ValueError(f"slot {s} is at position {self.positions[s]}: prefill it / it is full")

    def generate(
        self, ids: list[int], params: SamplingParams, words: WordTable | None = None
    ) -> Iterator[int]:
        """Sample up to max_new_tokens after `ids` in slot 0; stops at <|eos|> (not yielded, and never
        before min_new_tokens) or when the context (block_size) is full. params.no_repeat_ngram needs
        the tokenizer's `words`."""
        gen = new_generator(params.seed)
        guard = repeat_guard(params, words)
        logits = self.prefill(0, ids)
        for n in range(params.max_new_tokens):
            logits = forbid_eos(logits[None], self.eos_id, [n < params.min_new_tokens])
            token = int(sample_next_token(forbid_repeats(logits, [guard]), params, gen)[0])
            if token == self.eos_id:
                return
            yield token
            if guard is not None:
                guard.push(token)
            if self.positions[0] >= self.block_size:
                return
            logits = self.decode([0], [token])[0]


def repeat_guard(params: SamplingParams, words: WordTable | None) -> RepeatGuard | None:
    """The loop guard a stream with these params needs (None when params.no_repeat_ngram is 0)."""
    if not params.no_repeat_ngram:
        return None
    if words is None:
        raise ValueError("a loop guard (no_repeat_ngram) needs the tokenizer's WordTable")
    return RepeatGuard(words, params.no_repeat_ngram)
