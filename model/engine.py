"""Inference: a preallocated KV cache with slots, sampling, and a text streamer.

Knows nothing of HTTP. One Engine serves many streams: each stream owns a slot of the cache,
`prefill` fills a slot from a prompt, and `decode` advances any set of slots by one token in a
single batched forward pass (each at its own position). `generate` is the single-stream loop.

    engine = Engine(model)
    for token in engine.generate(render_prompt(tok, messages), SamplingParams(temperature=0)):
        ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from model.gpt import GPT
from model.tokenizer import EOS_ID, Tokenizer

LAMBDA_MB_PER_VCPU = 1769


@dataclass
class SamplingParams:
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 50  # 0 = off
    top_p: float = 0.95  # 1.0 = off
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # <|eos|> is not sampled before this many tokens
    seed: int | None = None


def forbid_eos(logits: torch.Tensor, eos_id: int, rows: Sequence[bool]) -> torch.Tensor:
    """logits (B, V) with <|eos|> made impossible in the rows marked True (those still under their
    min_new_tokens); the tensor is left alone when no row is marked."""
    if any(rows):
        logits = logits.clone()
        logits[torch.tensor(rows, dtype=torch.bool, device=logits.device), eos_id] = float("-inf")
    return logits


def sample_next_token(
    logits: torch.Tensor,
    params: SamplingParams | Sequence[SamplingParams],
    generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """logits (B, V) -> next token ids (B,). params and generator: one for all rows, or one per row.

    One set of batched tensor ops serves every row (the server samples all its streams each step);
    each sampled row draws one uniform number from its own generator, so a seeded stream gets the
    same tokens whether it is decoded alone or in a batch."""
    B, V = logits.shape
    rows = [params] * B if isinstance(params, SamplingParams) else list(params)
    gens = list(generator) if isinstance(generator, Sequence) else [generator] * B
    if len(rows) != B or len(gens) != B:
        raise ValueError(f"{B} rows of logits need {B} sampling params and generators")
    out = logits.argmax(-1)
    sampled = [i for i, p in enumerate(rows) if p.temperature > 0 and p.top_k != 1]
    if not sampled:
        return out
    x = logits[sampled].float()
    # shifted to <= 0 and the temperature floored: a tiny temperature is near-greedy, never inf/nan
    temperature = torch.tensor([max(rows[i].temperature, 1e-6) for i in sampled]).unsqueeze(1)
    x = (x - x.max(-1, keepdim=True).values) / temperature
    ks = torch.tensor([rows[i].top_k if 0 < rows[i].top_k < V else V for i in sampled])
    k = int(ks.max())
    x, idx = torch.topk(x, k, dim=-1) if k < V else torch.sort(x, dim=-1, descending=True)
    x = x.masked_fill(torch.arange(k) >= ks.unsqueeze(1), float("-inf"))  # each row's own top-k
    probs = F.softmax(x, dim=-1)
    # keep the smallest prefix whose mass reaches top_p (at least one token, even when top_p is tiny)
    top_p = torch.tensor([rows[i].top_p if rows[i].top_p < 1.0 else math.inf for i in sampled])
    keep = (probs.cumsum(-1) - probs) < top_p.unsqueeze(1)
    keep[:, 0] = True
    cdf = (probs * keep).cumsum(-1)
    u = torch.stack([torch.rand((), generator=gens[i]) for i in sampled]) * cdf[:, -1]
    choice = torch.searchsorted(cdf, u.unsqueeze(1)).clamp_(max=k - 1)
    out[sampled] = idx.gather(1, choice).squeeze(1)
    return out


class _SlotKV:
    """One layer's view of the cache during one forward pass (the LayerKV protocol of model/gpt.py).
    Prefill: `slot` set, keys written from position 0. Decode: one key per row at `pos`, then the
    rows `read` (a slice or index of slots) are attended over positions 0..L-1 with `mask`."""

    def __init__(self, kv: torch.Tensor, slot=None, slots=None, pos=None, read=None, mask=None):
        self.kv, self.slot, self.slots, self.pos, self.read, self.mask = kv, slot, slots, pos, read, mask

    def update(self, k: torch.Tensor, v: torch.Tensor):
        if self.slot is not None:  # prefill: plain causal attention over the prompt itself
            T = k.size(2)
            self.kv[0, self.slot, :, :T] = k[0]
            self.kv[1, self.slot, :, :T] = v[0]
            return k, v, None
        k, v = k[:, :, 0], v[:, :, 0]  # (B, nh, hs), written at each row's position
        if isinstance(self.pos, int):  # one row: plain indexing is much cheaper than index_put
            k, v = k[0], v[0]
        self.kv[0, self.slots, :, self.pos] = k
        self.kv[1, self.slots, :, self.pos] = v
        return self.kv[(0, *self.read)], self.kv[(1, *self.read)], self.mask  # (B, nh, L, hs)


class Engine:
    """A model plus a KV cache of (n_layer, 2, max_batch, n_head, block_size, head_dim)."""

    def __init__(self, model: GPT, max_batch: int = 16, eos_id: int = EOS_ID):
        cfg = model.config
        self.model, self.max_batch, self.eos_id, self.block_size = (
            model.eval(),
            max_batch,
            eos_id,
            cfg.block_size,
        )
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        self.device = model.lm_head.weight.device
        shape = (cfg.n_layer, 2, max_batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.cache = torch.empty(shape, dtype=dtype, device=self.device)  # untouched pages cost no memory
        self.positions = [0] * max_batch
        self._touched: set[int] = set()

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

    @torch.inference_mode()
    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Fill the slot's cache with `ids` (from position 0); returns the last position's logits (V,)."""
        self._check_slot(slot)
        if not 0 < len(ids) < self.block_size:
            raise ValueError(f"prompt of {len(ids)} tokens: need 1..{self.block_size - 1} (the caller trims)")
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        if slot not in self._touched:  # masked keys must be finite: clear a slot's fresh memory once
            self.cache[:, :, slot].zero_()
            self._touched.add(slot)
        kv = [_SlotKV(layer, slot=slot) for layer in self.cache]
        logits, _ = self.model(idx, kv=kv)
        self.positions[slot] = len(ids)
        return logits[0, -1]

    @torch.inference_mode()
    def decode(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One batched step: feed tokens[i] to slots[i] at that slot's position; returns (len(slots), V)."""
        if len(slots) != len(tokens) or not slots or len(set(slots)) != len(slots):
            raise ValueError("decode needs as many tokens as distinct slots, at least one")
        for s in slots:
            self._check_slot(s)
            if self.positions[s] == 0 or self.positions[s] >= self.block_size:
                raise ValueError(f"slot {s} is at position {self.positions[s]}: prefill it / it is full")
        pos_list = [self.positions[s] for s in slots]
        L = max(pos_list) + 1
        pos = torch.tensor(pos_list, device=self.device)
        slot_t = torch.tensor(slots, device=self.device)
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        read = (slice(slots[0], slots[0] + len(slots)) if contiguous else slot_t, slice(None), slice(0, L))
        mask = None  # one row, or all rows at one position: every cached key is visible
        if len(set(pos_list)) > 1:
            mask = (torch.arange(L, device=self.device)[None, :] <= pos[:, None])[
                :, None, None, :
            ]  # (B,1,1,L)
        write = (slots[0], pos_list[0]) if len(slots) == 1 else (slot_t, pos)
        kv = [_SlotKV(layer, slots=write[0], pos=write[1], read=read, mask=mask) for layer in self.cache]
        idx = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]  # (B, 1)
        logits, _ = self.model(idx, pos=pos[:, None], kv=kv)
        for s in slots:
            self.positions[s] += 1
        return logits[:, -1]

    def generate(self, ids: list[int], params: SamplingParams) -> Iterator[int]:
        """Sample up to max_new_tokens after `ids` in slot 0; stops at <|eos|> (not yielded, and never
        before min_new_tokens) or when the context (block_size) is full."""
        gen = None if params.seed is None else torch.Generator(self.device).manual_seed(params.seed)
        logits = self.prefill(0, ids)
        for n in range(params.max_new_tokens):
            logits = forbid_eos(logits[None], self.eos_id, [n < params.min_new_tokens])[0]
            token = int(sample_next_token(logits[None], params, gen)[0])
            if token == self.eos_id:
                return
            yield token
            if self.positions[0] >= self.block_size:
                return
            logits = self.decode([0], [token])[0]


