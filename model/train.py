"""Train the GPT: pretraining on a packed token stream, then SFT on conversations.

    python -m model.train --stage pretrain --out runs/pretrain --max-minutes 20
    python -m model.train --stage sft --init-from runs/pretrain --out runs/sft --max-minutes 35
    torchrun --standalone --nproc_per_node 8 -m model.train --stage pretrain --out runs/pretrain

AdamW with linear warmup and a cosine decay to --min-lr; the schedule runs on whichever budget
ends first, --max-steps or --max-minutes, so a timed run still ends at the low learning rate.
bf16 autocast on CUDA and on CPUs with bf16 instructions. Writes an fp32 checkpoint folder
(model.safetensors, config.json, tokenizer.json) plus train_state.pt (optimizer, step, clock)
for --resume; `python -m model.export` makes the shipped int8 form.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.corpus.sources import holdout
from model.data import (
    load_corpus,
    pack_stream,
    read_conversations,
    row_batch,
    sft_rows,
    stream_batch,
)
from model.gpt import GPT, GPTConfig
from model.tokenizer import Tokenizer

STATE = "train_state.pt"


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), where autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() == "arm64"  # Apple silicon
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def autocast_dtype(device: torch.device, choice: str) -> torch.dtype | None:
    if choice == "fp32":
        return None
    if choice == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def lr_at(step: int, progress: float, args: argparse.Namespace) -> float:
    """Linear warmup over --warmup-steps, then cosine from --lr to --min-lr as progress goes 0 -> 1."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def load_data(args: argparse.Namespace) -> tuple[dict[str, list], dict[str, list], dict[str, Any]]:
    """(train, val) {source: items} for this stage, and the data description for config.json."""
    train: dict[str, list] = {}
    val: dict[str, list] = {}
    info: dict[str, Any] = {}
    if not args.no_corpus:
        train, val = load_corpus(args.data, "train"), load_corpus(args.data, "val")
        manifest = Path(args.data) / "manifest.json"
        info["corpus"] = json.loads(manifest.read_text()) if manifest.is_file() else str(args.data)
    for path in args.conversations:
        name = Path(path).name
        train[name], val[name] = holdout(read_conversations(path), f"{args.seed}:{name}")
        info.setdefault("files", {})[name] = {"conversations": len(train[name]) + len(val[name])}
    if args.stage == "sft":  # only conversations; prose stays in pretraining
        train = {k: v for k, v in train.items() if v and not isinstance(v[0], str)}
        val = {k: v for k, v in val.items() if v and not isinstance(v[0], str)}
    for spec in args.upsample:
        name, times = spec.split("=")
        train[name] = train[name] * int(times)
    if not train:
        raise SystemExit("no training data: build the corpus (make corpus) or pass --conversations")
    info["sources"] = {k: len(v) for k, v in train.items()}
    return train, val, info


def describe(model: GPT, data: dict[str, Any]) -> str:
    stages = [f"{stage} on {', '.join(info['sources'])}" for stage, info in data.items()]
    return (
        f"A {model.num_params() / 1e6:.0f}M-parameter GPT trained from scratch: "
        + "; then ".join(stages)
        + "."
    )


def licence_notes(data: dict[str, Any]) -> dict[str, str]:
    """Each training source's licence (from the corpus manifest; user files: the user's own terms)."""
    notes = {
        "weights": "trained from scratch by model/train.py; the data licences below apply to what it learned"
    }
    for info in data.values():
        for name, source in (
            info.get("corpus", {}).get("sources", {}).items() if isinstance(info.get("corpus"), dict) else []
        ):
            notes[name] = f"{source['licence']} ({source.get('registry', 'generated')}: {source['package']})"
        for name in info.get("files", {}):
            notes[name] = "user-supplied file: its own licence applies"
    return notes


