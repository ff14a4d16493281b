"""Train the GPT: pretraining on a packed token stream, then SFT on conversations.

    python -m model.train --stage pretrain --out runs/pretrain --max-tokens 20000000
    python -m model.train --stage sft --init-from runs/pretrain --out runs/sft --max-tokens 4000000
    python -m model.train --stage pretrain --init-from model/checkpoints/default --out runs/more ...
    torchrun --standalone --nproc_per_node 8 -m model.train --stage pretrain --out runs/pretrain ...

Muon on the hidden matrices and AdamW on the rest (--optimizer adamw for AdamW everywhere), with
a warmup-stable-decay schedule (--schedule cosine for GPT-2's): the peak rate holds until the last
--decay-frac of the run, then falls linearly to --min-lr-frac of it. The run ends on whichever
budget ends first (--max-steps, --max-tokens, --max-minutes), and the schedule follows it, so a
timed run still ends decayed. Pretraining reads random windows of dialogue (every speaker carries
loss) and at most --prose-share of prose; SFT packs conversations, loss on the assistant's turns.
bf16 autocast on CUDA and on CPUs with bf16 instructions. --init-from takes an fp32 or the shipped
int8 checkpoint (dequantized), so a run can warm-start from the committed default. Writes an fp32
checkpoint folder plus train_state.pt (optimizer, step, clock) for --resume; `python -m
model.export` makes the shipped int8 form. SFT with --unlikelihood also answers training prompts
greedily each step (or every --unlikelihood-every steps) and pushes down the tokens of their loops
(model/unlikelihood.py). SFT with --keep SOURCE learns that source's rows from the starting checkpoint's
predictions instead of their tokens, so the rest of the mix moves the model without moving them
(model/keep.py). --everyday N=TIMES repeats the generated questions about the human dialogue's N most
frequent words (model/everyday_words.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model import everyday_words
from model.checkpoint import (
    CheckpointError,
    describe,
    licence_notes,
    load_checkpoint,
    load_fp32,
    save_checkpoint,
)
from model.data import (
    MicroBatch,
    cap_prose,
    holdout,
    load_corpus,
    micro_batch,
    pack_stream,
    read_conversations,
    row_batch,
    sft_rows,
    stream_batch,
)
from model.device import allocator_hint, autocast_dtype, device_name
from model.gpt import GPT, GPTConfig
from model.keep import combined_loss, kept_rows, soft_loss_sum
from model.optim import Optimizers, lr_factor
from model.tokenizer import Tokenizer
from model.unlikelihood import answer_prompts, unlikelihood_loss

STATE = "train_state.pt"


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
        if name in train:  # the source's name is its file's: a second would have replaced the first
            raise SystemExit(f"--conversations: two sources named {name}: rename one of the files")
        try:
            conversations = read_conversations(path)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise SystemExit(f"--conversations {path}: {e}") from None
        train[name], val[name] = holdout(conversations, f"{args.seed}:{name}")
        info.setdefault("files", {})[name] = {"conversations": len(train[name]) + len(val[name])}
    if args.stage == "sft":  # only conversations; prose stays in pretraining
        train = {k: v for k, v in train.items() if v and not isinstance(v[0], str)}
        val = {k: v for k, v in val.items() if v and not isinstance(v[0], str)}
    if args.everyday:
        try:
            train, added = everyday_words.repeat(train, args.everyday)
        except ValueError as e:
            raise SystemExit(f"--everyday: {e}") from None
        info["everyday"] = {"spec": args.everyday, "rows_added": added}
    for spec in args.upsample:
        name, _, times = spec.partition("=")
        if name not in train or not times.isdigit():
            raise SystemExit(
                f"--upsample {spec}: give SOURCE=N with a source of this run ({', '.join(train)})"
            )
        train[name] = train[name] * int(times)
    if args.stage == "pretrain" and args.prose_share < 1:
        train = cap_prose(train, args.prose_share, args.seed)
    if not train:
        raise SystemExit("no training data: build the corpus (make corpus) or pass --conversations")
    info["sources"] = {k: len(v) for k, v in train.items()}
    return train, val, info


def build_model(args: argparse.Namespace, tok: Tokenizer) -> tuple[GPT, dict[str, Any]]:
    """A fresh GPT, or the one in --init-from (fp32, or int8 dequantized); and its config.json."""
    if args.init_from:
        model, _, meta = load_fp32(args.init_from)
        if model.config.vocab_size != tok.vocab_size:
            raise SystemExit("--init-from: the checkpoint's vocabulary differs from --tokenizer's")
        return model.requires_grad_(True), meta
    overrides = {
        f.name: getattr(args, f.name) for f in fields(GPTConfig) if getattr(args, f.name, None) is not None
    }
    return GPT(GPTConfig(**{**overrides, "vocab_size": tok.vocab_size})), {}


@dataclass(kw_only=True)
class Progress:
    """What a run has done so far: saved in train_state.pt and config.json, restored by --resume."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    train_loss: float = 0.0
    val_loss: float = 0.0
    repeats: float = 0.0  # --unlikelihood: the smoothed share of greedy answer tokens in a repeated 4-gram
    history: dict[str, Any] = field(default_factory=dict)  # config.json of the checkpoint started from


