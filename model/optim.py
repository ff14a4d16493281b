"""Optimizers for model/gpt.py: torch's Muon with a CPU fallback, several optimizers as one, and
the learning-rate schedule.

torch.optim.Muon runs its Newton-Schulz iteration in bf16. On a CPU without bf16 matrix units
(AVX2 only, no AVX512-BF16 or AMX) a bf16 matmul falls back to a path ~100x slower than fp32
(measured here: 0.001-0.02 against 0.10 TFLOP/s on 2 threads), which made one Muon step take
minutes. `Muon` below is torch's optimizer, state and all, with the iteration in fp32 there.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim._muon import _adjust_lr

from model.device import fast_bf16_matmul


def newton_schulz_fp32(g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float):
    """torch's quintic Newton-Schulz orthogonalisation (same coefficients and steps), in fp32."""
    a, b, c = coefficients
    x = g.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon; where bf16 matmuls are slow (see the module doc), the same update with
    the orthogonalisation in fp32."""

    def __init__(self, params: Any, **kwargs: Any):
        super().__init__(params, **kwargs)
        first = next(p for g in self.param_groups for p in g["params"])
        self.bf16 = fast_bf16_matmul(first.device)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if self.bf16:
            return super().step(closure)
        loss = None if closure is None else closure()
        ortho = newton_schulz_fp32
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            bufs: list[torch.Tensor] = []
            self._init_group(group, params, grads, bufs)
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p, grad, buf in zip(params, grads, bufs, strict=True):
                buf.lerp_(grad, 1 - mom)
                update = grad.lerp(buf, mom) if group["nesterov"] else buf
                update = ortho(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.mul_(1 - lr * wd)
                p.add_(update.to(p.dtype), alpha=-_adjust_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss


def lr_factor(
    step: int, progress: float, schedule: str, warmup: int, decay_frac: float, floor: float
) -> float:
    """The learning rate as a fraction of the peak: linear warmup over `warmup` steps, then either
    warmup-stable-decay ("wsd": flat, then linear down to `floor` over the last `decay_frac` of
    progress) or a cosine to `floor` ("cosine"), as progress goes 0 -> 1."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(progress, 1.0)
    if schedule == "cosine":
        return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * p))
    start = 1.0 - decay_frac
    return 1.0 if p <= start else 1.0 - (1.0 - floor) * (p - start) / max(decay_frac, 1e-9)


class Optimizers:
    """Several optimizers stepped as one (Muon and AdamW); the schedule sets lr = base_lr * factor."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def set_lr_factor(self, factor: float) -> None:
        for g in self.param_groups:
            g["lr"] = g["base_lr"] * factor

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict[str, Any]]:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]] | dict[str, Any]) -> None:
        states = states if isinstance(states, list) else [states]
        if len(states) != len(self.optimizers):
            raise ValueError(f"saved state has {len(states)} optimizers, this run has {len(self.optimizers)}")
        for o, s in zip(self.optimizers, states, strict=True):
            o.load_state_dict(s)
