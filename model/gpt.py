"""The GPT: one file, read top to bottom (after nanoGPT, with the nanoGPT-speedrun's changes).

Pre-norm transformer blocks and an untied language-model head. The default recipe is the modern
one: RMSNorm, rotary positions, QK-norm, a ReLU² MLP and zero-initialised output projections,
trained with Muon on the hidden matrices (configure_optimizer). Each change can be switched back
to the GPT-2 form in GPTConfig (LayerNorm, learned positions, GELU), which is how
bench/train_quality.py measures what each one is worth. With the default config (6 layers,
8 heads, d=512, context 384, vocab 16,387) it has ~36M parameters. Attention takes an optional
external KV cache, which is how model/engine.py runs incremental decoding; without one, the model
is the plain training/reference path.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn as nn
from torch.nn import functional as F

from model.config import GPTConfig
from model.optim import Muon, Optimizers

__all__ = ["GPT", "GPTConfig"]


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rms":
        return nn.RMSNorm(config.n_embd)
    if config.norm == "layer":
        return nn.LayerNorm(config.n_embd, bias=config.bias)
    raise ValueError(f"unknown norm {config.norm!r} (expected 'rms' or 'layer')")


def rotary(pos: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of the rotary angles at positions pos (T,) or (B, T): (1, 1, T, hs/2) or (B, 1, T, hs/2)."""
    inv_freq = base ** -(torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim)
    angles = pos.float()[..., None] * inv_freq  # (T, hs/2) or (B, T, hs/2)
    angles = angles[None, None] if angles.dim() == 2 else angles[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x1[i], x2[i]) of the two halves of the head dimension by its angle."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class LayerKV(Protocol):
    """What one attention layer needs from a KV cache (model/engine.py provides it)."""

    def update(
        self, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Store the new keys/values (B, nh, T, hs); return all keys, values so far and the boolean
        attention mask (B, 1, T, L) or None for plain causal attention over the returned keys."""
        ...


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, kv: LayerKV | None = None
    ) -> torch.Tensor:
        B, T, C = x.size()  # batch, sequence length, n_embd
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.qk_norm:
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        mask = None
        if kv is not None:
            k, v, mask = kv.update(k, v)  # (B, nh, L, hs): the cached past plus these T positions
        dropout = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        if config.mlp not in ("relu2", "gelu"):
            raise ValueError(f"unknown mlp {config.mlp!r} (expected 'relu2' or 'gelu')")
        self.relu2 = config.mlp == "relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, C) -> (B, T, 4C)
        h = F.relu(h).square() if self.relu2 else F.gelu(h)
        return self.dropout(self.c_proj(h))  # (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, kv: LayerKV | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, kv)
        x = x + self.mlp(self.ln_2(x))
        return x


class Trunk(nn.Module):
    """Embeddings, the blocks and the final norm (state-dict names as nanoGPT's `transformer`)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = make_norm(config)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.pos not in ("rope", "learned"):
            raise ValueError(f"unknown pos {config.pos!r} (expected 'rope' or 'learned')")
        self.config = config
        self.transformer = Trunk(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied from wte
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # the residual projections: zero, or GPT-2's scaled init
            if name.endswith("c_proj.weight"):
                if config.zero_init:
                    torch.nn.init.zeros_(p)
                else:
                    torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_dropout(self, p: float) -> GPT:
        """Train with dropout p from here on (a warm start's regularisation: the checkpoint's config keeps
        its own value, and eval mode, which every engine uses, drops nothing whatever p is)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            elif isinstance(module, CausalSelfAttention):
                module.dropout = p
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        *,
        pos: torch.Tensor | None = None,
        kv: list[LayerKV] | None = None,
        all_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids. With targets (B, T): logits (B, T, V) and the mean cross-entropy,
        over the positions where loss_mask (B, T) is 1 if it is given. Without targets: logits of the
        last position only, (B, 1, V), unless all_logits. pos (B, T) or (T,): absolute positions
        (default 0..T-1); kv: one cache per layer (model/engine.py)."""
        B, T = idx.size()
        cfg = self.config
        if pos is None:
            if cfg.block_size < T:
                raise ValueError(f"sequence of length {T} is longer than the context {cfg.block_size}")
            pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx)  # (B, T, C)
        rope = None
        if self.transformer.wpe is not None:
            x = x + self.transformer.wpe(pos)  # (T, C) or (B, T, C)
        else:
            rope = rotary(pos, cfg.n_embd // cfg.n_head, cfg.rope_base)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, rope, None if kv is None else kv[i])
        x = self.transformer.ln_f(x)

        if targets is None:
            logits = self.lm_head(x if all_logits else x[:, [-1], :])  # (B, 1, V) at inference
            return logits, None
        logits = self.lm_head(x)  # (B, T, V)
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), reduction="none")
        if loss_mask is None:
            return logits, losses.mean()
        m = loss_mask.view(-1).to(losses.dtype)
        return logits, (losses * m).sum() / m.sum().clamp(min=1.0)

    def configure_optimizer(
        self,
        weight_decay: float,
        learning_rate: float,
        betas: tuple[float, float] = (0.9, 0.95),
        device_type: str = "cpu",
        muon_lr: float | None = None,
    ) -> Optimizers:
        """AdamW for everything (muon_lr None), or Muon at muon_lr for the hidden matrices (the 2-D
        weights inside the blocks) with AdamW for the embeddings, head and gains. Weight decay on
        matrices only; AdamW fused on CUDA. Each group's `base_lr` is its peak rate."""
        hidden = {id(p) for p in self.transformer.h.parameters() if p.dim() == 2}
        params = [p for p in self.parameters() if p.requires_grad]
        matrices = [p for p in params if p.dim() >= 2 and (muon_lr is None or id(p) not in hidden)]
        groups = [
            {"params": matrices, "weight_decay": weight_decay, "base_lr": learning_rate},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "base_lr": learning_rate},
        ]
        fused = {"fused": True} if device_type == "cuda" else {}
        opts: list[torch.optim.Optimizer] = [
            torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **fused)
        ]
        if muon_lr is not None:
            muon_params = [p for p in params if id(p) in hidden]
            opts.append(
                Muon(
                    [{"params": muon_params, "base_lr": muon_lr}],
                    lr=muon_lr,
                    weight_decay=weight_decay,
                    momentum=0.95,
                    nesterov=True,
                )
            )
        return Optimizers(opts)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L H Q T, N
        without the embedding tables (a lookup is no matmul)."""
        cfg = self.config
        n = self.num_params() - self.transformer.wte.weight.numel()
        if self.transformer.wpe is not None:
            n -= self.transformer.wpe.weight.numel()
        t = seq_len or cfg.block_size
        return 6 * n + 12 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * t

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None
    ) -> torch.Tensor:
        """The plain reference: re-run the whole (cropped) sequence for every new token, no cache.
        idx (B, T) -> (B, T + max_new_tokens). temperature 0 is greedy."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size :]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :]  # (B, V)
            if temperature == 0:
                idx_next = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
