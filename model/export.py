"""Export an fp32 checkpoint to the shipped int8 form and say what it costs.

    python -m model.export --src runs/chat --dst model/checkpoints/default

Writes int8 matrices with one fp16 scale per output row (model/quant.py), then prints the sizes
and the largest absolute logit difference between fp32 and int8 on a few fixed prompts, for both
int8 paths (exact weights-only and the fast CPU kernel), and records them in config.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from model.checkpoint import CONFIG, WEIGHTS, CheckpointError, export_int8, load_checkpoint
from model.tokenizer import render_prompt

PROMPTS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "user", "content": "Tell me a short story about a cat."},
        {"role": "assistant", "content": "Once upon a time, a small cat lived by the sea."},
        {"role": "user", "content": "What happened next? 🙂"},
    ],
]


@torch.inference_mode()
def max_logit_diff(src: Path, dst: Path) -> dict[str, float]:
    """Largest |fp32 - int8| logit over every position of PROMPTS, per int8 path."""
    ref, tok, _ = load_checkpoint(src)
    out = {}
    for name, fast in (("exact", False), ("fast_cpu", True)):
        q, _, _ = load_checkpoint(dst, fast_int8=fast)
        diffs = []
        for messages in PROMPTS:
            idx = torch.tensor([render_prompt(tok, messages)[-ref.config.block_size :]])
            diffs.append((ref(idx, all_logits=True)[0] - q(idx, all_logits=True)[0]).abs().max().item())
        out[name] = max(diffs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="fp32 checkpoint folder (what training wrote)")
    p.add_argument("--dst", type=Path, required=True, help="folder for the int8 checkpoint (created)")
    args = p.parse_args()
    if args.dst.resolve() == args.src.resolve():
        raise SystemExit("--dst must differ from --src")
    try:
        config = export_int8(args.src, args.dst)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    diffs = max_logit_diff(args.src, args.dst)
    config["quantization"]["max_abs_logit_diff"] = {k: round(v, 5) for k, v in diffs.items()}
    (args.dst / CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    mb = lambda path: path.stat().st_size / 2**20  # noqa: E731
    print(f"fp32 weights {mb(args.src / WEIGHTS):7.1f} MB  {args.src / WEIGHTS}")
    print(f"int8 weights {mb(args.dst / WEIGHTS):7.1f} MB  {args.dst / WEIGHTS}")
    print(f"parameters: {config['parameters']:,}")
    for name, d in diffs.items():
        print(f"max |logit fp32 - int8| on {len(PROMPTS)} prompts, {name} int8 path: {d:.4f}")


if __name__ == "__main__":
    main()
