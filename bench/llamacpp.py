"""llama.cpp on the same shape as the served model: the baseline of bench/decode.py (benchmark-only; llama.cpp
is never a dependency of the product).

llama.cpp runs llama-architecture models, so the comparison model is one with this model's shape and as
many weights: 6 layers, d 512, 8 heads, the same vocabulary and window, with random weights, and an MLP
width chosen so a layer holds as many weights as ours (ours: two 512 x 2048 matrices; llama's SwiGLU:
three 512 x 1376, +0.5%). Decode speed does not depend on the values of the weights. Its build, as
README.md gives it (the sources are those in PyPI's llama-cpp-python):

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/llama
    tar xzf /tmp/llama/llama_cpp_python-0.3.36.tar.gz -C /tmp/llama
    cd /tmp/llama/llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    cmake --build build -j2 --target llama-bench llama-batched-bench llama-quantize

    python -m bench.decode --llama-cpp /tmp/llama/llama_cpp_python-0.3.36/vendor/llama.cpp
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

LLAMA_FFN = 1376  # 3 x 512 x 1376 = 2,113,536 weights per layer's MLP; ours 2 x 512 x 2048 = 2,097,152


def write_gguf(llama_cpp: Path, config: dict[str, Any], path: Path) -> None:
    """A llama-architecture GGUF (fp16, random weights) of the model's shape, with no tokenizer."""
    import numpy as np

    sys.path.insert(0, str(llama_cpp / "gguf-py"))  # llama.cpp's own GGUF writer, from its sources
    import gguf

    d, layers, heads, vocab = config["n_embd"], config["n_layer"], config["n_head"], config["vocab_size"]
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config["block_size"])
    writer.add_embedding_length(d)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(LLAMA_FFN)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(d // heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("none")
    writer.add_vocab_size(vocab)

    def tensor(name: str, *shape: int) -> None:
        if len(shape) == 1:
            writer.add_tensor(name, np.ones(shape, np.float32))
        else:
            writer.add_tensor(name, (rng.standard_normal(shape, np.float32) * 0.02).astype(np.float16))

    tensor("token_embd.weight", vocab, d)
    for i in range(layers):
        tensor(f"blk.{i}.attn_norm.weight", d)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{name}.weight", d, d)
        tensor(f"blk.{i}.ffn_norm.weight", d)
        tensor(f"blk.{i}.ffn_gate.weight", LLAMA_FFN, d)
        tensor(f"blk.{i}.ffn_up.weight", LLAMA_FFN, d)
        tensor(f"blk.{i}.ffn_down.weight", d, LLAMA_FFN)
    tensor("output_norm.weight", d)
    tensor("output.weight", vocab, d)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def weights_per_token(config: dict[str, Any]) -> int:
    """The matrix weights one decode step reads in the llama model (the embedding: one row)."""
    d, layers, vocab = config["n_embd"], config["n_layer"], config["vocab_size"]
    return layers * (4 * d * d + 3 * d * LLAMA_FFN) + vocab * d


def _tool(llama_cpp: Path, name: str) -> str:
    for candidate in (llama_cpp / "build" / "bin" / name, llama_cpp / "bin" / name, llama_cpp / name):
        if candidate.is_file():
            return str(candidate)
    raise SystemExit(f"no {name} under {llama_cpp} (build it as bench/llamacpp.py's docstring says)")


def measure(
    llama_cpp: Path, config: dict[str, Any], workdir: Path, args: Any, batches: tuple[int, ...]
) -> dict[str, dict[str, Any]]:
    """Rows for bench/decode.py: llama.cpp Q8_0 and Q4_0 on the model's shape, measured as ours are."""
    f16 = workdir / "llama-f16.gguf"
    write_gguf(llama_cpp, config, f16)
    rows = {}
    for quant in ("Q8_0", "Q4_0"):
        model = workdir / f"llama-{quant.lower()}.gguf"
        subprocess.run(
            [_tool(llama_cpp, "llama-quantize"), str(f16), str(model), quant], check=True, capture_output=True
        )
        threads, repeats = str(args.threads), str(args.repeats)
        repack = _repack(llama_cpp, model, threads)
        bench = [
            _tool(llama_cpp, "llama-bench"),
            "-m",
            str(model),
            "-t",
            threads,
            "-r",
            repeats,
            "-o",
            "json",
            *([] if repack else ["--repack", "0"]),  # the default flags where the probe passed
        ]
        # decode as ours: args.new_tokens after a prompt of args.prompt_tokens (-d: the context's depth)
        out, rss = _run_rusage([*bench, "-p", "0", "-n", str(args.new_tokens), "-d", str(args.prompt_tokens)])
        decode = json.loads(out)[0]["avg_ts"]
        out, _ = _run_rusage([*bench, "-p", str(args.prefill_tokens), "-n", "0"])
        prefill = json.loads(out)[0]["avg_ts"]
        batched_out, _ = _run_rusage(
            [_tool(llama_cpp, "llama-batched-bench"), "-m", str(model), "-t", threads, "-tb", threads]
            + ["-c", str(max(batches) * (args.prompt_tokens + args.new_tokens // 4))]
            + ["-npp", str(args.prompt_tokens), "-ntg", str(args.new_tokens // 4)]
            + ["-npl", ",".join(map(str, batches)), "--output-format", "jsonl"]
            + ([] if repack else ["--no-repack"])
        )
        batched = {}
        for line in batched_out.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                batched[row["pl"]] = row["speed_tg"]
        rows[f"llama.cpp {quant}" + ("" if repack else " (repacking off)")] = {
            "decode_tok_s": decode,
            "prefill_ms": args.prefill_tokens / prefill * 1000,
            "rss_mb": rss,
            "batched_tok_s": batched,
            "bytes_per_token": weights_per_token(config) * (34 / 32 if quant == "Q8_0" else 18 / 32),
        }
    return rows


def _repack(llama_cpp: Path, model: Path, threads: str) -> bool:
    """Whether llama.cpp keeps its default, weights repacked for its extra kernels: yes, unless a 32-token
    prompt and 4 tokens with them stop on an illegal instruction. Then it runs its plain kernels
    (`--repack 0`), and the row says so. Seen on an Intel Xeon with AMX: a GGML_NATIVE build stopped so in
    its AMX matrix kernel (ggml_backend_amx_mul_mat) on every prompt, though Linux had enabled the tiles."""
    tool = _tool(llama_cpp, "llama-bench")
    probe = [tool, "-m", str(model), "-t", threads, "-r", "1", "-p", "32", "-n", "4"]  # fmt: skip
    done = subprocess.run(probe, capture_output=True)
    if done.returncode == -signal.SIGILL:
        print(
            f"{model.name}: llama.cpp's repacked kernels stop on an illegal instruction here: repacking off"
        )
        return False
    return True


def _run_rusage(command: list[str]) -> tuple[str, float]:
    """The command's stdout and its own peak RSS in MB (os.wait4 on it alone)."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert process.stdout is not None
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{command[0]} failed:\n{errors.read()[-2000:]}")
    return stdout, usage.ru_maxrss / 1024
