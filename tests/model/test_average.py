"""model.average: two checkpoints of one model mixed weight by weight, recorded on the card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.average import average, main
from model.checkpoint import dequantized, export_int8, load_checkpoint, save_checkpoint
from model.config import CheckpointError, GPTConfig
from model.evaluate import report_card
from model.gpt import GPT
from model.tokenizer import Tokenizer

STAGE = {"stage": "sft", "args": {"seed": 7}, "steps": 5, "tokens": 80, "minutes": 0.1, "device": "cpu"}
STAGE |= {"processes": 1, "threads": 1, "autocast": "fp32", "recipe": "muon + wsd", "val_loss": 2.5}


@pytest.fixture
def pair(tmp_path: Path, trained_model: GPT, tiny_model: GPT, tokenizer: Tokenizer) -> tuple[Path, Path]:
    """(base, tuned): two fp32 checkpoints of the tiny shape with different weights."""
    save_checkpoint(tmp_path / "base", tiny_model, tokenizer, {"training": {}})
    save_checkpoint(tmp_path / "tuned", trained_model, tokenizer, {"training": {"sft": STAGE}, "name": "t"})
    return tmp_path / "base", tmp_path / "tuned"


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(directory, fast_int8=False)[0].state_dict()


@pytest.mark.parametrize("weight", [0.0, 0.4, 1.0])
def test_the_average_lies_on_the_line_between_the_two(pair: tuple[Path, Path], tmp_path: Path, weight: float):
    base, tuned = pair
    average(base, tuned, weight, tmp_path / "avg")
    a, b, mixed = weights(base), weights(tuned), weights(tmp_path / "avg")
    assert set(mixed) == set(b)
    for name, t in mixed.items():
        torch.testing.assert_close(t, (1 - weight) * a[name] + weight * b[name])
    assert not torch.equal(a["lm_head.weight"], b["lm_head.weight"])  # the two really differ


def test_an_int8_base_is_dequantized_and_the_card_names_the_average(pair: tuple[Path, Path], tmp_path: Path):
    base, tuned = pair
    export_int8(base, tmp_path / "base8")
    training = average(tmp_path / "base8", tuned, 0.4, tmp_path / "avg")
    assert list(training) == ["sft", "average"]
    stage = training["average"]
    assert stage["args"] == {"base": str(tmp_path / "base8"), "tuned": str(tuned), "weight": 0.4, "seed": 7}
    config = json.loads((tmp_path / "avg" / "config.json").read_text())
    assert config["quantization"] is None and config["name"] == "t" and config["training"] == training
    card = report_card(config)
    assert f"| average | 0 | 0 | {stage['minutes']} |" in card and f"0.6 × {tmp_path / 'base8'}" in card
    # the int8 base's matrices, dequantized: the average of 0 is the base as the shipped form holds it
    average(tmp_path / "base8", tuned, 0.0, tmp_path / "zero")
    base8 = load_checkpoint(tmp_path / "base8", fast_int8=False)[0]
    for name, t in dequantized(base8).state_dict().items():
        torch.testing.assert_close(weights(tmp_path / "zero")[name], t)


def test_averaging_an_average_keeps_the_earlier_record(pair: tuple[Path, Path], tmp_path: Path):
    base, tuned = pair
    average(base, tuned, 0.5, tmp_path / "avg")
    training = average(base, tmp_path / "avg", 0.5, tmp_path / "avg2")
    assert list(training) == ["earlier", "average"] and list(training["earlier"]) == ["sft", "average"]


def test_what_cannot_be_averaged_is_refused(
    pair: tuple[Path, Path], tmp_path: Path, tokenizer: Tokenizer, tiny_config: GPTConfig
):
    base, tuned = pair
    wider = GPT(GPTConfig(**{**tiny_config.__dict__, "n_embd": 64}))
    save_checkpoint(tmp_path / "wider", wider, tokenizer, {})
    with pytest.raises(CheckpointError, match="different models"):
        average(base, tmp_path / "wider", 0.5, tmp_path / "x")
    export_int8(tuned, tmp_path / "tuned8")
    with pytest.raises(CheckpointError, match="must be fp32"):
        average(base, tmp_path / "tuned8", 0.5, tmp_path / "x")
    with pytest.raises(ValueError, match="within"):
        average(base, tuned, 1.5, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_command_line_writes_the_average_and_says_so(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    base, tuned = pair
    main(["--base", str(base), "--tuned", str(tuned), "--weight", "0.25", "--out", str(tmp_path / "cli")])
    assert f"wrote {tmp_path / 'cli'}: 0.75 × {base} + 0.25 × {tuned}" in capsys.readouterr().out
    assert (tmp_path / "cli" / "model.safetensors").exists()
    with pytest.raises(SystemExit, match="error: --weight must be within"):
        main(["--base", str(base), "--tuned", str(tuned), "--weight", "-1", "--out", str(tmp_path / "bad")])
