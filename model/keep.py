"""Fine-tuning that keeps some sources where they are: SFT rows of a --keep source learn the starting
checkpoint's predictions (its whole distribution at every assistant token) instead of their own tokens.

Why: on this corpus every CPU fine-tuning run bought the generated skills at the price of the human
dialogue (docs/training-runs.md, runs 9-13): the starting checkpoint has seen chitchat many times, so more passes over
its rows memorise them, and its held-out loss rises. A kept row instead pulls the model back to what
the start predicted there (knowledge distillation from a frozen copy, the "learning without forgetting"
regulariser), so the rest of the mix can move the shared weights without dragging the kept sources.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def kept_rows(n_rest: int, n_kept: int) -> torch.Tensor:
    """The row flags of rows packed as (the other sources' rows, then the kept sources' rows)."""
    return torch.cat([torch.zeros(n_rest, dtype=torch.bool), torch.ones(n_kept, dtype=torch.bool)])


def soft_loss_sum(logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the positions where mask (B, T) is 1 of the cross-entropy of logits (B, T, V) against
    the distribution of teacher_logits (B, T, V): the KL divergence from the teacher plus its entropy,
    so its gradient is the KL's. Computed in fp32."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    q = F.softmax(teacher_logits.float(), dim=-1)
    per_position = -(q * log_p).sum(-1)  # (B, T)
    return (per_position * mask.to(per_position.dtype)).sum()


def combined_loss(
    logits: torch.Tensor,
    hard_loss: torch.Tensor,
    mask: torch.Tensor,
    kept: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    weight: float = 1.0,
    soft: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = soft_loss_sum,
) -> torch.Tensor:
    """The loss of the micro-batch, a mean over its masked positions: `hard_loss` is the mean token
    cross-entropy over the masked positions of the rows not kept (what the model returned for the mask
    with the kept rows zeroed), and kept rows (flags `kept`, (B,)) score against `teacher_logits`, the
    teacher's logits of those rows only, (K, T, V), each of their positions counting `weight` times.
    `soft`: soft_loss_sum, or a compiled form of it."""
    n_hard = mask[~kept].sum()
    total = hard_loss * n_hard
    n_soft = mask[kept].sum()
    if teacher_logits is not None and int(n_soft):
        total = total + weight * soft(logits[kept], teacher_logits, mask[kept])
    return total / (n_hard + n_soft).clamp(min=1)
