"""Where training and inference run: the device's name, whether bf16 pays on it, and the malloc under torch."""

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


# glibc's malloc hands a training step's large tensors (hundreds of MB of logits and activations) back to the
# kernel when they are freed and takes them again, page by page, on the next step: ~200,000 page faults a
# second, a third of the CPU time in the kernel. tcmalloc keeps them. Run 24's command on 2 cores of a Xeon
# with AMX: 28-30 s a step with glibc's malloc, 17.4 s with tcmalloc (465 faults a second).
# Debian/Ubuntu: apt install libtcmalloc-minimal4; LD_PRELOAD finds it by this name
TCMALLOC = "libtcmalloc_minimal.so.4"
ALLOCATORS = ("tcmalloc", "jemalloc")


def allocator(maps: str | None = None) -> str:
    """The malloc under this process: "tcmalloc" or "jemalloc" when one is loaded (LD_PRELOAD), else "system"."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:  # not Linux: the system's own malloc
            return "system"
    return next((name for name in ALLOCATORS if f"/lib{name}" in maps), "system")


def allocator_hint(device: torch.device, maps: str | None = None) -> str | None:
    """What to tell someone about to train on a Linux CPU under glibc's malloc; None where nothing would help."""
    if device.type != "cpu" or platform.system() != "Linux" or allocator(maps) != "system":
        return None
    return (
        f"malloc: glibc's, which faults each step's large tensors back in; LD_PRELOAD={TCMALLOC} trains about "
        "1.6x faster on a CPU (Debian/Ubuntu: apt install libtcmalloc-minimal4; make train sets it when installed)"
    )
