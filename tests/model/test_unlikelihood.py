"""Sequence-level unlikelihood: which tokens count as a loop, the batched greedy answers, the loss and
its gradient, and an SFT run that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.engine import Engine, SamplingParams
from model.gpt import GPT
from model.tokenizer import Tokenizer, render_prompt
from model.train import main, parse_args
from model.unlikelihood import (
    ANSWER_TOKENS,
    answer_prompts,
    greedy_answers,
    repeated_ngrams,
    sequence_unlikelihood,
    unlikelihood_loss,
)
from tests.model.helpers import TINY, make_corpus


def test_only_the_tokens_of_an_ngram_said_before_are_marked():
    #       a  b  c  d  a  b  c  d  e  a  b  c
    ids = [1, 2, 3, 4, 1, 2, 3, 4, 5, 1, 2, 3]
    assert repeated_ngrams(ids, 4) == [False] * 4 + [True] * 4 + [False] * 4  # "a b c" alone is not 4 long
    assert repeated_ngrams(ids, 3) == [False] * 4 + [True] * 4 + [False] + [True] * 3
    assert repeated_ngrams([7, 7, 7, 7], 2) == [False, True, True, True]
    assert repeated_ngrams([1, 2, 3], 4) == [False, False, False]


def test_batched_greedy_answers_are_each_prompts_own(trained_model: GPT, tokenizer: Tokenizer):
    prompts = [
        render_prompt(tokenizer, [{"role": "user", "content": t}]) for t in ("the cat", "hello how is", "a")
    ]
    batched = greedy_answers(trained_model, prompts, 12, tokenizer.eos_id)
    engine = Engine(trained_model, max_batch=1)
    for prompt, answer in zip(prompts, batched, strict=True):
        alone = list(engine.generate(prompt, SamplingParams(temperature=0, max_new_tokens=12)))
        assert answer == alone
    assert all(0 < len(a) <= 12 for a in batched)


def test_the_loss_is_zero_without_loops_and_pushes_a_loop_down(tiny_model: GPT):
    prompt, loop = [5, 6, 7], [10, 11, 12, 13] * 3  # the second and third "10 11 12 13" are repeats
    none, share = sequence_unlikelihood(tiny_model, [prompt], [[10, 11, 12, 13, 14]], 0, 48)
    assert none.item() == 0.0 and share == 0.0
    model = tiny_model.train()
    x = torch.tensor([prompt + loop])

    def p_repeat() -> float:  # the mean probability of the repeated tokens, where they are predicted
        with torch.no_grad():
            logits, _ = model(x[:, :-1], all_logits=True)
        p = logits.softmax(-1).gather(-1, x[:, 1:, None])[0, :, 0]
        return p[len(prompt) + 3 :].mean().item()

    before = p_repeat()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        loss, share = sequence_unlikelihood(model, [prompt], [loop], 0, 48)
        assert share == 8 / 12 and loss.item() > 0
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert p_repeat() < before


def test_prompts_are_first_user_turns_without_the_generated_sources_or_the_overlong(tokenizer: Tokenizer):
    hi = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    block_size = 48 + ANSWER_TOKENS  # a turn that leaves less than a whole answer's room is left out
    long = " ".join(["cat"] * 60)
    assert len(render_prompt(tokenizer, [{"role": "user", "content": long}])) + ANSWER_TOKENS > block_size
    train = {
        "chat": [hi, hi, [{"role": "user", "content": "why"}], [{"role": "user", "content": long}]],
        "skills": [[{"role": "user", "content": "What is 2 + 2?"}]],
        "prose": ["the cat sat"],
    }
    prompts = answer_prompts(tokenizer, train, block_size)
    assert list(prompts) == ["chat"]
    assert prompts["chat"] == [
        render_prompt(tokenizer, [{"role": "user", "content": t}]) for t in ("hi", "why")
    ]  # distinct, in order


def test_a_step_draws_the_same_prompts_for_the_same_key(trained_model: GPT, tokenizer: Tokenizer):
    prompts = {
        "a": [render_prompt(tokenizer, [{"role": "user", "content": t}]) for t in ("the cat", "a dog", "hi")],
        "b": [render_prompt(tokenizer, [{"role": "user", "content": "sky"}])],
    }
    first = unlikelihood_loss(trained_model, trained_model, prompts, 4, "1234:7:0", tokenizer)
    again = unlikelihood_loss(trained_model, trained_model, prompts, 4, "1234:7:0", tokenizer)
    assert first[0].item() == again[0].item() and first[1] == again[1]


# bf16: the greedy answers are decoded inside the training step's autocast
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_sft_with_unlikelihood_trains_and_records_it(tmp_path: Path, dtype: str):
    data = make_corpus(tmp_path)
    common = ["--data", str(data), "--tokenizer", str(data / "tokenizer.json"), "--threads", "1"]
    common += ["--dtype", dtype, "--eval-batches", "1", "--eval-every", "0", "--batch-size", "4"]
    wide = [*TINY[:-1], "96"]  # room for a prompt and a whole answer, so the greedy pass runs
    main([*common, "--out", str(tmp_path / "pre"), "--stage", "pretrain", *wide, "--max-steps", "2"])
    sft = ["--stage", "sft", "--init-from", str(tmp_path / "pre"), "--max-steps", "2"]
    main(
        [*common, "--out", str(tmp_path / "sft"), *sft, "--unlikelihood", "1", "--unlikelihood-prompts", "3"]
    )
    _, _, meta = load_checkpoint(tmp_path / "sft")
    stage = meta["training"]["sft"]
    assert stage["steps"] == 2 and stage["args"]["unlikelihood"] == 1.0
    assert stage["args"]["unlikelihood_prompts"] == 3
    json.dumps(meta)  # the record stays plain JSON


def test_unlikelihood_is_refused_outside_sft(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse_args(["--stage", "pretrain", "--out", "x", "--max-steps", "1", "--unlikelihood", "1"])
    assert "--unlikelihood is for --stage sft" in capsys.readouterr().err


def test_unlikelihood_every_n_steps_answers_only_on_those_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """--unlikelihood-every 2 over 4 steps: the real greedy pass runs on steps 0 and 2 only."""
    import model.train as train

    steps: list[str] = []

    def counted(model, net, prompts, k, key, tok):  # the real loss, with the steps it ran on noted
        steps.append(key.split(":")[1])
        return unlikelihood_loss(model, net, prompts, k, key, tok)

    monkeypatch.setattr(train, "unlikelihood_loss", counted)
    data = make_corpus(tmp_path)
    common = ["--data", str(data), "--tokenizer", str(data / "tokenizer.json"), "--threads", "1"]
    common += ["--dtype", "fp32", "--eval-batches", "1", "--eval-every", "0", "--batch-size", "4"]
    # a window with room for a prompt and a whole answer (ANSWER_TOKENS): TINY's 48 leaves no prompt
    wide = [*TINY[:-1], "96"]
    main([*common, "--out", str(tmp_path / "pre"), "--stage", "pretrain", *wide, "--max-steps", "1"])
    sft = ["--stage", "sft", "--init-from", str(tmp_path / "pre"), "--max-steps", "4", "--unlikelihood", "1"]
    main(
        [
            *common,
            "--out",
            str(tmp_path / "sft"),
            *sft,
            "--unlikelihood-prompts",
            "2",
            "--unlikelihood-every",
            "2",
        ]
    )
    assert steps == ["0", "2"]
    _, _, meta = load_checkpoint(tmp_path / "sft")
    assert (
        meta["training"]["sft"]["steps"] == 4 and meta["training"]["sft"]["args"]["unlikelihood_every"] == 2
    )


def test_unlikelihood_every_must_be_positive(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        parse_args(["--stage", "sft", "--out", "x", "--max-steps", "1", "--unlikelihood-every", "0"])
    assert "--unlikelihood-every must be 1 or more" in capsys.readouterr().err
