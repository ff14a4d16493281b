"""Data-parallel training on CPU: two gloo processes draw different batches, also after a resume."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from model.data import micro_batch
from model.train import STATE
from tests.model.helpers import TINY, make_corpus

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _draw(rank: int, port: int, queue) -> None:  # type: ignore[no-untyped-def]
    """One gloo rank: its micro-batches 0..5 straight through, and 3..5 again as a resumed run
    (a fresh process state) draws them; all gathered to rank 0."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    stream = torch.arange(5000, dtype=torch.int32) % 97
    rows = torch.arange(40 * 9, dtype=torch.int32).view(40, 9)
    out = {}
    for stage, ids in (("pretrain", stream), ("sft", rows)):
        mask = torch.ones_like(ids, dtype=torch.uint8)
        straight = [micro_batch(stage, ids, mask, (4, 8), i, rank, WORLD, 7)[0] for i in range(6)]
        resumed = [micro_batch(stage, ids, mask, (4, 8), i, rank, WORLD, 7)[0] for i in range(3, 6)]
        gathered = [torch.zeros_like(torch.stack(straight)) for _ in range(WORLD)]
        dist.all_gather(gathered, torch.stack(straight))
        out[stage] = ([g.tolist() for g in gathered], torch.stack(resumed).tolist())
    if rank == 0:  # plain lists: a tensor would travel as shared memory that dies with this process
        queue.put(out)
    dist.destroy_process_group()


def test_two_gloo_ranks_draw_different_batches_also_after_resume():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_draw, args=(r, port, queue)) for r in range(WORLD)]
    for p in procs:
        p.start()
    out = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for stage, (gathered, resumed) in out.items():
        rank0, rank1 = (torch.tensor(g) for g in gathered)
        resumed_rank0 = torch.tensor(resumed)
        for i in range(6):
            assert not torch.equal(rank0[i], rank1[i]), f"{stage}: both ranks drew batch {i}"
        assert torch.equal(resumed_rank0, rank0[3:]), f"{stage}: a resumed run draws other batches"
    sft0, sft1 = (torch.tensor(g) for g in out["sft"][0])
    seen0, seen1 = set(sft0[:4].flatten().tolist()), set(sft1[:4].flatten().tolist())
    assert not seen0 & seen1  # within an epoch the ranks read disjoint rows


def test_torchrun_trains_two_gloo_processes_and_resumes(tmp_path: Path):
    data = make_corpus(tmp_path)
    out = tmp_path / "run"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD)]
    base += ["-m", "model.train", "--stage", "pretrain", "--data", str(data), "--out", str(out)]
    base += [
        "--tokenizer",
        str(data / "tokenizer.json"),
        "--threads",
        "1",
        "--dtype",
        "fp32",
        "--batch-size",
        "2",
    ]
    base += ["--eval-every", "0", "--eval-batches", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args in ([*TINY, "--max-steps", "2"], ["--max-steps", "3", "--resume"]):
        done = subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
    state = torch.load(out / STATE, weights_only=False)
    assert state["step"] == 3 and state["tokens"] == 3 * 2 * 48 * WORLD
