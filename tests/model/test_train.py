"""The training script on a tiny corpus and a tiny model: a step lowers the loss, resume continues."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import dequantized, export_int8, load_checkpoint
from model.data import pack_stream, stream_batch
from model.gpt import GPT, GPTConfig
from model.optim import lr_factor
from model.tokenizer import Tokenizer
from model.train import STATE, main, parse_args
from tests.model.helpers import TINY, make_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


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


def test_a_resumed_warm_start_keeps_its_warm_start_on_record(corpus: Path, tmp_path: Path):
    _run(corpus, tmp_path / "pre", "--stage", "pretrain", *TINY, "--max-steps", "1")
    _run(corpus, tmp_path / "sft", "--stage", "sft", "--init-from", str(tmp_path / "pre"), "--max-steps", "1")
    _run(corpus, tmp_path / "sft", "--stage", "sft", "--max-steps", "2", "--resume")
    stage = load_checkpoint(tmp_path / "sft")[2]["training"]["sft"]
    assert stage["steps"] == 2 and stage["warm_start"] == str(tmp_path / "pre")


def test_sft_starts_from_the_pretrained_checkpoint_and_trains_on_conversations(corpus: Path, tmp_path: Path):
    _run(corpus, tmp_path / "pre", "--stage", "pretrain", *TINY, "--max-steps", "1")
    _run(corpus, tmp_path / "sft", "--stage", "sft", "--init-from", str(tmp_path / "pre"), "--max-steps", "2")
    _, _, meta = load_checkpoint(tmp_path / "sft")
    assert set(meta["training"]) == {"pretrain", "sft"}
    assert list(meta["data"]["sft"]["sources"]) == ["chat"]  # prose stays in pretraining


def test_schedules_warm_up_then_decay_to_the_floor():
    a = parse_args(["--stage", "pretrain", "--out", "x", "--max-steps", "100", "--warmup-steps", "10"])
    assert a.schedule == "wsd" and a.optimizer == "muon"
    args = (a.schedule, a.warmup_steps, a.decay_frac, a.min_lr_frac)
    assert lr_factor(0, 0.0, *args) == pytest.approx(0.1)
    assert lr_factor(10, 0.1, *args) == 1.0 and lr_factor(60, 0.7, *args) == 1.0  # stable until the decay
    assert lr_factor(85, 0.85, *args) == pytest.approx(1 - 0.9 * 0.5)  # halfway down the last 30%
    assert lr_factor(100, 1.0, *args) == pytest.approx(a.min_lr_frac)
    cosine = ("cosine", 100, 0.3, 0.1)
    assert lr_factor(200, 0.5, *cosine) == pytest.approx((1 + 0.1) / 2)
    assert lr_factor(200, 1.0, *cosine) == pytest.approx(0.1)


def test_max_tokens_ends_the_run_and_adamw_gpt2_recipe_trains(corpus: Path, tmp_path: Path):
    from bench.train_quality import GPT2_ARCH as gpt2

    _run(
        corpus,
        tmp_path / "a",
        "--stage",
        "pretrain",
        *TINY,
        *gpt2,
        "--optimizer",
        "adamw",
        "--max-tokens",
        "500",
    )
    model, _, meta = load_checkpoint(tmp_path / "a")
    assert meta["training"]["pretrain"]["tokens"] == 4 * 48 * 3  # whole steps of 4 x 48 until >= 500
    assert model.config.pos == "learned" and model.config.norm == "layer" and not model.config.qk_norm
    assert meta["training"]["pretrain"]["recipe"] == "adamw + wsd"


def test_warm_start_from_an_int8_checkpoint_trains(corpus: Path, tmp_path: Path):
    _run(corpus, tmp_path / "fp32", "--stage", "pretrain", *TINY, "--max-steps", "3")
    export_int8(tmp_path / "fp32", tmp_path / "int8")
    int8, _, _ = load_checkpoint(tmp_path / "int8", fast_int8=False)
    _run(
        corpus,
        tmp_path / "warm",
        "--stage",
        "pretrain",
        "--init-from",
        str(tmp_path / "int8"),
        "--max-steps",
        "2",
    )
    warm, _, meta = load_checkpoint(tmp_path / "warm")
    assert meta["training"]["pretrain"]["warm_start"] == str(tmp_path / "int8")
    assert meta["training"]["pretrain"]["steps"] == 2
    # every stage stays on record: the run warm-started from keeps its own, under "earlier"
    assert (
        meta["training"]["earlier"]["pretrain"]["steps"] == 3 and "earlier" not in meta["training"]["earlier"]
    )
    # it started from the dequantized int8 weights and moved away from them
    ref = dequantized(int8).state_dict()
    moved = [k for k, v in warm.state_dict().items() if not torch.equal(v, ref[k])]
    assert moved and all(warm.state_dict()[k].dtype == torch.float32 for k in ref)


def test_a_warm_start_trains_with_dropout_and_records_it(corpus: Path, tmp_path: Path):
    _run(corpus, tmp_path / "cold", "--stage", "pretrain", *TINY, "--max-steps", "2")
    _run(corpus, tmp_path / "warm", "--stage", "sft", "--init-from", str(tmp_path / "cold"), "--max-steps", "2",
         "--dropout", "0.2")  # fmt: skip
    warm, _, meta = load_checkpoint(tmp_path / "warm")
    assert meta["training"]["sft"]["args"]["dropout"] == 0.2 and meta["training"]["sft"]["steps"] == 2
    assert warm.config.dropout == 0.0  # the architecture on record is unchanged; eval drops nothing
    cold = load_checkpoint(tmp_path / "cold")[0].state_dict()
    assert any(not torch.equal(v, cold[k]) for k, v in warm.state_dict().items())


def test_training_stages_list_every_run_oldest_first():
    from model.config import training_stages

    training = {
        "earlier": {"earlier": {"pretrain": {"s": 1}}, "pretrain": {"s": 2}, "sft": {"s": 3}},
        "sft": {"s": 4},
    }
    assert training_stages(training) == [
        ("pretrain, 2 runs before", {"s": 1}),
        ("pretrain, 1 run before", {"s": 2}),
        ("sft, 1 run before", {"s": 3}),
        ("sft", {"s": 4}),
    ]
    assert training_stages({}) == [] and training_stages({"pretrain": {"s": 1}}) == [("pretrain", {"s": 1})]


def test_one_exported_conversation_trains_and_says_the_val_loss_is_not_measured(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """The web app's export of one conversation is one line: nothing can be held out, and the run said
    `val loss nan` without a word; it now says why and trains all the same."""
    _run(corpus, tmp_path / "pre", "--stage", "pretrain", *TINY, "--max-steps", "1")
    export = tmp_path / "conversation-1.jsonl"
    turns = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How are you?"}]
    export.write_text(json.dumps({"messages": turns}) + "\n")
    _run(
        corpus, tmp_path / "sft", "--stage", "sft", "--init-from", str(tmp_path / "pre"), "--max-steps", "1",
        "--conversations", str(export), "--no-corpus",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert "no conversation is held out for validation" in err
    assert "val loss not measured (nothing held out)" in out and "nan" not in out
    assert load_checkpoint(tmp_path / "sft")[2]["training"]["sft"]["val_loss"] is None


def test_ctrl_c_saves_the_run_and_resume_goes_on(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Ctrl-C in a long run printed a traceback and kept nothing since the last --save-every (up to 199
    steps by default): now it saves and says how to go on."""
    import model.train as train

    real = train.lr_factor

    def interrupted_at_step_2(step: int, *rest: Any) -> float:
        if step == 2:
            raise KeyboardInterrupt
        return real(step, *rest)

    monkeypatch.setattr(train, "lr_factor", interrupted_at_step_2)
    with pytest.raises(SystemExit) as stopped:
        _run(corpus, tmp_path / "run", "--stage", "pretrain", *TINY, "--max-steps", "4")
    assert stopped.value.code == 130
    assert "interrupted at step 2" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / STATE, weights_only=False)["step"] == 2
    monkeypatch.setattr(train, "lr_factor", real)
    _run(corpus, tmp_path / "run", "--stage", "pretrain", "--max-steps", "4", "--resume")
    assert torch.load(tmp_path / "run" / STATE, weights_only=False)["step"] == 4


