"""Decode benchmark: our engines (torch fp32 and int8, ONNX Runtime int8) against HF transformers' GPT-2
and, with --llama-cpp, llama.cpp on the same shape (bench/llamacpp.py).

    python -m bench.decode                       # default checkpoint, 2 threads
    python -m bench.decode --checkpoint runs/x --threads 4 --no-hf
    python -m bench.decode --llama-cpp <llama.cpp source folder with build/bin>   # see bench/llamacpp.py

Every engine runs in its own subprocess, so its peak RSS is its own. Measured per engine: batch-1
greedy decode tok/s (64-token prompt, 256 new tokens), 300-token prefill ms, peak RSS; and for
the int8 engines, the aggregate tok/s of 1/2/4/8/16 streams decoded together. Times are the best of
--repeats runs. The script also measures this machine's memory read bandwidth with as many threads
(a read-only pass over 1 GiB) and prints each engine's batch-1 share of the limit it sets: the
bandwidth over the bytes of weights one token reads. Without a checkpoint a randomly initialised
model of the real shape is used (decode speed does not depend on the weights); the output says
which. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from model.runtime import cpu_name

BATCHES = (1, 2, 4, 8, 16)


def best_of(repeats: int, fn) -> float:
    """Smallest wall time of `repeats` calls of fn (other processes only ever slow a run down)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_engine(args: argparse.Namespace) -> dict:
    """Our engine on --dir: torch's (fp32 or int8) or, for --worker onnx, ONNX Runtime's (no torch)."""
    import numpy as np

    from model.config import read_config
    from model.sampling import SamplingParams

    rng = np.random.default_rng(0)
    vocab = read_config(args.dir)["model"]["vocab_size"]
    if args.worker.startswith("onnx"):
        from model.ort_engine import OrtEngine

        matmul = {"onnx": "auto", "onnx-nbits": "nbits", "onnx-dq": "dq"}[args.worker]

        def make(batch: int):  # "auto" reads the pass size main() had measured (see measure_kernels)
            return OrtEngine.from_checkpoint(
                args.dir, max_batch=batch, threads=args.threads, eos_id=-1, matmul=matmul
            )
    else:
        import torch

        from model.checkpoint import load_checkpoint
        from model.engine import Engine

        torch.set_num_threads(args.threads)
        model, _, _ = load_checkpoint(args.dir)

        def make(batch: int):
            return Engine(model, max_batch=batch, eos_id=-1)

    prompt = rng.integers(4, vocab, args.prompt_tokens).tolist()
    long_prompt = rng.integers(4, vocab, args.prefill_tokens).tolist()
    engine = make(1)  # no eos: every run makes exactly new_tokens
    params = SamplingParams(temperature=0.0, max_new_tokens=args.new_tokens)
    list(engine.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=16)))  # warm up
    decode_s = best_of(args.repeats, lambda: list(engine.generate(prompt, params)))
    prefill_s = best_of(args.repeats * 3, lambda: engine.prefill(0, long_prompt))
    result = {
        "decode_tok_s": args.new_tokens / decode_s,
        "prefill_ms": prefill_s * 1000,
        "rss_mb": peak_rss_mb(),
        "small_pass": getattr(engine, "small_pass", None),
    }
    if args.batched:
        del engine
        engine = make(max(BATCHES))
        steps = args.new_tokens // 4
        result["batched_tok_s"] = {}
        for b in BATCHES:
            slots = list(range(b))

            def run(slots=slots):
                last = [int(engine.prefill(s, prompt).argmax()) for s in slots]
                t0 = time.perf_counter()
                for _ in range(steps):
                    last = engine.decode(slots, last).argmax(-1).tolist()
                return time.perf_counter() - t0

            run()
            result["batched_tok_s"][b] = b * steps / min(run() for _ in range(args.repeats))
    return result


