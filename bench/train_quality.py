"""Fixed-budget training benchmark: which recipe learns most from the same number of tokens.

    python -m bench.train_quality --tokens 150000 --recipe gpt2 --recipe modern
    python -m bench.train_quality --tokens 400000 --recipe modern --recipe modern-adamw --threads 1
    python -m bench.train_quality --init-from model/checkpoints/default --tokens 500000 --skill-questions 8 \
        --recipe sft-warm --recipe sft-warm-low --recipe pretrain-warm --upsample chitchat=2
    python -m bench.train_quality --init-from model/checkpoints/default --tokens 786432 --also chatterbot \
        --also jokes --recipe sft-warm-low-keep3 --recipe sft-warm-low-keep10

Trains the default 36M shape from scratch with model/train.py (pretraining stage, the default
corpus in data/) for exactly --tokens tokens per recipe, or with --init-from warm-starts each recipe
from that checkpoint (the *-warm recipes, a stage each), then scores held-out chitchat as
model/evaluate.py does (assistant tokens of the first --rows SFT rows): loss, bits per byte, and
the Kneser-Ney trigram fitted on chitchat train on the same tokens; with --skill-questions N also
the exact match of greedy answers to N held-out questions of each kind, on new problems and on
phrasings never trained on (model.evaluate.skill_accuracy); with --also SOURCE (repeatable) that source's
held-out loss on the same number of rows, so a recipe that buys chitchat with another source shows it.
The starting checkpoint is scored too. Prints tokens/s and MFU
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
from typing import Any

import torch

from bench.train import matmul_tflops
from model.checkpoint import export_int8, load_checkpoint, read_config
from model.data import load_corpus
from model.device import autocast_dtype, device_name
from model.engine import Engine
from model.evaluate import skill_accuracy, source_scores
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
KEEP_HUMAN = ["--keep", "chitchat", "--keep", "chatterbot", "--keep", "jokes"]
LOW_RATE = ["--stage", "sft", "--lr", "3e-4", "--muon-lr", "3e-3"]  # run 11's
RECIPES = {  # model/train.py flags on top of its defaults (RMSNorm, RoPE, QK-norm, ReLU², zero init, Muon, WSD)
    "gpt2": GPT2_ARCH + ["--optimizer", "adamw", "--schedule", "cosine", "--lr", "6e-4"],
    "modern": [],
    "modern-adamw": ["--optimizer", "adamw", "--lr", "3e-3"],
    "modern-gpt2-arch": GPT2_ARCH,
    # warm starts (--init-from): fine-tuning at make train's rate and at run 7's, or pretraining again
    "sft-warm": ["--stage", "sft", "--lr", "1e-3", "--muon-lr", "0.01"],
    "sft-warm-low": LOW_RATE,
    "sft-warm-low-dropout": [*LOW_RATE, "--dropout", "0.1"],
    "sft-warm-vlow": ["--stage", "sft", "--lr", "1e-4", "--muon-lr", "1e-3"],
    # the human-dialogue sources kept where the starting checkpoint had them (--keep), at run 11's rate
    # and at run 8's
    "sft-warm-low-keep": [*LOW_RATE, *KEEP_HUMAN],
    "sft-warm-keep": ["--stage", "sft", "--lr", "1e-3", "--muon-lr", "0.01", *KEEP_HUMAN],
    "sft-warm-low-keep3": [*LOW_RATE, *KEEP_HUMAN, "--keep-weight", "3"],
    "sft-warm-low-keep10": [*LOW_RATE, *KEEP_HUMAN, "--keep-weight", "10"],
    # the same, with the questions about the human dialogue's 2,000 most frequent words 6 times (run 17's)
    "sft-warm-low-keep10-everyday": [*LOW_RATE, *KEEP_HUMAN, "--keep-weight", "10", "--everyday", "2000=6"],
    "pretrain-warm": ["--stage", "pretrain", "--lr", "1e-3", "--muon-lr", "0.01", "--prose-share", "0.05"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="recipe to train (repeatable)")
    p.add_argument("--tokens", type=int, default=150_000, help="training tokens per recipe")
    p.add_argument("--batch-size", type=int, default=8, help="sequences of 384 tokens per step")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--warmup-steps", type=int, default=10, help="linear warmup steps")
    p.add_argument("--unlikelihood", type=float, default=0.0, help="SFT: train's --unlikelihood")
    p.add_argument("--compile", action="store_true", help="torch.compile each recipe's model")
    p.add_argument("--rows", type=int, default=64, help="held-out chitchat rows scored")
    p.add_argument("--data", type=Path, default=Path("data"), help="corpus folder (make corpus)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--init-from", type=Path, help="warm-start every recipe from this checkpoint")
    p.add_argument("--upsample", action="append", default=[], help="SOURCE=N for every recipe (repeatable)")
    p.add_argument("--skill-questions", type=int, default=0, help="held-out questions per kind and set")
    p.add_argument(
        "--also",
        action="append",
        default=[],
        help="another source whose held-out loss is scored (repeatable)",
    )
    args = p.parse_args()
    recipes = args.recipe or ["gpt2", "modern"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    dtype = autocast_dtype(device, "auto")
    train_items, val = load_corpus(args.data, "train")["chitchat"], load_corpus(args.data, "val")
    val_items = val["chitchat"]
    if unknown := sorted(set(args.also) - set(val)):
        p.error(f"--also: no held-out rows of {', '.join(unknown)} in {args.data / 'val'}")
    skills = sorted((args.data / "val").glob("*.jsonl")) if args.skill_questions else []

    def score(out: Path, first: bool) -> tuple[dict, dict | None, Any]:
        model, tok, meta = load_checkpoint(out)
        chitchat = source_scores(model, tok, val_items, train_items if first else None, args.rows)
        chitchat["also"] = {name: source_scores(model, tok, val[name], None, args.rows) for name in args.also}
        exact = (
            skill_accuracy(Engine(model, max_batch=1), tok, skills, args.skill_questions) if skills else None
        )
        return chitchat, exact, (model, meta)

    results = []
    int8 = bool(args.init_from and read_config(args.init_from).get("quantization"))
    if args.init_from:
        chitchat, exact, (model, _) = score(args.init_from, first=True)
        results.append((f"start: {args.init_from.name}", 0, chitchat, exact, 0.0, 0.0, 0.0, 0.0))
    with tempfile.TemporaryDirectory() as tmp:
        for name in recipes:
            out = Path(tmp) / name
            common = ["--stage", "pretrain", "--out", str(out), "--data", str(args.data), "--max-tokens",
                      str(args.tokens), "--batch-size", str(args.batch_size), "--warmup-steps",
                      str(args.warmup_steps), "--eval-every", "0", "--save-every", "0", "--eval-batches", "1"]  # fmt: skip
            common += [f"--upsample={u}" for u in args.upsample] + ["--grad-accum", str(args.grad_accum)]
            common += ["--compile"] if args.compile else []
            stage_name = RECIPES[name][1] if RECIPES[name][:1] == ["--stage"] else "pretrain"
            sft = stage_name == "sft"
            common += ["--unlikelihood", str(args.unlikelihood)] if args.unlikelihood and sft else []
            common += ["--init-from", str(args.init_from)] if args.init_from else []
            t0 = time.perf_counter()
            train(common + RECIPES[name])
            seconds = time.perf_counter() - t0
            # an int8 start is scored as shipped, so each arm is too: the fp32 weights a run writes would
            # flatter it by the quantization's cost (0.06 on chatterbot for the seventh checkpoint)
            scored = out.with_name(f"{name}-int8") if int8 else out
            if int8:
                export_int8(out, scored)
            chitchat, exact, (model, meta) = score(scored, first=not results)
            stage = meta["training"][stage_name]
            # the record's minutes are rounded: a run shorter than that is timed here (loading included)
            tokens, rate = stage["tokens"], stage["tokens"] / (stage["minutes"] * 60 or seconds)
            peak = matmul_tflops(args.batch_size * model.config.block_size, model.config.n_embd, dtype)
            mfu = model.flops_per_token() * rate / 1e12 / peak
            results.append((name, tokens, chitchat, exact, rate, mfu, peak, seconds))

    print(
        f"\ndevice: {device_name(device)}, {torch.get_num_threads()} threads, compute dtype {dtype or 'fp32'}"
    )
    if int8:
        print("every arm scored in int8, as the start is (model.export's form, fbgemm's kernel)")
    base = results[0][2]
    print(f"Kneser-Ney trigram on the same tokens: loss {base['trigram']['loss']:.4f}, "
          f"{base['trigram']['bits_per_byte']:.4f} bits/byte; bigram {base['bigram']['loss']:.4f}")  # fmt: skip
    print("| recipe | tokens | chitchat val loss | Δ vs first | bits/byte | skills: new problems | "
          "new phrasings | tokens/s | MFU (vs matmul) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, tokens, scores, exact, rate, mfu, peak, _ in results:
        loss, delta = scores["gpt"]["loss"], scores["gpt"]["loss"] - base["gpt"]["loss"]
        problems = f"{exact['exact_match']:.1%}" if exact else "-"
        phrasings = f"{exact['held_out_phrasings']['exact_match']:.1%}" if exact else "-"
        print(f"| {name} | {tokens:,} | {loss:.4f} | {delta:+.4f} | {scores['gpt']['bits_per_byte']:.4f} | "
              f"{problems} | {phrasings} | {rate:,.0f} | {mfu:.0%} of {peak:.3f} TFLOP/s |")  # fmt: skip
    for source in args.also:
        first = base["also"][source]["gpt"]["loss"]
        print(f"{source} val loss: " + ", ".join(
            f"{name} {s['also'][source]['gpt']['loss']:.4f} ({s['also'][source]['gpt']['loss'] - first:+.4f})"
            for name, _, s, *_ in results))  # fmt: skip
    for name, *_, exact, _rate, _mfu, _peak, _s in results:
        if exact:
            print(f"{name}: {exact['per_skill']} / phrasings {exact['held_out_phrasings']['per_skill']}")


if __name__ == "__main__":
    main()