def test_ctrl_c_during_the_update_lets_it_finish_and_count_it(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """A real SIGINT between the two optimizers' steps of the third update: it takes effect once that
    update is whole and counted, so the checkpoint's step matches its weights (before, the Muon weights
    moved, AdamW's did not, and the counter said 2)."""
    import os
    import signal

    from model.optim import Optimizers

    def step_with_ctrl_c(self: Optimizers) -> None:
        adamw = next(o for o in self.optimizers if isinstance(o, torch.optim.AdamW))
        updates = max((int(s["step"]) for s in adamw.state.values()), default=0)
        for i, optimizer in enumerate(self.optimizers):
            optimizer.step()
            if i == 0 and updates == 2:
                os.kill(os.getpid(), signal.SIGINT)  # delivered at once: between two bytecodes of this thread

    monkeypatch.setattr(Optimizers, "step", step_with_ctrl_c)
    # as in a terminal: a test run started in the background (nohup, CI) inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            _run(corpus, tmp_path / "run", "--stage", "pretrain", *TINY, "--max-steps", "6")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works as before after
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.code == 130 and "interrupted at step 3" in capsys.readouterr().err
    state = torch.load(tmp_path / "run" / STATE, weights_only=False)
    (adamw,) = [o["state"] for o in state["optimizer"] if "step" in next(iter(o["state"].values()))]
    assert state["step"] == 3 and {int(s["step"]) for s in adamw.values()} == {3}


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--max-steps", "-1"], "--max-steps must be 0 or more"),
        (["--max-steps", "1", "--batch-size", "0"], "--batch-size must be 1 or more"),
    ],
)
def test_a_budget_or_size_that_cannot_work_is_refused_at_once(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit):
        parse_args(["--stage", "pretrain", "--out", "x", *flags])
    assert words in capsys.readouterr().err