def record(
    args: argparse.Namespace, run: Progress, device: torch.device, world: int, dtype, final: bool
) -> dict:
    """This stage's entry in config.json's training history."""
    return {
        "stage": args.stage,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "steps": run.step,
        "tokens": run.tokens,
        "minutes": round(run.elapsed / 60, 2),
        "device": device_name(device),
        "processes": world,
        "threads": torch.get_num_threads(),
        "autocast": str(dtype) if dtype else "fp32",
        "recipe": f"{args.optimizer} + {args.schedule}",
        "warm_start": str(args.init_from) if args.init_from else None,
        "train_loss": round(run.train_loss, 4) if run.train_loss else None,
        "val_loss": round(run.val_loss, 4) if run.val_loss and not math.isnan(run.val_loss) else None,
        "finished": final,
    }


def save(
    out: Path, model: GPT, tok: Tokenizer, opt: Optimizers, run: Progress, meta: dict, stage: dict
) -> None:
    training = dict(run.history.get("training", {}))
    if stage["stage"] in training:  # a warm start from a trained model: its whole record stays, nested
        training = {"earlier": training}
    training[stage["stage"]] = stage
    save_checkpoint(out, model, tok, {**meta, "training": training})
    state = {"optimizer": opt.state_dict(), "step": run.step, "tokens": run.tokens, "elapsed": run.elapsed}
    torch.save({**state, "history": run.history}, out / STATE)


def setup(args: argparse.Namespace) -> tuple[bool, int, int, torch.device]:
    """(ddp, rank, world size, device): one process, or one of torchrun's (NCCL on GPUs, gloo on CPUs)."""
    ddp = "RANK" in os.environ
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = torch.device("cpu")
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    return ddp, rank, world, device


def start(args: argparse.Namespace, out: Path) -> tuple[GPT, Tokenizer, Progress, dict | None]:
    """The model, tokenizer and progress this run starts from: --resume's, or a fresh/--init-from
    model; and the saved train state when resuming (the record keeps the first part's --init-from)."""
    tok_path = Path(args.init_from) / "tokenizer.json" if args.init_from else Path(args.tokenizer)
    if args.resume and (out / "tokenizer.json").is_file():
        tok_path = out / "tokenizer.json"
    tok = Tokenizer.from_file(tok_path)
    if not args.resume:
        model, history = build_model(args, tok)
        return model, tok, Progress(history=history), None
    try:
        model, _, meta = load_checkpoint(out)
    except CheckpointError as e:
        raise SystemExit(f"--resume: {e}") from None
    args.init_from = args.init_from or meta.get("training", {}).get(args.stage, {}).get("warm_start")
    saved = torch.load(out / STATE, map_location="cpu", weights_only=False)
    run = Progress(
        step=saved["step"], tokens=saved["tokens"], elapsed=saved["elapsed"], history=saved.get("history", {})
    )
    return model.requires_grad_(True), tok, run, saved