def worker_hf(args: argparse.Namespace) -> dict:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    from model.checkpoint import read_config

    cfg = read_config(args.dir)["model"]
    torch.manual_seed(0)
    hf_cfg = GPT2Config(
        vocab_size=cfg["vocab_size"],
        n_positions=cfg["block_size"],
        n_embd=cfg["n_embd"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        tie_word_embeddings=False,
    )
    model = GPT2LMHeadModel(hf_cfg).eval()
    prompt = torch.randint(4, cfg["vocab_size"], (1, args.prompt_tokens))
    long_prompt = torch.randint(4, cfg["vocab_size"], (1, args.prefill_tokens))
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)

    def generate(n: int) -> None:
        with torch.inference_mode():
            out = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, **gen)
        assert out.shape[1] == args.prompt_tokens + n

    def prefill() -> None:  # what generate's first step does: last-position logits only
        with torch.inference_mode():
            model(long_prompt, use_cache=True, logits_to_keep=1)

    generate(16)
    decode_s = best_of(args.repeats, lambda: generate(args.new_tokens))
    prefill_s = best_of(args.repeats * 3, prefill)
    return {
        "decode_tok_s": args.new_tokens / decode_s,
        "prefill_ms": prefill_s * 1000,
        "rss_mb": peak_rss_mb(),
    }


def prepare(checkpoint: Path, root: Path) -> tuple[Path, Path, str]:
    """fp32 and int8 checkpoint folders of the model to measure, and a line saying what it is."""
    import torch

    from model.checkpoint import dequantized, export_int8, load_checkpoint, read_config, save_checkpoint
    from model.gpt import GPT, GPTConfig
    from model.tokenizer import Tokenizer

    fp32_dir, int8_dir = root / "fp32", root / "int8"
    if (checkpoint / "config.json").is_file():
        meta = read_config(checkpoint)
        if meta.get("quantization") is None:
            export_int8(checkpoint, int8_dir)
            return checkpoint, int8_dir, f"checkpoint {checkpoint} (fp32; int8 exported for this run)"
        model, tok, _ = load_checkpoint(checkpoint, fast_int8=False)  # fp32 twin with the int8 values
        save_checkpoint(fp32_dir, dequantized(model), tok, {})
        return fp32_dir, checkpoint, f"checkpoint {checkpoint} (int8; fp32 = its dequantized weights)"
    import random

    rng = random.Random(0)  # a tokenizer of the real size, from made-up words (only its size matters)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
    word = lambda: "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))  # noqa: E731
    tok = Tokenizer.train([" ".join(word() for _ in range(12)) for _ in range(4000)], show_progress=False)
    torch.manual_seed(0)
    save_checkpoint(fp32_dir, GPT(GPTConfig()), tok, {})
    export_int8(fp32_dir, int8_dir)
    return (
        fp32_dir,
        int8_dir,
        f"no checkpoint at {checkpoint}: a randomly initialised model of the real shape",
    )


