"""--keep: kept sources' rows learn the starting checkpoint's predictions instead of their tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.checkpoint import load_checkpoint, load_fp32
from model.data import sft_rows
from model.keep import combined_loss, kept_rows, soft_loss_sum
from model.train import main, parse_args
from tests.model.helpers import TINY, make_corpus


def test_kept_rows_come_after_the_others():
    assert kept_rows(2, 3).tolist() == [False, False, True, True, True]


def test_without_kept_rows_the_loss_is_the_tokens_loss():
    logits = torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.uint8)
    hard = torch.tensor(2.5)
    assert combined_loss(logits, hard, mask, torch.tensor([False, False]), None).item() == pytest.approx(2.5)


def test_kept_rows_score_against_the_teacher_weighted_by_their_tokens():
    torch.manual_seed(0)
    logits, teacher = torch.randn(3, 4, 6), torch.randn(1, 4, 6)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.uint8)
    kept = torch.tensor([False, True, False])
    hard = torch.tensor(1.75)  # the mean over the 7 masked positions of rows 0 and 2
    # row 1's two positions: the cross-entropy against the teacher's distribution, by hand
    q, log_p = teacher[0, :2].softmax(-1), logits[1, :2].log_softmax(-1)
    soft = -(q * log_p).sum()
    expected = (1.75 * 7 + soft) / 9
    assert combined_loss(logits, hard, mask, kept, teacher).item() == pytest.approx(expected.item(), rel=1e-6)
    thrice = (1.75 * 7 + 3 * soft) / 9  # --keep-weight 3: each kept position counts three times
    assert combined_loss(logits, hard, mask, kept, teacher, 3.0).item() == pytest.approx(
        thrice.item(), rel=1e-6
    )


def test_the_soft_loss_has_no_gradient_where_the_model_agrees_with_the_teacher():
    torch.manual_seed(1)
    teacher = torch.randn(2, 3, 5)
    logits = teacher.clone().requires_grad_(True)
    mask = torch.ones(2, 3, dtype=torch.uint8)
    loss = soft_loss_sum(logits, teacher, mask)
    entropy = -(teacher.softmax(-1) * teacher.log_softmax(-1)).sum()
    assert loss.item() == pytest.approx(entropy.item(), rel=1e-6)  # KL 0: the teacher's entropy is left
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().max().item() < 1e-6
    other = torch.randn(2, 3, 5, requires_grad=True)  # elsewhere it pulls towards the teacher
    soft_loss_sum(other, teacher, mask).backward()
    assert other.grad is not None

    def kl(logits: torch.Tensor) -> float:
        return F.kl_div(
            logits.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="sum"
        ).item()

    assert kl(other.detach() - 0.5 * other.grad) < kl(other.detach())


def _pretrained(tmp_path: Path, out: str = "pre", seed: int = 1234) -> tuple[Path, list[str]]:
    """A corpus of two dialogue sources (chat, and a copy named other) and a tiny model pretrained on it."""
    data = tmp_path / "data"
    if not data.exists():
        make_corpus(tmp_path)
        for split in ("train", "val"):
            shutil.copy(data / split / "chat.jsonl", data / split / "other.jsonl")
    common = ["--data", str(data), "--tokenizer", str(data / "tokenizer.json"), "--threads", "1"]
    common += ["--dtype", "fp32", "--eval-batches", "1", "--eval-every", "0", "--batch-size", "4"]
    pretrain = ["--stage", "pretrain", *TINY, "--max-steps", "2", "--seed", str(seed)]
    main([*common, "--out", str(tmp_path / out), *pretrain])
    return tmp_path / out, common


@torch.no_grad()
def _kl(student: Path, teacher: Path, data: Path) -> float:
    """The mean KL divergence from the teacher's next-token distribution to the student's, over the
    assistant tokens of the chat source's training rows."""
    (s, tok, _), (t, _, _) = load_fp32(student), load_fp32(teacher)
    lines = (data / "train" / "chat.jsonl").read_text().splitlines()
    ids, mask = sft_rows(tok, [json.loads(line)["messages"] for line in lines], s.config.block_size)
    x, m = ids[:, :-1].long(), mask[:, 1:].bool()
    log_p, log_q = (model.eval()(x, all_logits=True)[0].log_softmax(-1) for model in (s, t))
    return ((log_q.exp() * (log_q - log_p)).sum(-1)[m]).mean().item()


def test_kept_rows_learn_the_teachers_predictions_not_their_tokens(tmp_path: Path):
    """Every row kept, the teacher another model: the run moves the student towards the teacher's
    predictions; the same run on the rows' tokens does not. The record names what was kept and from
    where."""
    start, common = _pretrained(tmp_path)
    teacher, _ = _pretrained(tmp_path, "teacher", seed=99)
    sft = ["--stage", "sft", "--init-from", str(start), "--max-steps", "12", "--warmup-steps", "1"]
    sft += ["--lr", "3e-3", "--muon-lr", "3e-2"]
    keep = ["--keep", "chat", "--keep", "other", "--keep-from", str(teacher)]
    main([*common, *sft, "--out", str(tmp_path / "kept"), *keep])
    main([*common, *sft, "--out", str(tmp_path / "learnt")])
    data = tmp_path / "data"
    before, kept, learnt = (_kl(p, teacher, data) for p in (start, tmp_path / "kept", tmp_path / "learnt"))
    assert kept < 0.5 * before, (before, kept)
    assert kept < 0.5 * learnt, (kept, learnt)
    _, _, meta = load_checkpoint(tmp_path / "kept")
    args = meta["training"]["sft"]["args"]
    assert args["keep"] == ["chat", "other"] and args["keep_from"] == str(teacher)
    json.dumps(meta)


def test_kept_rows_hold_while_the_others_teach(tmp_path: Path):
    """Keeping one source of two, the teacher the starting point itself (the default): the other
    source's rows still move the weights."""
    pre, common = _pretrained(tmp_path)
    sft = ["--stage", "sft", "--init-from", str(pre), "--max-steps", "2", "--warmup-steps", "1"]
    main([*common, *sft, "--out", str(tmp_path / "half"), "--keep", "chat"])
    _, _, meta = load_checkpoint(tmp_path / "half")
    assert meta["training"]["sft"]["args"]["keep_from"] == str(pre)
    (ma, _, _), (mb, _, _) = load_fp32(pre), load_fp32(tmp_path / "half")
    moved = dict(mb.named_parameters())
    assert max((w - moved[n]).abs().max().item() for n, w in ma.named_parameters()) > 1e-3


def test_keep_names_a_source_of_the_mix(tmp_path: Path):
    pre, common = _pretrained(tmp_path)
    sft = ["--stage", "sft", "--init-from", str(pre), "--max-steps", "1", "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit, match="--keep: no source nope"):
        main([*common, *sft, "--keep", "nope"])


def test_keep_needs_sft_and_a_checkpoint(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse_args(["--stage", "sft", "--out", "x", "--max-steps", "1", "--keep", "chat"])
    assert "--keep needs --keep-from or --init-from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(
            ["--stage", "pretrain", "--out", "x", "--max-steps", "1", "--keep", "a", "--init-from", "y"]
        )
    assert "--keep is for --stage sft" in capsys.readouterr().err
