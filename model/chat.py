"""Chat with a checkpoint in the terminal.

    python -m model.chat                              # the default checkpoint (make chat)
    python -m model.chat --checkpoint runs/chat --temperature 0.5 --seed 1

Type a message and press Enter; the answer streams as it is generated. /reset starts a new
conversation, /quit (or Ctrl-D) leaves. When the conversation outgrows the context window, the
oldest whole turns are dropped (and you are told).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from model.engine import Engine, SamplingParams, TextStreamer, cpu_budget
from model.loops import NGRAM_WORDS, WordTable
from model.tokenizer import ANSWER_RESERVE, Tokenizer, fit_prompt


def as_text(line: str) -> str:
    """A line read from the terminal as text the tokenizer takes: bytes that were not UTF-8 (which
    Python's stdin keeps as lone surrogates, and the tokenizer refused with a traceback) become U+FFFD."""
    try:
        return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return line.encode("utf-8", "replace").decode("utf-8")


def chat_loop(
    engine: Engine,
    tok: Tokenizer,
    params: SamplingParams,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = lambda s: print(s, end="", flush=True),
    words: WordTable | None = None,
) -> None:
    """Read messages until /quit or end of input; stream each answer through `write` (params.no_repeat_ngram
    needs the tokenizer's `words`)."""
    history: list[Mapping[str, str]] = []
    while True:
        try:
            line = as_text(read("\nyou> ")).strip()
        except (EOFError, KeyboardInterrupt):  # end of input, or Ctrl-C at the prompt: goodbye
            write("\n")
            return
        if line == "/quit":
            return
        if line == "/reset":
            history = []
            write("(new conversation)\n")
            continue
        if not line:
            continue
        messages: list[Mapping[str, str]] = [*history, {"role": "user", "content": line}]
        try:
            prompt = fit_prompt(tok, messages, engine.block_size, params.max_new_tokens)
        except ValueError as e:
            write(f"(message too long: {e} Not sent.)\n")
            continue
        if prompt.dropped:
            write(
                f"(the {prompt.dropped} oldest messages no longer fit the context window and were dropped)\n"
            )
        write("bot> ")
        streamer, ids = TextStreamer(tok), []
        try:
            for token in engine.generate(prompt.ids, params, words):
                ids.append(token)
                write(streamer.put(token))
            write(streamer.end() + "\n")
        except KeyboardInterrupt:  # Ctrl-C while it answers: the answer stops, as the web app's Stop
            write(streamer.end() + " (stopped)\n")
        history = [*prompt.messages, {"role": "assistant", "content": tok.decode(ids)}]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint folder to load")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest tokens; 0 = off")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass; 1.0 = off")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible answers")
    p.add_argument(
        "--loop-guard",
        type=int,
        default=NGRAM_WORDS,
        help="no sequence of this many words twice in one answer, as the chat function serves; 0 = off",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)"
    )
    args = p.parse_args(argv)
    checks = {
        "--temperature": args.temperature >= 0,
        "--top-k": args.top_k >= 0,
        "--top-p": 0 < args.top_p <= 1,
        "--max-new-tokens": args.max_new_tokens >= 1,
        "--loop-guard": args.loop_guard >= 0,
        "--threads": args.threads is None or args.threads >= 1,
    }
    for flag, ok in checks.items():
        if not ok:
            p.error(f"{flag} is out of range (see --help)")
    torch.set_num_threads(args.threads or cpu_budget())
    try:
        model, tok, meta = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}\nTrain a model (see model/README.md) or pass --checkpoint FOLDER.")
    window = model.config.block_size
    if window <= 2 * ANSWER_RESERVE:  # a small-context checkpoint: half its window for the prompt (the
        args.max_new_tokens = min(args.max_new_tokens, window // 2)  # answer's room left none before)
    params = SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        no_repeat_ngram=args.loop_guard,
    )
    q = "int8" if meta.get("quantization") else "fp32"
    size = meta.get("parameters") or model.num_params()  # int8 layers hold no nn.Parameter
    print(f"SLM {size / 1e6:.1f}M parameters ({q}) from {args.checkpoint}. /reset, /quit")
    read = input if sys.stdin.isatty() else echoed_input  # piped: the transcript shows what was asked
    chat_loop(Engine(model, max_batch=1, eos_id=tok.eos_id), tok, params, read, words=WordTable(tok))


def echoed_input(prompt: str) -> str:
    """input() for piped input, which a terminal does not echo: the line is printed after its prompt."""
    line = input(prompt)
    print(line, flush=True)
    return line


if __name__ == "__main__":
    main()
