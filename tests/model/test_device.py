"""The malloc under training: which one a process runs on, the hint when it is glibc's, and make train's choice."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.device import TCMALLOC, allocator, allocator_hint
from tests.helpers import installed_tcmalloc

ROOT = Path(__file__).resolve().parents[2]
GLIBC_ONLY = """\
7f1c2a000000-7f1c2a022000 r--p 00000000 08:01 1048 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2b000000-7f1c2b100000 r-xp 00000000 08:01 2051 /opt/venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so
"""
TCMALLOC_MAPS = (
    GLIBC_ONLY
    + "7f1c2c000000-7f1c2c010000 r-xp 00000000 08:01 77 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n"
)
JEMALLOC_MAPS = (
    GLIBC_ONLY
    + "7f1c2d000000-7f1c2d010000 r-xp 00000000 08:01 78 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n"
)


def allocator_of_python(env: dict[str, str]) -> str:
    code = "from model.device import allocator; print(allocator())"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return run.stdout.strip()


def test_allocator_reads_the_libraries_mapped_into_the_process():
    assert allocator(GLIBC_ONLY) == "system"
    assert allocator(TCMALLOC_MAPS) == "tcmalloc"
    assert allocator(JEMALLOC_MAPS) == "jemalloc"
    assert allocator("") == "system"


@pytest.mark.skipif(platform.system() != "Linux", reason="the hint is for glibc's malloc, on Linux")
def test_the_hint_names_tcmalloc_only_for_a_cpu_run_under_glibc():
    hint = allocator_hint(torch.device("cpu"), GLIBC_ONLY)
    assert (
        hint is not None and f"LD_PRELOAD={TCMALLOC}" in hint and "apt install libtcmalloc-minimal4" in hint
    )
    assert allocator_hint(torch.device("cpu"), TCMALLOC_MAPS) is None
    assert allocator_hint(torch.device("cpu"), JEMALLOC_MAPS) is None
    assert allocator_hint(torch.device("cuda", 0), GLIBC_ONLY) is None  # the GPU's memory is torch's own


@pytest.mark.skipif(not installed_tcmalloc(), reason="needs libtcmalloc-minimal4 (apt)")
def test_preloading_tcmalloc_by_name_is_what_allocator_sees():
    env = {**os.environ, "LD_PRELOAD": TCMALLOC}
    assert allocator_of_python(env) == "tcmalloc"
    env.pop("LD_PRELOAD")
    assert allocator_of_python(env) == "system"


def test_make_train_and_run_preload_tcmalloc_exactly_where_it_is_installed():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    dry = subprocess.run(["make", "-n", "train"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    trains = [line for line in dry.splitlines() if "-m model.train" in line or "-m model.evaluate" in line]
    assert len(trains) == 4  # pretraining, fine-tuning and the two evaluations
    preloaded = [line.startswith(f"env LD_PRELOAD={TCMALLOC} ") for line in trains]
    assert preloaded == [installed_tcmalloc()] * 4
    run = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    served = [line for line in run.splitlines() if "uvicorn infra.router.app:app" in line]
    assert [line.startswith(f"env LD_PRELOAD={TCMALLOC} ") for line in served] == [installed_tcmalloc()]
    for target in ("train", "run"):
        off = subprocess.run(
            ["make", "-n", target, "MALLOC_ENV="], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert "LD_PRELOAD" not in off.stdout