def test_an_out_folder_that_cannot_be_written_is_refused_before_training(corpus: Path, tmp_path: Path):
    """Found only at the first save, after the whole run, before."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit, match="cannot write the checkpoint there"):
        _run(corpus, tmp_path / "a-file" / "run", "--stage", "pretrain", *TINY, "--max-steps", "1")
    with pytest.raises(SystemExit, match="holds no train_state.pt"):
        _run(corpus, tmp_path / "empty", "--stage", "pretrain", "--max-steps", "1", "--resume")


def test_a_conversations_file_a_user_got_wrong_is_named_with_its_line(corpus: Path, tmp_path: Path):
    """Tracebacks before (JSONDecodeError with no file, AttributeError for a list, FileNotFoundError);
    two files of one name trained on the last alone; --upsample of an unknown source was a KeyError."""
    good = json.dumps(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    )
    cases = {
        "broken.jsonl": (good + "\n{not json\n", "broken.jsonl:2: not a JSON object"),
        "list.jsonl": ("[1, 2]\n", 'list.jsonl:1: expected {"messages": [...]}, found a list'),
        "latin.jsonl": (None, "latin.jsonl"),
        "missing.jsonl": (None, "No such file"),
    }
    (tmp_path / "latin.jsonl").write_bytes(b'{"messages": "caf\xe9"}\n')
    for name, (text, words) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit, match=re.escape(words)):
            _run(corpus, tmp_path / "out", "--stage", "sft", "--max-steps", "1", "--no-corpus",
                 "--conversations", str(tmp_path / name))  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "chat.jsonl").write_text(good + "\n")
    with pytest.raises(SystemExit, match="two sources named chat.jsonl"):
        _run(corpus, tmp_path / "out", "--stage", "sft", "--max-steps", "1", "--no-corpus",
             "--conversations", str(tmp_path / "a" / "chat.jsonl"), "--conversations", str(tmp_path / "b" / "chat.jsonl"))  # fmt: skip
    with pytest.raises(SystemExit, match="--upsample nope=2: give SOURCE=N"):
        _run(corpus, tmp_path / "out", "--stage", "sft", "--max-steps", "1", "--no-corpus",
             "--conversations", str(tmp_path / "a" / "chat.jsonl"), "--upsample", "nope=2")  # fmt: skip


def test_a_run_never_writes_over_a_checkpoint_unless_asked(corpus: Path, tmp_path: Path):
    """A second command with the same --out replaced the first run's weights and left its card behind."""
    _run(corpus, tmp_path / "run", "--stage", "pretrain", *TINY, "--max-steps", "1")
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit, match="holds a checkpoint already: --resume to continue its run, --force"):
        _run(corpus, tmp_path / "run", "--stage", "pretrain", *TINY, "--max-steps", "2")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    _run(corpus, tmp_path / "run", "--stage", "pretrain", *TINY, "--max-steps", "2", "--force")
    assert torch.load(tmp_path / "run" / STATE, weights_only=False)["step"] == 2


def test_ctrl_c_stays_ignored_where_it_was_ignored():
    """A run started in the background (SIGINT ignored) is not stopped by a SIGINT during an update."""
    import os
    import signal

    from model.train import interrupts_deferred

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
