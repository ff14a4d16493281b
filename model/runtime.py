"""How many CPUs this process may really use (affinity, cgroup quota, Lambda memory): torch-free."""

from __future__ import annotations

import math
import mmap
import os
import platform
from collections.abc import Mapping
from pathlib import Path

LAMBDA_MB_PER_VCPU = 1769


def zeroed_pages(nbytes: int) -> mmap.mmap:
    """Memory that reads as zeros and costs nothing until written, page by page: an anonymous
    mapping, with transparent huge pages refused (one written byte would commit 2 MB; numpy's own
    large allocations ask for huge pages). For KV caches, whose slots fill a position at a time."""
    memory = mmap.mmap(-1, max(nbytes, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return memory


def _cgroup_cpus(root: Path) -> float | None:
    """CPUs allowed by a cgroup v2 cpu.max or v1 cfs quota under `root`, None when unlimited."""
    candidates = [root / "cpu.max"]
    proc = Path("/proc/self/cgroup")
    if proc.is_file():  # the process's own cgroup below the root (v2: "0::/path")
        for line in proc.read_text().splitlines():
            if line.startswith("0::") and line[3:].strip("/"):
                candidates.insert(0, root / line[3:].strip("/") / "cpu.max")
    for f in candidates:
        if f.is_file():
            quota, _, period = f.read_text().strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100000)
    for d in (root / "cpu", root / "cpu,cpuacct", root):
        q, p = d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"
        if q.is_file() and p.is_file():
            us = int(q.read_text())
            return None if us < 0 else us / int(p.read_text())
    return None


def cpu_budget(
    cgroup_root: str | Path = "/sys/fs/cgroup",
    environ: Mapping[str, str] | None = None,
    affinity: int | None = None,
) -> int:
    """The CPUs this process may really use: the least of its affinity mask, its cgroup quota and,
    on AWS Lambda, its memory size (1,769 MB buys one vCPU); at least 1. Never os.cpu_count()."""
    environ = os.environ if environ is None else environ
    limits = [affinity if affinity is not None else len(os.sched_getaffinity(0))]
    quota = _cgroup_cpus(Path(cgroup_root))
    if quota is not None:
        limits.append(math.ceil(quota))
    if environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").isdigit():
        limits.append(int(environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) // LAMBDA_MB_PER_VCPU)
    return max(1, min(limits))


CPUINFO = Path("/proc/cpuinfo")


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# the widest matrix instructions a CPU's flags list, strongest first: what the int8 kernels run on
_MATRIX_FLAGS = (
    ("amx_tile", "AMX"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
)


def cpu_description(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's name and its widest matrix instructions, e.g. "AMD EPYC (AVX2)": a name alone can hide
    different CPUs, whose int8 kernels round differently."""
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    widest = next((name for flag, name in _MATRIX_FLAGS if flag in flags), None)
    return f"{cpu_name(cpuinfo)} ({widest})" if widest else cpu_name(cpuinfo)