def tensors(
    args: argparse.Namespace, tok: Tokenizer, T: int
) -> tuple[tuple, tuple, dict[str, Any], dict, torch.Tensor | None]:
    """((train ids, mask), (val ids, mask), data info, the prompts of --unlikelihood, the flags of the
    train rows of --keep sources or None): a packed stream for pretraining, rows of whole conversations
    for SFT (the kept sources' conversations packed into rows of their own)."""
    train, val, info = load_data(args)
    if args.stage == "pretrain":
        return (
            pack_stream(tok, [x for v in train.values() for x in v]),
            pack_stream(tok, [x for v in val.values() for x in v]),
            info,
            {},
            None,
        )
    if missing := sorted(set(args.keep) - set(train)):
        raise SystemExit(f"--keep: no source {', '.join(missing)} in the training data ({', '.join(train)})")
    prompts = answer_prompts(tok, train, T) if args.unlikelihood else {}
    val_rows = sft_rows(tok, [c for v in val.values() for c in v], T)
    if len(val_rows[0]) == 0:
        print(  # 5% of each file is held out, but never a file's one conversation
            "warning: no conversation is held out for validation (each file holds one): the val loss is "
            "not measured; give two or more conversations to measure it",
            file=sys.stderr,
        )
    groups = [
        [c for name, items in train.items() if (name in args.keep) == kept for c in items]
        for kept in (False, True)
    ]
    for convs in groups:
        random.Random(args.seed).shuffle(convs)
    if not args.keep:
        return sft_rows(tok, groups[0], T), val_rows, info, prompts, None
    (rest_ids, rest_mask), (kept_ids, kept_mask) = (sft_rows(tok, convs, T) for convs in groups)
    train_rows = torch.cat([rest_ids, kept_ids]), torch.cat([rest_mask, kept_mask])
    return train_rows, val_rows, info, prompts, kept_rows(len(rest_ids), len(kept_ids))


def loss_text(loss: float) -> str:
    """A validation loss as the run prints it; NaN (nothing held out) said in words."""
    return "not measured (nothing held out)" if math.isnan(loss) else f"{loss:.4f}"


@torch.no_grad()
def val_loss(model: GPT, stage: str, data: tuple, batch_size: int, batches: int, device, autocast) -> float:
    """Mean loss over the same held-out windows (pretraining) or rows (SFT) every time; NaN when
    nothing is held out (a file of one conversation)."""
    ids, mask = data
    if len(ids) == 0 or (stage == "pretrain" and len(ids) <= model.config.block_size):
        return math.nan
    model.eval()
    vgen = torch.Generator().manual_seed(0)
    losses = []
    for b in range(batches):
        if stage == "pretrain":
            x, y, _ = stream_batch(ids, mask, batch_size, model.config.block_size, vgen)
            m = None
        else:
            x, y, m = row_batch(ids, mask, torch.arange(b * batch_size, (b + 1) * batch_size) % len(ids))
        with autocast:
            _, loss = model(x.to(device), y.to(device), None if m is None else m.to(device))
        losses.append(loss.item())
    model.train()
    return sum(losses) / len(losses)


