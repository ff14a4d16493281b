"""Where training and inference run: the device's name, and whether bf16 pays on it."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from model.runtime import cpu_name


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), where autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() == "arm64"  # Apple silicon
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_bf16_matmul(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matmuls are fast here: on CUDA, and on CPUs with AVX512-BF16 or AMX."""
    return torch.device(device).type == "cuda" or cpu_has_bf16()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def autocast_dtype(device: torch.device, choice: str) -> torch.dtype | None:
    if choice == "fp32":
        return None
    if choice == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None