def read_bandwidth(threads: int, size: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second that `threads` threads read from memory (a max over 1 GiB of uint8, split
    between them; numpy releases the GIL in the reduction): the best of `repeats` passes."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    data = np.ones(size, np.uint8)  # written: every page is there
    parts = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        return size / best_of(repeats, lambda: list(pool.map(np.max, parts)))


def bytes_per_token(int8_dir: Path) -> int:
    """The weight bytes one decode step reads in our int8 checkpoint: every int8 matrix and its row scales
    except the embedding table, of which a step reads one row."""
    from safetensors import safe_open

    from model.config import WEIGHTS

    total = 0
    with safe_open(str(int8_dir / WEIGHTS), "np") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            if not name.startswith("transformer.wte."):
                tensor = f.get_slice(name)
                total += int(np.prod(tensor.get_shape())) * (1 if tensor.get_dtype() in ("I8", "U8") else 2)
    return total


def measure_kernels(int8_dir: Path) -> None:
    """Build the checkpoint's graphs and measure which passes are small on this CPU, as a server's first
    start does, in a process of its own: the served worker then reads the kept size, and its peak RSS is
    its engine's alone."""
    build = [sys.executable, "-m", "model.ort_engine", "--build", str(int8_dir)]
    subprocess.run(build, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)


def run_worker(kind: str, dir: Path, args: argparse.Namespace, batched: bool = False) -> dict:
    cmd = [sys.executable, "-m", "bench.decode", "--worker", kind, "--dir", str(dir)]
    cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    cmd += ["--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens)]
    cmd += ["--prefill-tokens", str(args.prefill_tokens)] + (["--batched"] if batched else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from model.checkpoint import DEFAULT_CHECKPOINT

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint folder to measure")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every engine")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length for the decode runs")
    p.add_argument("--new-tokens", type=int, default=256, help="tokens generated per decode run")
    p.add_argument("--prefill-tokens", type=int, default=300, help="prompt length for the prefill timing")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best one counts")
    p.add_argument("--no-hf", action="store_true", help="skip the HF transformers baseline")
    p.add_argument(
        "--llama-cpp",
        type=Path,
        metavar="DIR",
        help="llama.cpp source folder with its build (bench/llamacpp.py)",
    )
    p.add_argument(
        "--worker", choices=["fp32", "int8", "onnx", "onnx-dq", "onnx-nbits", "hf"], help=argparse.SUPPRESS
    )
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--batched", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(worker_hf(args) if args.worker == "hf" else worker_engine(args)))
        return

    bandwidth = read_bandwidth(args.threads)  # measured again at the end: the better pass counts
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir, int8_dir, what = prepare(args.checkpoint, Path(tmp))
        print(f"model: {what}")
        print(f"threads: {args.threads}; prompt {args.prompt_tokens} + {args.new_tokens} new tokens, greedy")
        measure_kernels(int8_dir)
        rows = {
            "fp32": run_worker("fp32", fp32_dir, args),
            "int8": run_worker("int8", int8_dir, args, True),
            SERVED: run_worker("onnx", int8_dir, args, True),
            "int8 on ONNX Runtime, DynamicQuantizeMatMul only": run_worker("onnx-dq", int8_dir, args, True),
            "int8 on ONNX Runtime, MatMulNBits only": run_worker("onnx-nbits", int8_dir, args, True),
        }
        small = rows[SERVED]["small_pass"]
        kernels = (
            f"MatMulNBits up to {small} rows a pass, else DynamicQuantizeMatMul"
            if small
            else "DynamicQuantizeMatMul for every pass"
        )
        served = f"int8 on ONNX Runtime (served: {kernels}, as measured on this CPU)"
        rows = {served if name == SERVED else name: row for name, row in rows.items()}
        ours = bytes_per_token(int8_dir)
        for row in rows.values():
            row["bytes_per_token"] = ours if "batched_tok_s" in row else None
        if args.llama_cpp:
            from bench.llamacpp import measure
            from model.config import read_config

            config = read_config(int8_dir)["model"]
            rows.update(measure(args.llama_cpp, config, Path(tmp), args, BATCHES))
        if not args.no_hf:
            rows["HF GPT2LMHeadModel"] = run_worker("hf", fp32_dir, args)
        bandwidth = max(bandwidth, read_bandwidth(args.threads))
    print(f"CPU: {cpu_name()}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average after the run: {load} on {os.cpu_count()} CPUs (other work slows every engine)")
    print(
        f"memory read bandwidth with {args.threads} threads: {bandwidth / 1e9:.1f} GB/s (the better of a pass "
        "before and after the engines; a shared host's bandwidth moves between runs)"
    )
    base = rows.get("HF GPT2LMHeadModel")
    llama = next((r for name, r in rows.items() if name.startswith("llama.cpp Q8_0")), None)  # the baseline
    print(
        f"\n| engine | decode tok/s | {args.prefill_tokens}-token prefill ms | peak RSS MB "
        "| weight MB per token | bandwidth limit tok/s | share of it |"
        + (" decode vs llama.cpp Q8_0 | prefill vs llama.cpp Q8_0 |" if llama else "")
        + (" decode vs HF | prefill vs HF |" if base else "")
    )
    print(
        "|---|---:|---:|---:|---:|---:|---:|"
        + ("---:|---:|" if llama else "")
        + ("---:|---:|" if base else "")
    )
    for name, r in rows.items():
        line = f"| {name} | {r['decode_tok_s']:.0f} | {r['prefill_ms']:.1f} | {r['rss_mb']:.0f} |"
        if r.get("bytes_per_token"):
            limit = bandwidth / r["bytes_per_token"]
            line += f" {r['bytes_per_token'] / 1e6:.1f} | {limit:.0f} | {r['decode_tok_s'] / limit:.0%} |"
        else:
            line += " – | – | – |"
        for other in (llama, base):
            if other:
                speed, prefill = (
                    r["decode_tok_s"] / other["decode_tok_s"],
                    r["prefill_ms"] / other["prefill_ms"],
                )
                line += f" {speed:.2f}x | {prefill:.2f}x |"
        print(line)
    for name, row in rows.items():
        if "batched_tok_s" in row:
            batched = {int(b): v for b, v in row["batched_tok_s"].items()}
            cells = ", ".join(
                f"{b} streams {v:.0f} tok/s ({v / batched[1]:.1f}x)" for b, v in batched.items()
            )
            print(f"\n{name} batched decode, aggregate: {cells}")


SERVED = "int8 on ONNX Runtime, served"  # named by the kernels it measured (see main)


if __name__ == "__main__":
    main()
