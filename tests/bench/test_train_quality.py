"""bench/train_quality.py: a real, tiny A/B of two warm-start recipes, scoring another source beside chitchat."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from bench.train_quality import main
from model.checkpoint import export_int8
from model.train import main as train
from tests.model.helpers import TINY, make_corpus


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A corpus with the human-dialogue sources the keep recipes name, and a tiny model pretrained on it."""
    tmp = tmp_path_factory.mktemp("quality")
    data = make_corpus(tmp)
    for split in ("train", "val"):
        for source in ("chitchat", "chatterbot", "jokes"):
            shutil.copy(data / split / "chat.jsonl", data / split / f"{source}.jsonl")
    common = ["--data", str(data), "--tokenizer", str(data / "tokenizer.json"), "--threads", "1"]
    train([*common, "--dtype", "fp32", "--eval-every", "0", "--eval-batches", "1", "--batch-size", "4"]
          + ["--stage", "pretrain", *TINY, "--max-steps", "2", "--out", str(tmp / "pre")])  # fmt: skip
    export_int8(tmp / "pre", tmp / "pre-int8")
    return data, tmp / "pre"


def _quality(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["train_quality", "--threads", "1", *args])
    main()


@pytest.mark.parametrize("int8", [False, True])
def test_each_recipe_is_scored_on_the_other_sources_too(
    start: tuple[Path, Path], int8: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """From an int8 start (the shipped form), each arm is exported and scored in int8 as well."""
    data, pre = start
    pre = pre.with_name("pre-int8") if int8 else pre
    _quality(monkeypatch, "--init-from", str(pre), "--data", str(data), "--tokens", "200", "--batch-size", "2",
             "--warmup-steps", "1", "--rows", "8", "--also", "chat", "--recipe", "sft-warm-low",
             "--recipe", "sft-warm-low-keep10")  # fmt: skip
    out = capsys.readouterr().out
    assert "| sft-warm-low | " in out and "| sft-warm-low-keep10 | " in out
    line = next(x for x in out.splitlines() if x.startswith("chat val loss: "))
    scored = re.findall(r"(\S+) (\d+\.\d{4}) \(([+-]\d+\.\d{4})\)", line)
    assert [name for name, *_ in scored] == [pre.name, "sft-warm-low", "sft-warm-low-keep10"], line
    assert ("every arm scored in int8" in out) == int8
    first, *others = [(float(loss), float(delta)) for _, loss, delta in scored]
    assert first[1] == 0.0
    for loss, delta in others:  # each change is against the starting checkpoint's loss on the same rows
        assert delta == pytest.approx(loss - first[0], abs=2e-4)
    assert any(delta != 0.0 for _, delta in others)  # the runs moved the weights


def test_an_unknown_source_is_refused_before_any_training(
    start: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    data, pre = start
    with pytest.raises(SystemExit):
        _quality(monkeypatch, "--init-from", str(pre), "--data", str(data), "--also", "nope")
    assert "--also: no held-out rows of nope" in capsys.readouterr().err
