"""Fixed-budget training benchmark: which recipe learns most from the same number of tokens.

    python -m bench.train_quality --tokens 150000 --recipe gpt2 --recipe modern
    python -m bench.train_quality --tokens 400000 --recipe modern --recipe modern-adamw --threads 1

Trains the default 36M shape from scratch with model/train.py (pretraining stage, the default
corpus in data/) for exactly --tokens tokens per recipe, then scores held-out chitchat as
model/evaluate.py does (assistant tokens of the first --rows SFT rows): loss, bits per byte, and
the Kneser-Ney trigram fitted on chitchat train on the same tokens. Prints tokens/s and MFU
against a matmul of the model's own sizes timed in this run, in the dtype training computes in
(bf16 where the CPU has bf16 units, else fp32), and each recipe's change against the first.
Tokens, not minutes: the machine is shared, so time-based budgets would not compare. This is a
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.train import matmul_tflops
from model.checkpoint import load_checkpoint
from model.data import load_corpus
from model.device import autocast_dtype, device_name
from model.evaluate import source_scores
from model.train import main as train

GPT2_ARCH = [
    "--norm",
    "layer",
    "--pos",
    "learned",
    "--mlp",
    "gelu",
    "--qk-norm",
    "false",
    "--zero-init",
    "false",
]
RECIPES = {  # model/train.py flags on top of its defaults (RMSNorm, RoPE, QK-norm, ReLU², zero init, Muon, WSD)
    "gpt2": GPT2_ARCH + ["--optimizer", "adamw", "--schedule", "cosine", "--lr", "6e-4"],
    "modern": [],
    "modern-adamw": ["--optimizer", "adamw", "--lr", "3e-3"],
    "modern-gpt2-arch": GPT2_ARCH,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="recipe to train (repeatable)")
    p.add_argument("--tokens", type=int, default=150_000, help="training tokens per recipe")
    p.add_argument("--batch-size", type=int, default=8, help="sequences of 384 tokens per step")
    p.add_argument("--warmup-steps", type=int, default=10, help="linear warmup steps")
    p.add_argument("--rows", type=int, default=64, help="held-out chitchat rows scored")
    p.add_argument("--data", type=Path, default=Path("data"), help="corpus folder (make corpus)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = p.parse_args()
    recipes = args.recipe or ["gpt2", "modern"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    dtype = autocast_dtype(device, "auto")
    train_items, val_items = (
        load_corpus(args.data, "train")["chitchat"],
        load_corpus(args.data, "val")["chitchat"],
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in recipes:
            out = Path(tmp) / name
            common = ["--stage", "pretrain", "--out", str(out), "--data", str(args.data), "--max-tokens",
                      str(args.tokens), "--batch-size", str(args.batch_size), "--warmup-steps",
                      str(args.warmup_steps), "--eval-every", "0", "--save-every", "0", "--eval-batches", "1"]  # fmt: skip
            t0 = time.perf_counter()
            train(common + RECIPES[name])
            seconds = time.perf_counter() - t0
            model, tok, meta = load_checkpoint(out)
            tokens = meta["training"]["pretrain"]["tokens"]
            rate = tokens / meta["training"]["pretrain"]["minutes"] / 60
            scores = source_scores(model, tok, val_items, train_items if not results else None, args.rows)
            peak = matmul_tflops(args.batch_size * model.config.block_size, model.config.n_embd, dtype)
            mfu = model.flops_per_token() * rate / 1e12 / peak
            results.append((name, tokens, scores, rate, mfu, peak, seconds))

    print(
        f"\ndevice: {device_name(device)}, {torch.get_num_threads()} threads, compute dtype {dtype or 'fp32'}"
    )
    base = results[0][2]
    print(f"Kneser-Ney trigram on the same tokens: loss {base['trigram']['loss']:.4f}, "
          f"{base['trigram']['bits_per_byte']:.4f} bits/byte; bigram {base['bigram']['loss']:.4f}")  # fmt: skip
    print("| recipe | tokens | chitchat val loss | Δ vs first | bits/byte | tokens/s | MFU (vs matmul) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, tokens, scores, rate, mfu, peak, _ in results:
        loss, delta = scores["gpt"]["loss"], scores["gpt"]["loss"] - base["gpt"]["loss"]
        print(f"| {name} | {tokens:,} | {loss:.4f} | {delta:+.4f} | {scores['gpt']['bits_per_byte']:.4f} | "
              f"{rate:,.0f} | {mfu:.0%} of {peak:.3f} TFLOP/s |")  # fmt: skip


if __name__ == "__main__":
    main()