def build_model(args: argparse.Namespace, tok: Tokenizer) -> tuple[GPT, dict[str, Any]]:
    """A fresh GPT, or the one in --init-from; and the config.json it carries (training history)."""
    if args.init_from:
        model, _, meta = load_checkpoint(args.init_from)
        if meta.get("quantization") is not None:
            raise SystemExit(f"--init-from {args.init_from}: needs a full-precision checkpoint, not int8")
        if model.config.vocab_size != tok.vocab_size:
            raise SystemExit("--init-from: the checkpoint's vocabulary differs from --tokenizer's")
        return model.requires_grad_(True), meta
    overrides = {
        f.name: getattr(args, f.name) for f in fields(GPTConfig) if getattr(args, f.name, None) is not None
    }
    return GPT(GPTConfig(**{**overrides, "vocab_size": tok.vocab_size})), {}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ddp = "RANK" in os.environ
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    out = Path(args.out)

    tok_path = Path(args.init_from) / "tokenizer.json" if args.init_from else Path(args.tokenizer)
    if args.resume and (out / "tokenizer.json").is_file():
        tok_path = out / "tokenizer.json"
    tok = Tokenizer.from_file(tok_path)
    if args.resume:
        try:
            model, _, meta = load_checkpoint(out)
        except CheckpointError as e:
            raise SystemExit(f"--resume: {e}") from None
        model.requires_grad_(True)
        history = meta
        state = torch.load(out / STATE, map_location="cpu", weights_only=False)
    else:
        model, history = build_model(args, tok)
        state = None
    model.to(device).train()
    T = model.config.block_size

    train, val, data_info = load_data(args)
    gen = torch.Generator().manual_seed(args.seed + rank)
    if args.stage == "pretrain":
        train_ids, train_mask = pack_stream(tok, [x for items in train.values() for x in items])
        val_ids, val_mask = pack_stream(tok, [x for items in val.values() for x in items])
    else:
        convs = [c for items in train.values() for c in items]
        random.Random(args.seed).shuffle(convs)
        train_ids, train_mask = sft_rows(tok, convs, T)
        val_ids, val_mask = sft_rows(tok, [c for items in val.values() for c in items], T)
    if rank == 0:
        print(f"{args.stage}: {len(train_ids):,} train rows/tokens from {data_info['sources']}")

    dtype = autocast_dtype(device, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    optimizer = model.configure_optimizer(args.weight_decay, args.lr, (0.9, 0.95), device.type)
    order = torch.randperm(len(train_ids), generator=gen)  # SFT: rows in a shuffled order per epoch
    step, tokens, elapsed = 0, 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step, tokens, elapsed = state["step"], state["tokens"], state["elapsed"]
        gen.set_state(state["generator"])
    net: torch.nn.Module = torch.compile(model) if args.compile else model
    if ddp:
        net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)

    def next_batch(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        nonlocal order
        if args.stage == "pretrain":
            x, y, _ = stream_batch(train_ids, train_mask, args.batch_size, T, gen)
            return x.to(device), y.to(device), None
        start = (i * world + rank) * args.batch_size % len(order)
        idx = order[start : start + args.batch_size]
        if len(idx) < args.batch_size:
            order = torch.randperm(len(train_ids), generator=gen)
            idx = order[: args.batch_size]
        x, y, m = row_batch(train_ids, train_mask, idx)
        return x.to(device), y.to(device), m.to(device)

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        vgen = torch.Generator().manual_seed(0)  # the same windows every time
        losses = []
        for b in range(args.eval_batches):
            if args.stage == "pretrain":
                x, y, m = stream_batch(val_ids, val_mask, args.batch_size, T, vgen)
                m = None
            else:
                idx = torch.arange(b * args.batch_size, (b + 1) * args.batch_size) % len(val_ids)
                x, y, m = row_batch(val_ids, val_mask, idx)
            with autocast:
                _, loss = model(x.to(device), y.to(device), None if m is None else m.to(device))
            losses.append(loss.item())
        model.train()
        return sum(losses) / len(losses)

    def save(final: bool) -> None:
        if rank != 0:
            return
        record = {
            "stage": args.stage,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "steps": step,
            "tokens": tokens,
            "minutes": round(elapsed / 60, 2),
            "device": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "processes": world,
            "threads": torch.get_num_threads(),
            "autocast": str(dtype) if dtype else "fp32",
            "train_loss": round(smooth, 4) if smooth else None,
            "val_loss": round(last_val, 4) if last_val else None,
            "finished": final,
        }
        data = {**history.get("data", {}), args.stage: data_info}
        meta = {
            "name": args.name,
            "description": describe(model, data),
            "license": licence_notes(data),
            "training": {**history.get("training", {}), args.stage: record},
            "data": data,
        }
        save_checkpoint(out, model, tok, meta)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "step": step,
                "tokens": tokens,
                "elapsed": elapsed,
                "generator": gen.get_state(),
            },
            out / STATE,
        )

    max_seconds = args.max_minutes * 60 if args.max_minutes else math.inf
    smooth, last_val = 0.0, 0.0
    bar = tqdm(total=args.max_steps, initial=step, disable=rank != 0, unit="step", dynamic_ncols=True)
    t0, tokens_at_t0, elapsed_at_t0 = time.time(), tokens, elapsed
    while True:
        elapsed = elapsed_at_t0 + time.time() - t0
        progress = max(step / args.max_steps if args.max_steps else 0.0, elapsed / max_seconds)
        stop = torch.tensor(float(progress >= 1.0), device=device)
        if ddp:
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        if stop.item():
            break
        lr = lr_at(step, progress, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for micro in range(args.grad_accum):
            x, y, m = next_batch(step * args.grad_accum + micro)
            sync = nullcontext() if not ddp or micro == args.grad_accum - 1 else net.no_sync()  # type: ignore[operator]
            with sync, autocast:
                _, loss = net(x, y, m)
                loss = loss / args.grad_accum
            loss.backward()  # type: ignore[union-attr]
            loss_sum += loss.item()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens += args.batch_size * T * args.grad_accum * world
        smooth = loss_sum if step == 1 or not smooth else 0.95 * smooth + 0.05 * loss_sum
        if args.eval_every and step % args.eval_every == 0:
            last_val = val_loss()
            if rank == 0:
                tqdm.write(f"step {step}: train loss {smooth:.4f}, val loss {last_val:.4f}")
        if args.save_every and step % args.save_every == 0:
            save(final=False)
        rate = (tokens - tokens_at_t0) / max(time.time() - t0, 1e-9)
        bar.set_postfix(loss=f"{smooth:.3f}", tok_s=f"{rate:,.0f}", lr=f"{lr:.2e}", refresh=False)
        bar.update(1)
    bar.close()
    last_val = val_loss()
    save(final=True)
    if rank == 0:
        print(
            f"{args.stage} done: {step} steps, {tokens:,} tokens, {elapsed / 60:.1f} min, val loss {last_val:.4f}"
        )
        print(f"wrote {out}")
    if ddp:
        dist.destroy_process_group()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a(
        "--stage",
        choices=["pretrain", "sft"],
        required=True,
        help="pretrain: packed stream, loss everywhere; sft: conversations, loss on assistant tokens",
    )
    a("--out", required=True, help="checkpoint folder to write (fp32 + train_state.pt)")
    a("--data", default="data", help="default corpus folder (python -m model.corpus)")
    a("--no-corpus", action="store_true", help="train only on --conversations, not the default corpus")
    a(
        "--conversations",
        action="append",
        default=[],
        help="extra conversations: .jsonl, TinyChat .txt or .tar.gz (repeatable)",
    )
    a(
        "--upsample",
        action="append",
        default=[],
        help="SOURCE=N repeats a source N times in the training mix (repeatable)",
    )
    a(
        "--tokenizer",
        default="data/tokenizer.json",
        help="tokenizer for a fresh model (python -m model.tok_train)",
    )
    a("--init-from", help="start from this fp32 checkpoint (SFT from the pretrained model)")
    a("--resume", action="store_true", help="continue the run in --out (weights, optimizer, step, clock)")
    for f in fields(GPTConfig):
        if f.name in ("n_layer", "n_head", "n_embd", "block_size"):
            a(
                f"--{f.name.replace('_', '-')}",
                dest=f.name,
                type=int,
                help=f"model {f.name} for a fresh model (default {f.default})",
            )
    a("--batch-size", type=int, default=8, help="sequences per micro-batch per process")
    a("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    a("--lr", type=float, default=6e-4, help="peak learning rate")
    a("--min-lr", type=float, default=6e-5, help="learning rate at the end of the cosine")
    a("--warmup-steps", type=int, default=100, help="linear warmup steps")
    a("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices")
    a("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this")
    a("--max-steps", type=int, default=0, help="optimizer steps (0: no step limit)")
    a(
        "--max-minutes",
        type=float,
        default=0,
        help="wall-clock budget in minutes, then save and stop (0: none)",
    )
    a("--eval-every", type=int, default=200, help="validation loss every N steps (0: only at the end)")
    a("--eval-batches", type=int, default=20, help="batches per validation")
    a("--save-every", type=int, default=500, help="write the checkpoint every N steps (0: only at the end)")
    a(
        "--dtype",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="autocast: auto uses bf16 where the device supports it",
    )
    a("--compile", action="store_true", help="torch.compile the model")
    a("--device", choices=["auto", "cuda", "cpu"], default="auto", help="where to train")
    a("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a("--name", default="slm", help="model name shown on the model card")
    a("--seed", type=int, default=1234, help="seed of the init, batches and user-file split")
    args = p.parse_args(argv)
    if not args.max_steps and not args.max_minutes:
        p.error("give --max-steps and/or --max-minutes")
    return args


if __name__ == "__main__":
    main()
