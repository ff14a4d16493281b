"""What a checkpoint folder describes, read without torch: the model's shape (GPTConfig) and
config.json. The serving process imports this, not model/gpt.py (see model/ort_engine.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default"
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
INT8_SCHEME = "int8 per-row fp16 scale"


class CheckpointError(Exception):
    """A checkpoint folder that cannot be used, with the reason in words."""


@dataclass(kw_only=True)
class GPTConfig:
    vocab_size: int = 16387
    block_size: int = 384
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm; off is a little faster and no worse
    norm: str = "rms"  # "rms" (nn.RMSNorm) or "layer" (nn.LayerNorm, GPT-2)
    pos: str = "rope"  # "rope" (rotary, no position table) or "learned" (GPT-2's wpe)
    mlp: str = "relu2"  # "relu2" (ReLU squared) or "gelu"
    qk_norm: bool = True  # RMS-normalise queries and keys per head before attention
    zero_init: bool = True  # output projections start at zero (each block starts as the identity)
    rope_base: float = 10000.0


def read_config(dir: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint folder, with errors that say what is missing or broken."""
    dir = Path(dir)
    if not dir.is_dir():
        raise CheckpointError(f"no checkpoint folder at {dir}")
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (dir / name).is_file():
            raise CheckpointError(f"checkpoint {dir} is incomplete: {name} is missing")
    try:
        meta = json.loads((dir / CONFIG).read_text())
        model_config(meta)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {dir}: {CONFIG} is corrupt ({e})") from e
    return meta


# what a config.json written before the architecture switches existed describes: GPT-2's blocks
LEGACY_ARCHITECTURE = {"norm": "layer", "pos": "learned", "mlp": "gelu", "qk_norm": False, "zero_init": False}


def model_config(meta: dict[str, Any]) -> GPTConfig:
    """The GPTConfig recorded in a checkpoint's config.json (unknown keys ignored; one written
    before GPTConfig had `norm` describes the GPT-2 architecture)."""
    known = {f.name for f in fields(GPTConfig)}
    recorded = {k: v for k, v in meta["model"].items() if k in known}
    return GPTConfig(**{**({} if "norm" in recorded else LEGACY_ARCHITECTURE), **recorded})


def training_stages(training: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every stage config.json records, oldest first. A warm start keeps the record of the model it
    started from under "earlier" (model/train.py); those stages are named by how many runs before
    the last one they were ("pretrain, 1 run before")."""
    runs = []
    while training:
        runs.append({k: v for k, v in training.items() if k != "earlier"})
        training = training.get("earlier") or {}
    named = []
    for back, run in reversed(list(enumerate(runs))):
        suffix = "" if back == 0 else f", {back} run{'s' if back > 1 else ''} before"
        named += [(f"{name}{suffix}", stage) for name, stage in run.items()]
    return named
