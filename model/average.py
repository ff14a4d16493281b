"""Average two checkpoints of one model, weight by weight: (1 - w) × base + w × tuned.

    python -m model.average --base model/checkpoints/default --tuned runs/sft --weight 0.4 --out runs/avg
    python -m model.export --src runs/avg --dst runs/int8
    python -m model.evaluate --checkpoint runs/int8

A fine-tuning run that goes on past its best point gains on some sources and loses on others (here:
better on the generated skills, facts and WordNet, worse on chitchat); the straight line between the
model it started from and where it ended often holds a point better than both on most sources (weight
averaging, as in WiSE-FT and model soups). `base` may be int8 (the shipped form: dequantized first) or
fp32; `tuned` is fp32 (what training writes) and must have the same shape and tokenizer. The result is
an fp32 checkpoint whose config.json is `tuned`'s, with an "average" stage in its training record that
names both and the weight, so its card says how it was made.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import load_fp32, read_config, save_checkpoint
from model.config import CheckpointError, training_stages
from model.device import device_name
from model.gpt import GPT


def average(base: Path, tuned: Path, weight: float, out: Path) -> dict[str, Any]:
    """Write (1 - weight) × base + weight × tuned to `out` (fp32); returns its config.json's training record."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"--weight must be within [0, 1], got {weight}")
    if read_config(tuned).get("quantization") is not None:
        raise CheckpointError(f"checkpoint {tuned}: --tuned must be fp32 (what training writes), not int8")
    began = time.perf_counter()
    a, tok_a, _ = load_fp32(base)
    b, tok_b, meta = load_fp32(tuned)
    if a.config != b.config:
        raise CheckpointError(f"{base} and {tuned} are different models: {a.config} against {b.config}")
    if tok_a.vocab_size != tok_b.vocab_size or tok_a.encode("Hello there!") != tok_b.encode("Hello there!"):
        raise CheckpointError(f"{base} and {tuned} have different tokenizers")
    first, second = a.state_dict(), b.state_dict()
    mixed = {name: torch.lerp(first[name].float(), t.float(), weight) for name, t in second.items()}
    model = GPT(b.config)
    model.load_state_dict(mixed, strict=True)
    training = dict(meta.get("training", {}))
    stages = [t for _, t in training_stages(training)]
    seed = stages[-1].get("args", {}).get("seed", 1234) if stages else 1234  # the held-out split's
    if "average" in training:  # averaging an average: the earlier record stays, nested (as a warm start's)
        training = {"earlier": training}
    training["average"] = {
        "stage": "average",
        "args": {"base": str(base), "tuned": str(tuned), "weight": weight, "seed": seed},
        "steps": 0,
        "tokens": 0,
        "minutes": round((time.perf_counter() - began) / 60, 2),
        "device": device_name(torch.device("cpu")),
        "processes": 1,
        "threads": torch.get_num_threads(),
        "autocast": "fp32",
        "recipe": f"weights {1 - weight:g} × {base} + {weight:g} × {tuned}",
        "warm_start": None,
        "train_loss": None,
        "val_loss": None,
        "finished": True,
    }
    save_checkpoint(out, model, tok_b, {**meta, "training": training})
    return training


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="the checkpoint the fine-tuning started from")
    p.add_argument("--tuned", type=Path, required=True, help="the fine-tuned checkpoint (fp32)")
    p.add_argument("--weight", type=float, required=True, help="the tuned checkpoint's share, 0 to 1")
    p.add_argument("--out", type=Path, required=True, help="folder of the averaged fp32 checkpoint")
    args = p.parse_args(argv)
    for name in ("base", "tuned"):  # it would be overwritten with the average: a run's weights lost
        if args.out.resolve() == getattr(args, name).resolve():
            p.error(f"--out is the --{name} checkpoint: write the average to a folder of its own")
    try:
        average(args.base, args.tuned, args.weight, args.out)
    except (CheckpointError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(f"wrote {args.out}: {1 - args.weight:g} × {args.base} + {args.weight:g} × {args.tuned}")


if __name__ == "__main__":
    main()
