"""Checkpoints: one folder with model.safetensors + config.json + tokenizer.json.

The weights are either fp32 (what training writes) or the shipped int8 form (int8 matrices with
one fp16 scale per output row, see model/quant.py); load_checkpoint reads both. config.json holds
the model config under "model", the "quantization" (null for fp32) and "parameters", plus every key
of the `meta` given to save_checkpoint (training args, data, scores, licence, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import (
    CONFIG,
    DEFAULT_CHECKPOINT,
    INT8_SCHEME,
    TOKENIZER,
    WEIGHTS,
    CheckpointError,
    GPTConfig,
    model_config,
    read_config,
)
from model.gpt import GPT
from model.quant import int8_state_dict, pack_for_cpu, swap_to_int8
from model.tokenizer import Tokenizer

__all__ = ["CONFIG", "DEFAULT_CHECKPOINT", "WEIGHTS", "CheckpointError", "read_config"]  # re-exported


def unwrap(model: nn.Module) -> GPT:
    """The GPT inside a torch.compile and/or DistributedDataParallel wrapper."""
    while not isinstance(model, GPT):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"expected a GPT, got {type(model).__name__}")
        model = inner
    return model


def _check_vocab(tokenizer: Tokenizer, config: GPTConfig, where: str) -> None:
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{where}: tokenizer has {tokenizer.vocab_size} tokens, model expects {config.vocab_size}"
        )


def _write(dir: Path, weights: dict[str, torch.Tensor], tokenizer: Tokenizer, config: dict[str, Any]) -> None:
    dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(dir / WEIGHTS))
    (dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save(dir / TOKENIZER)


def save_checkpoint(dir: str | Path, model: nn.Module, tokenizer: Tokenizer, meta: dict[str, Any]) -> None:
    """Write fp32 weights, config.json ({**meta, model, parameters, quantization: null}), tokenizer."""
    gpt = unwrap(model)
    _check_vocab(tokenizer, gpt.config, "cannot save")
    weights = {k: v.detach().float().cpu() for k, v in gpt.state_dict().items()}
    config = {**meta, "model": asdict(gpt.config), "parameters": gpt.num_params(), "quantization": None}
    _write(Path(dir), weights, tokenizer, config)


@contextmanager
def _skip_init() -> Iterator[None]:
    """Module constructors inside skip their random initialisers: for a skeleton on the meta device
    whose weights are assigned right after. On meta, `normal_` would only import torch's
    decomposition tables (sympy and ~800 modules: ~65 MB resident for the process's whole life)."""
    init = torch.nn.init
    saved = init.normal_, init.zeros_, init.uniform_, init.kaiming_uniform_
    init.normal_ = init.zeros_ = init.uniform_ = init.kaiming_uniform_ = lambda t, *a, **k: t  # type: ignore[assignment]
    try:
        yield
    finally:
        init.normal_, init.zeros_, init.uniform_, init.kaiming_uniform_ = saved


def load_checkpoint(
    dir: str | Path, device: str | torch.device = "cpu", fast_int8: bool = True
) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """(model in eval mode, tokenizer, config.json) from an fp32 or int8 checkpoint folder.

    The model is built on the meta device and the stored tensors are assigned to it, so an int8
    checkpoint never exists as a full fp32 copy in memory. On CPU, int8 layers use fbgemm's int8
    GEMM unless fast_int8 is False (then they compute exactly with the stored weights).
    """
    dir = Path(dir)
    meta = read_config(dir)
    config = model_config(meta)
    try:
        tokenizer = Tokenizer.from_file(dir / TOKENIZER)
    except Exception as e:
        raise CheckpointError(f"checkpoint {dir}: {TOKENIZER} is corrupt ({e})") from e
    _check_vocab(tokenizer, config, f"checkpoint {dir}")
    try:
        weights = load_file(str(dir / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {dir}: {WEIGHTS} is corrupt ({e})") from e

    with torch.device("meta"), _skip_init():
        model = GPT(config)
    int8 = meta.get("quantization") is not None
    if int8:
        scheme = meta["quantization"].get("scheme")
        if scheme != INT8_SCHEME:
            raise CheckpointError(f"checkpoint {dir}: unknown quantization scheme {scheme!r}")
        swapped = swap_to_int8(model)
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {dir}: weights do not match config.json ({e})") from e
    if int8:
        for m in swapped:
            m.weight_scale = m.weight_scale.float()  # stored fp16; the kernels want the activations' dtype
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:
            raise CheckpointError(f"checkpoint {dir}: no weights for {name}")
    model.requires_grad_(False)
    model = model.to(device).eval()
    if int8 and fast_int8 and torch.device(device).type == "cpu":
        pack_for_cpu(model)
    return model, tokenizer, meta


def dequantized(model: GPT) -> GPT:
    """A full-precision GPT with the int8 model's weights (q * scale), for a warm start."""
    from model.quant import Int8Embedding, Int8Linear, dequantize_rows

    fp32 = GPT(model.config)
    state = {}
    for name, m in model.named_modules():
        if isinstance(m, Int8Linear | Int8Embedding):
            state[f"{name}.weight"] = dequantize_rows(m.weight, m.weight_scale)  # packed: unpacked
    for key, t in model.state_dict().items():
        if key not in state and not key.endswith("weight_scale"):
            state[key] = t.float()
    fp32.load_state_dict(state, strict=True)
    return fp32


def load_fp32(dir: str | Path) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """(model with full-precision weights, tokenizer, config.json) of an fp32 or int8 checkpoint (int8:
    dequantized), for training on from it or mixing its weights."""
    model, tokenizer, meta = load_checkpoint(dir, fast_int8=False)
    return (dequantized(model) if meta.get("quantization") is not None else model), tokenizer, meta


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
        corpus = info.get("corpus")
        for name, source in corpus.get("sources", {}).items() if isinstance(corpus, dict) else []:
            notes[name] = f"{source['licence']} ({source.get('registry', 'generated')}: {source['package']})"
        for name in info.get("files", {}):
            notes[name] = "user-supplied file: its own licence applies"
    return notes


def export_int8(src_dir: str | Path, dst_dir: str | Path) -> dict[str, Any]:
    """Write the shipped form of an fp32 checkpoint (int8 matrices, fp16 row scales); returns its config."""
    model, tokenizer, meta = load_checkpoint(src_dir)
    if meta.get("quantization") is not None:
        raise CheckpointError(f"checkpoint {src_dir} is already quantized ({meta['quantization']['scheme']})")
    weights = int8_state_dict(model)
    int8_count = sum(t.numel() for t in weights.values() if t.dtype == torch.int8)
    config = {
        **meta,
        "quantization": {
            "scheme": INT8_SCHEME,
            "int8_parameters": int8_count,
            "fp32_parameters": sum(t.numel() for t in weights.values() if t.dtype == torch.float32),
            "note": "every Linear and Embedding matrix is int8 with one fp16 scale per output row; "
            "norm gains stay fp32",
        },
    }
    _write(Path(dst_dir), weights, tokenizer, config)
    return config
