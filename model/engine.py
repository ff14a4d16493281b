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

import torch

from model.gpt import GPT
from model.runtime import cpu_budget, zeroed_pages
from model.sampling import SamplingParams, Slots, forbid_eos, sample_next_token
from model.tokenizer import EOS_ID, TextStreamer

__all__ = ["Engine", "SamplingParams", "TextStreamer", "cpu_budget", "forbid_eos", "sample_next_token"]


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
        # index_put does not cast as the prefill's slice copy does: under bf16 autocast the keys
        # come in bf16 (unlikelihood answers inside a training step) while the cache is the model's dtype
        self.kv[0, self.slots, :, self.pos] = k.to(self.kv.dtype)
        self.kv[1, self.slots, :, self.pos] = v.to(self.kv.dtype)
        return self.kv[(0, *self.read)], self.kv[(1, *self.read)], self.mask  # (B, nh, L, hs)


def _zeroed_cache(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zeroed KV cache. Masked keys must be finite (a NaN times a zero weight is NaN), so the cache
    starts at zero; on a CPU its pages are committed only as streams write positions."""
    if device.type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return torch.frombuffer(zeroed_pages(nbytes), dtype=dtype).view(shape)


class Engine(Slots):
    """A model plus a KV cache of (n_layer, 2, max_batch, n_head, block_size, head_dim)."""

    def __init__(self, model: GPT, max_batch: int = 16, eos_id: int = EOS_ID):
        cfg = model.config
        super().__init__(max_batch, cfg.block_size, eos_id)
        self.model = model.eval()
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        self.device: torch.device = model.transformer.ln_f.weight.device  # type: ignore[assignment]
        shape = (cfg.n_layer, 2, max_batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.cache = _zeroed_cache(shape, dtype, self.device)

    @torch.inference_mode()
    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        """Fill the slot's cache with `ids` (from position 0); returns the last position's logits (V,)."""
        self._check_prefill(slot, ids)
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        kv = [_SlotKV(layer, slot=slot) for layer in self.cache]
        logits, _ = self.model(idx, kv=kv)
        self.positions[slot] = len(ids)
        return logits[0, -1]

    def prefill_many(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Each prompt into its slot, one after another (the reference: the ONNX engine batches them);
        their last-position logits (len(slots), V)."""
        self._check_prefill_many(slots, prompts)
        return torch.stack([self.prefill(slot, ids) for slot, ids in zip(slots, prompts, strict=True)])

    @torch.inference_mode()
    def decode(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """One batched step: feed tokens[i] to slots[i] at that slot's position; returns (len(slots), V)."""
        self._check_decode(slots, tokens)
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