class TextStreamer:
    """Turns token ids into text deltas that never split a UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pending: list[int] = []

    def put(self, token_id: int) -> str:
        self.pending.append(token_id)
        text = self.tokenizer.decode(self.pending)
        # a trailing U+FFFD means the bytes of a character are still incomplete; wait (a character
        # is at most 4 bytes, so after 8 tokens it is truly invalid and goes out as it is)
        if text.endswith("\ufffd") and len(self.pending) < 8:
            return ""
        self.pending = []
        return text

    def end(self) -> str:
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending = []
        return text


def _cgroup_cpus(root: Path) -> float | None:
    """CPUs allowed by a cgroup v2 cpu.max or v1 cfs quota under `root`, None when unlimited."""
    candidates = [root / "cpu.max"]
    proc = Path("/proc/self/cgroup")
    if proc.is_file():  # the process's own cgroup below the root (v2: "0::/path")
        for line in proc.read_text().splitlines():
            if line.startswith("0::") and line[3:].strip("/"):
                candidates.insert(0, root / line[3:].strip("/") / "cpu.max")
    for f in candidates:
        if f.is_file():
            quota, _, period = f.read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100000)
    for d in (root / "cpu", root / "cpu,cpuacct", root):
        q, p = d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"
        if q.is_file() and p.is_file():
            us = int(q.read_text())
            return None if us < 0 else us / int(p.read_text())
    return None


def cpu_budget(
    cgroup_root: str | Path = "/sys/fs/cgroup",
    environ: Mapping[str, str] | None = None,
    affinity: int | None = None,
) -> int:
    """The CPUs this process may really use: the least of its affinity mask, its cgroup quota and,
    on AWS Lambda, its memory size (1,769 MB buys one vCPU); at least 1. Never os.cpu_count()."""
    environ = os.environ if environ is None else environ
    limits = [affinity if affinity is not None else len(os.sched_getaffinity(0))]
    quota = _cgroup_cpus(Path(cgroup_root))
    if quota is not None:
        limits.append(math.ceil(quota))
    if environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").isdigit():
        limits.append(int(environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) // LAMBDA_MB_PER_VCPU)
    return max(1, min(limits))
