"""The training script on a tiny corpus and a tiny model: a step lowers the loss, resume continues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import load_checkpoint
from model.data import pack_stream, stream_batch
from model.gpt import GPT, GPTConfig
from model.tokenizer import Tokenizer
from model.train import STATE, lr_at, main, parse_args

TINY = ["--n-layer", "2", "--n-head", "4", "--n-embd", "32", "--block-size", "48"]


@pytest.fixture
def corpus(tmp_path: Path, tokenizer: Tokenizer, texts: list[str]) -> Path:
    """A corpus folder in the builder's layout (train/val, dialogue JSONL and prose text) + tokenizer."""
    data = tmp_path / "data"
    for split, lines in (("train", texts[:300]), ("val", texts[300:])):
        (data / split).mkdir(parents=True)
        (data / split / "prose.txt").write_text(
            "\n\n\n".join(" ".join(lines[i : i + 5]) for i in range(0, len(lines), 5))
        )
        chats = [
            {"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]}
            for a, b in zip(lines[::2], lines[1::2], strict=False)
        ]
        (data / split / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    tokenizer.save(data / "tokenizer.json")
    return data


def _run(data: Path, out: Path, *extra: str) -> None:
    main(
        [
            "--data",
            str(data),
            "--tokenizer",
            str(data / "tokenizer.json"),
            "--out",
            str(out),
            "--threads",
            "1",
        ]
        + ["--dtype", "fp32", "--eval-batches", "1", "--eval-every", "0", "--batch-size", "4", *extra]
    )


def test_one_training_step_lowers_the_loss(
    corpus: Path, tmp_path: Path, tokenizer: Tokenizer, texts: list[str]
):
    out = tmp_path / "run"
    _run(corpus, out, "--stage", "pretrain", *TINY, "--max-steps", "1", "--warmup-steps", "1", "--lr", "1e-2")
    torch.manual_seed(1234)  # the script's seed: the same initial weights
    before = GPT(
        GPTConfig(vocab_size=tokenizer.vocab_size, block_size=48, n_layer=2, n_head=4, n_embd=32)
    ).eval()
    after, _, meta = load_checkpoint(out)
    ids, mask = pack_stream(tokenizer, texts[:300])
    x, y, _ = stream_batch(ids, mask, 16, 48, torch.Generator().manual_seed(5))
    with torch.no_grad():
        loss_before, loss_after = before(x, y)[1], after(x, y)[1]
    assert loss_after < loss_before  # type: ignore[operator]
    assert meta["training"]["pretrain"]["steps"] == 1
    assert "chat" in meta["data"]["pretrain"]["sources"] and "prose" in meta["data"]["pretrain"]["sources"]


def test_resume_continues_where_the_run_stopped(corpus: Path, tmp_path: Path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(corpus, straight, "--stage", "pretrain", *TINY, "--max-steps", "4")
    _run(corpus, resumed, "--stage", "pretrain", *TINY, "--max-steps", "2")
    _run(corpus, resumed, "--stage", "pretrain", "--max-steps", "4", "--resume")
    assert torch.load(resumed / STATE, weights_only=False)["step"] == 4
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_sft_starts_from_the_pretrained_checkpoint_and_trains_on_conversations(corpus: Path, tmp_path: Path):
    _run(corpus, tmp_path / "pre", "--stage", "pretrain", *TINY, "--max-steps", "1")
    _run(corpus, tmp_path / "sft", "--stage", "sft", "--init-from", str(tmp_path / "pre"), "--max-steps", "2")
    _, _, meta = load_checkpoint(tmp_path / "sft")
    assert set(meta["training"]) == {"pretrain", "sft"}
    assert list(meta["data"]["sft"]["sources"]) == ["chat"]  # prose stays in pretraining


def test_schedule_warms_up_then_decays_to_min_lr():
    args = parse_args(["--stage", "pretrain", "--out", "x", "--max-steps", "100", "--warmup-steps", "10"])
    assert lr_at(0, 0.0, args) == pytest.approx(args.lr / 10)
    assert lr_at(10, 0.1, args) < args.lr
    assert lr_at(50, 1.0, args) == pytest.approx(args.min_lr)
