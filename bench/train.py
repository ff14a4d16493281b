"""Training throughput benchmark: tokens/s and model FLOPs utilisation (MFU) on this device.

    python -m bench.train                          # the default 36M shape, CPU or the first GPU
    python -m bench.train --batch-size 32 --compile --steps 30
    python -m bench.train --dtype fp32 --threads 2
    LD_PRELOAD=libtcmalloc_minimal.so.4 python -m bench.train --compile   # under tcmalloc, as make train runs

Times full optimizer steps (forward, backward, Muon + AdamW as model.train runs them) of a
randomly initialised model on random tokens (speed does not depend on the data) after --warmup
steps. MFU = achieved FLOP/s, from GPT.flops_per_token, over the device's peak: a table of GPU
bf16 dense peaks, or for a CPU an estimate of threads x clock x FLOPs/cycle (see
cpu_peak_tflops); pass --peak-tflops to use the real figure of your hardware. On a CPU it also
prints the share of a matmul of the model's own sizes timed in the same run (the practical
ceiling). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from model.device import allocator, autocast_dtype, cpu_has_bf16, device_name
from model.gpt import GPT, GPTConfig

GPU_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
    "L4": 121.0,
    "T4": 65.0,
}


def cpu_peak_tflops(threads: int, dtype: torch.dtype | None) -> tuple[float, str]:
    """threads x max clock x FLOPs per cycle: two FMA units of 512 bits on Intel (64 fp32 FLOPs),
    of 256 bits on AMD Zen (32); bf16 dot products double it."""
    mhz = 0.0
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    for line in text.splitlines():
        if line.startswith("cpu MHz"):
            mhz = max(mhz, float(line.split(":")[1]))
    flops_per_cycle = 32 if "AuthenticAMD" in text else 64
    if dtype == torch.bfloat16 and cpu_has_bf16():
        flops_per_cycle *= 2
    ghz = mhz / 1000 or 3.0  # a VM often hides the clock: assume 3 GHz
    note = f"CPU estimate: {threads} threads x {ghz:.1f} GHz x {flops_per_cycle} FLOPs/cycle"
    return threads * ghz * 1e9 * flops_per_cycle / 1e12, note


def matmul_tflops(tokens: int, d: int, dtype: torch.dtype | None, repeat: int = 5) -> float:
    """TFLOP/s of (tokens, d) @ (d, 4d), the MLP's shape, in the training dtype, timed here and now."""
    x, w = torch.randn(tokens, d), torch.randn(4 * d, d)
    if dtype is not None:
        x, w = x.to(dtype), w.to(dtype)
    torch.nn.functional.linear(x, w)
    t0 = time.perf_counter()
    for _ in range(repeat):
        torch.nn.functional.linear(x, w)
    return 2 * tokens * d * 4 * d * repeat / (time.perf_counter() - t0) / 1e12


def peak_tflops(device: torch.device, threads: int, dtype: torch.dtype | None) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops, f"{name} bf16 dense peak"
        return float("nan"), f"{name}: unknown peak, pass --peak-tflops"
    return cpu_peak_tflops(threads, dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step")
    p.add_argument(
        "--optimizer", choices=["muon", "adamw"], default="muon", help="as model.train's --optimizer"
    )
    p.add_argument("--block-size", type=int, default=384, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator)")
    p.add_argument(
        "--dtype", choices=["auto", "bf16", "fp32"], default="auto", help="autocast, as in model.train"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="where to run")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument(
        "--peak-tflops", type=float, default=0, help="the device's peak TFLOP/s for MFU (0: look up)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = autocast_dtype(device, args.dtype)

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=args.block_size)).to(device).train()
    muon_lr = 1e-3 if args.optimizer == "muon" else None
    optimizer = model.configure_optimizer(0.1, 1e-4, (0.9, 0.95), device.type, muon_lr=muon_lr)
    net = torch.compile(model) if args.compile else model
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    x = torch.randint(0, model.config.vocab_size, (args.batch_size, args.block_size), device=device)
    y = torch.roll(x, -1, dims=1)

    def step() -> float:
        with autocast:
            _, loss = net(x, y)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # type: ignore[union-attr]  # .item() waits for the device

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - t0

    tokens_per_s = args.steps * args.batch_size * args.block_size / seconds
    flops = model.flops_per_token(args.block_size) * tokens_per_s
    peak, peak_note = (
        (args.peak_tflops, "given")
        if args.peak_tflops
        else peak_tflops(device, torch.get_num_threads(), dtype)
    )
    print(
        f"device: {device_name(device)}; threads {torch.get_num_threads()}; autocast {dtype or 'fp32'}; compile {args.compile}; "
        f"malloc {allocator()}"
    )
    print(
        f"model: {model.num_params():,} parameters, {model.flops_per_token(args.block_size) / 1e6:.0f} MFLOPs/token (6N + attention)"
    )
    print(f"batch {args.batch_size} x {args.block_size}, {args.steps} steps in {seconds:.1f} s")
    print(f"training throughput: {tokens_per_s:,.0f} tokens/s, {flops / 1e12:.3f} TFLOP/s")
    print(f"MFU: {flops / 1e12 / peak:.1%} of {peak:.2f} TFLOP/s ({peak_note})")
    if device.type == "cpu":
        rate = matmul_tflops(args.batch_size * args.block_size, model.config.n_embd, dtype)
        print(
            f"    {flops / 1e12 / rate:.1%} of a {dtype or 'fp32'} matmul of the MLP's shape timed now, {rate:.3f} TFLOP/s"
        )
    print(f"load average: {os.getloadavg()[0]:.2f} (other work on the machine lowers these numbers)")


if __name__ == "__main__":
    main()