def writable_folder(out: Path) -> None:
    """SystemExit now, before any training, when `out` cannot hold the checkpoint (it used to be found
    only at the first save: a whole run lost to a typo)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"--out {out}: cannot write the checkpoint there ({e.strerror or e})") from None


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A Ctrl-C inside the block takes effect at its end (KeyboardInterrupt there), so the optimizers'
    update is never cut halfway (some weights stepped, others not) and the step counter always matches
    the weights a checkpoint saves. Outside the main thread (where no signal arrives) it does nothing."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
        signal.SIG_IGN,
        None,
    ):  # no signal arrives here, or Ctrl-C is ignored (a job started in the background): leave it so
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ddp, rank, world, device = setup(args)
    out = Path(args.out)
    if rank == 0:
        writable_folder(out)
    if args.resume and not (out / STATE).is_file():
        raise SystemExit(f"--resume: {out} holds no {STATE} (no run to continue there)")
    if not args.resume and not args.force and (out / "model.safetensors").is_file():
        raise SystemExit(
            f"--out {out} holds a checkpoint already: --resume to continue its run, --force to replace it, "
            "or another folder"
        )
    if rank == 0 and (hint := allocator_hint(device)):
        print(hint)
    model, tok, run, saved = start(args, out)
    if args.dropout is not None:
        model.set_dropout(args.dropout)
    model.to(device).train()
    T = model.config.block_size
    (train_ids, train_mask), val_data, data_info, prompts, kept = tensors(args, tok, T)
    if rank == 0:
        print(f"{args.stage}: {len(train_ids):,} train rows/tokens from {data_info['sources']}")
        if kept is not None:
            print(f"--keep {', '.join(args.keep)}: {int(kept.sum()):,} rows learn from {args.keep_from}")
    teacher: Any = None
    if kept is not None:  # frozen: the predictions the kept rows learn
        teacher = load_fp32(args.keep_from)[0].to(device).eval().requires_grad_(False)
        kept = kept.to(device)  # read at each micro-batch's rows, which go to the device with it

    dtype = autocast_dtype(device, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    muon_lr = args.muon_lr if args.optimizer == "muon" else None
    opt = model.configure_optimizer(args.weight_decay, args.lr, (0.9, 0.95), device.type, muon_lr=muon_lr)
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
    net: Any = torch.compile(model) if args.compile else model
    soft: Any = soft_loss_sum
    if args.compile and teacher is not None:  # the kept rows of a micro-batch vary in number: dynamic shapes
        teacher, soft = torch.compile(teacher, dynamic=True), torch.compile(soft_loss_sum, dynamic=True)
    if ddp:
        net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)

    def batch_loss(batch: MicroBatch) -> torch.Tensor:
        """The micro-batch's mean loss: the tokens', and with --keep the teacher's on its kept rows."""
        x, y, m, rows = batch
        if kept is None or m is None or rows is None:
            return net(x, y, m)[1]
        flags = kept[rows]
        logits, hard = net(x, y, m * ~flags[:, None])
        teacher_logits = None
        if flags.any():
            with torch.no_grad():
                teacher_logits = teacher(x[flags], all_logits=True)[0]
        return combined_loss(logits, hard, m, flags, teacher_logits, args.keep_weight, soft)

    def evaluate() -> float:
        return val_loss(model, args.stage, val_data, args.batch_size, args.eval_batches, device, autocast)

    data = {**run.history.get("data", {}), args.stage: data_info}
    meta = {"name": args.name, "description": describe(model, data), "license": licence_notes(data)}
    meta["data"] = data

    def checkpoint(final: bool) -> None:
        if rank == 0:
            save(out, model, tok, opt, run, meta, record(args, run, device, world, dtype, final))

    max_seconds = args.max_minutes * 60 if args.max_minutes else math.inf
    tokens_per_step = args.batch_size * T * args.grad_accum * world
    planned = [n for n in (args.max_steps, math.ceil(args.max_tokens / tokens_per_step)) if n]
    bar = tqdm(
        total=min(planned, default=None), initial=run.step, disable=rank != 0, unit="step", dynamic_ncols=True
    )
    t0, tokens_at_t0, elapsed_at_t0 = time.time(), run.tokens, run.elapsed

    try:  # Ctrl-C anywhere in the steps: what the run learnt so far is kept (below)
        while True:
            run.elapsed = elapsed_at_t0 + time.time() - t0
            progress = max(
                run.step / args.max_steps if args.max_steps else 0.0,
                run.tokens / args.max_tokens if args.max_tokens else 0.0,
                run.elapsed / max_seconds,
            )
            stop = torch.tensor(float(progress >= 1.0), device=device)
            if ddp:
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)  # every rank stops at the same step
            if stop.item():
                break
            factor = lr_factor(
                run.step, progress, args.schedule, args.warmup_steps, args.decay_frac, args.min_lr_frac
            )
            opt.set_lr_factor(factor)
            loss_sum = 0.0
            # greedy answers to training prompts; the tokens of their loops pushed down. They are decoded one
            # token at a time, which bounds a GPU's step: --unlikelihood-every spaces them out
            if prompts and run.step % args.unlikelihood_every == 0:
                with net.no_sync() if ddp else nullcontext(), autocast:
                    key = f"{args.seed}:{run.step}:{rank}"
                    ul, share = unlikelihood_loss(model, net, prompts, args.unlikelihood_prompts, key, tok)
                if ul.requires_grad:
                    (args.unlikelihood * ul).backward()
                run.repeats = share if not run.repeats else 0.95 * run.repeats + 0.05 * share
            for micro in range(args.grad_accum):
                i = run.step * args.grad_accum + micro
                batch = micro_batch(
                    args.stage, train_ids, train_mask, (args.batch_size, T), i, rank, world, args.seed
                )
                sync = nullcontext() if not ddp or micro == args.grad_accum - 1 else net.no_sync()
                with sync, autocast:
                    loss = batch_loss(batch.to(device)) / args.grad_accum
                loss.backward()
                loss_sum += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            with interrupts_deferred():  # the update and its count move together, or neither does
                opt.step()
                opt.zero_grad(set_to_none=True)
                run.step += 1
                run.tokens += tokens_per_step
                run.train_loss = loss_sum if not run.train_loss else 0.95 * run.train_loss + 0.05 * loss_sum
            if args.eval_every and run.step % args.eval_every == 0:
                run.val_loss = evaluate()
                if rank == 0:
                    tqdm.write(
                        f"step {run.step}: {run.tokens:,} tokens, train loss {run.train_loss:.4f}, "
                        f"val loss {loss_text(run.val_loss)}"
                    )
            if args.save_every and run.step % args.save_every == 0:
                checkpoint(final=False)
            rate = (run.tokens - tokens_at_t0) / max(time.time() - t0, 1e-9)
            shown = {"loss": f"{run.train_loss:.3f}", "tok_s": f"{rate:,.0f}", "lr": f"{factor:.2f}x"}
            bar.set_postfix(shown | ({"repeats": f"{run.repeats:.1%}"} if prompts else {}), refresh=False)
            bar.update(1)
    except KeyboardInterrupt:  # Ctrl-C: what the run learnt so far is kept, and it can go on
        bar.close()
        run.elapsed = elapsed_at_t0 + time.time() - t0
        checkpoint(final=False)
        if rank == 0:
            print(
                f"\ninterrupted at step {run.step} ({run.tokens:,} tokens): saved to {out}; "
                f"continue with the same command and --resume",
                file=sys.stderr,
            )
        raise SystemExit(130) from None
    bar.close()
    run.val_loss = evaluate()
    checkpoint(final=True)
    if rank == 0:
        print(
            f"{args.stage} done: {run.step} steps, {run.tokens:,} tokens, {run.elapsed / 60:.1f} min, "
            f"val loss {loss_text(run.val_loss)}\nwrote {out}"
        )
    if ddp:
        # leave together: rank 0 may still be writing the checkpoint when the others get here, and a
        # rank that tore its group down under a peer still using it once aborted at exit (SIGABRT)
        dist.barrier()
        dist.destroy_process_group()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--stage", choices=["pretrain", "sft"], required=True,
      help="pretrain: packed stream, loss everywhere; sft: conversations, loss on assistant tokens")  # fmt: skip
    a("--out", required=True, help="checkpoint folder to write (fp32 + train_state.pt)")
    a("--force", action="store_true", help="replace the checkpoint already in --out (else refused)")
    a("--data", default="data", help="default corpus folder (python -m model.corpus)")
    a("--no-corpus", action="store_true", help="train only on --conversations, not the default corpus")
    a("--conversations", action="append", default=[],
      help="extra conversations: .jsonl, TinyChat .txt or .tar.gz (repeatable)")  # fmt: skip
    a("--upsample", action="append", default=[], help="SOURCE=N: a source N times in the mix (repeatable)")
    a("--everyday", metavar="N=TIMES",
      help="rows about the N most frequent words of the human dialogue TIMES times in their source (model/everyday_words.py)")  # fmt: skip
    a("--prose-share", type=float, default=0.1, help="pretraining: prose at most this share of the text")
    a("--tokenizer", default="data/tokenizer.json", help="a fresh model's tokenizer (model.tok_train)")
    a("--init-from", help="start from this checkpoint, fp32 or int8 (SFT from pretraining; a warm start)")
    a("--resume", action="store_true", help="continue the run in --out (weights, optimizer, step, clock)")
    _bool = lambda text: text.lower() in ("1", "true", "yes")  # noqa: E731
    for f in fields(GPTConfig):  # the architecture of a fresh model (see model/gpt.py)
        kind: dict[str, Callable[[str], Any]] = {"n_layer": int, "n_head": int, "n_embd": int}
        kind |= {"block_size": int, "norm": str, "pos": str, "mlp": str, "qk_norm": _bool, "zero_init": _bool}
        if f.name in kind:
            a(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind[f.name], help=f"default {f.default}")
    a("--dropout", type=float, help="train with this dropout (also a warm start)")
    a("--keep", action="append", default=[], metavar="SOURCE",
      help="SFT: this source's rows learn the --keep-from checkpoint's predictions, not their tokens (repeatable)")  # fmt: skip
    a("--keep-from", help="the checkpoint whose predictions --keep rows learn (default: --init-from)")
    a("--keep-weight", type=float, default=1.0, help="each kept token's loss counts this many times")
    a("--unlikelihood", type=float, default=0.0, help="SFT: weight of the loss on greedy answers' loops")
    a("--unlikelihood-prompts", type=int, default=8, help="SFT: training prompts answered per step for it")
    a(
        "--unlikelihood-every",
        type=int,
        default=1,
        help="SFT: answer them every N steps (each time weighted W)",
    )
    a("--batch-size", type=int, default=16, help="sequences per micro-batch per process")
    a("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    a(
        "--optimizer",
        choices=["muon", "adamw"],
        default="muon",
        help="muon: on hidden matrices, AdamW on the rest",
    )
    a("--lr", type=float, default=3e-3, help="peak AdamW learning rate (embeddings, head, gains)")
    a("--muon-lr", type=float, default=0.02, help="peak Muon learning rate (hidden matrices)")
    a("--schedule", choices=["wsd", "cosine"], default="wsd", help="warmup-stable-decay or cosine")
    a("--decay-frac", type=float, default=0.3, help="wsd: the last fraction of the run that decays")
    a("--min-lr-frac", type=float, default=0.1, help="the rate at the end, as a fraction of the peak")
    a("--warmup-steps", type=int, default=100, help="linear warmup steps")
    a("--weight-decay", type=float, default=0.1, help="weight decay on matrices")
    a("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this")
    a("--max-steps", type=int, default=0, help="optimizer steps (0: no step limit)")
    a("--max-tokens", type=int, default=0, help="training tokens, all processes together (0: no limit)")
    a("--max-minutes", type=float, default=0, help="wall-clock budget, then save and stop (0: none)")
    a("--eval-every", type=int, default=200, help="validation loss every N steps (0: only at the end)")
    a("--eval-batches", type=int, default=20, help="batches per validation")
    a("--save-every", type=int, default=200, help="write the checkpoint every N steps (0: only at the end)")
    a("--dtype", choices=["auto", "bf16", "fp32"], default="auto", help="autocast: auto = bf16 where it pays")
    a("--compile", action="store_true", help="torch.compile the model")
    a("--device", choices=["auto", "cuda", "cpu"], default="auto", help="where to train")
    a("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a("--name", default="slm", help="model name shown on the model card")
    a("--seed", type=int, default=1234, help="seed of the init, batches and user-file split")
    args = p.parse_args(argv)
    for flag in (
        "max_steps",
        "max_tokens",
        "max_minutes",
        "eval_every",
        "save_every",
        "warmup_steps",
        "threads",
    ):
        if getattr(args, flag) < 0:  # a negative budget never ran out: the run went on for ever
            p.error(f"--{flag.replace('_', '-')} must be 0 or more")
    for flag in ("batch_size", "grad_accum", "eval_batches"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be 1 or more")
    if not (args.max_steps or args.max_tokens or args.max_minutes):
        p.error("give --max-steps, --max-tokens and/or --max-minutes")
    if args.unlikelihood_every < 1:
        p.error("--unlikelihood-every must be 1 or more")
    if args.keep:
        if args.stage != "sft":
            p.error("--keep is for --stage sft")
        args.keep_from = args.keep_from or args.init_from
        if not args.keep_from:
            p.error("--keep needs --keep-from or --init-from: the checkpoint whose predictions it keeps")
    if args.everyday:
        try:
            everyday_words.parse(args.everyday)
        except ValueError as e:
            p.error(f"--everyday: {e}")
    if args.unlikelihood and args.stage != "sft":
        p.error("--unlikelihood is for --stage sft (it answers prompts as the assistant)")
    return args


if __name__ == "__main__":
    main()
