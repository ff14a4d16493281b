import json
import subprocess
import sys
from pathlib import Path

from model.chat import chat_loop
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint
from model.engine import Engine, SamplingParams
from model.loops import NGRAM_WORDS, WordTable
from model.tokenizer import render_prompt


def _run_chat(engine, tok, lines, params=None):
    lines, out = list(lines), []

    def read(prompt):
        if not lines:
            raise EOFError
        return lines.pop(0)

    chat_loop(engine, tok, params or SamplingParams(temperature=0.0, max_new_tokens=8), read, out.append)
    return "".join(out)


def test_chat_loop_streams_answers_and_resets(trained_model, tokenizer):
    engine = Engine(trained_model, max_batch=1, eos_id=tokenizer.eos_id)
    out = _run_chat(engine, tokenizer, ["the cat", "", "/reset", "a dog", "/quit", "never read"])
    expected = tokenizer.decode(
        list(
            engine.generate(
                render_prompt(tokenizer, [{"role": "user", "content": "the cat"}]),
                SamplingParams(temperature=0.0, max_new_tokens=8),
            )
        )
    )
    assert out.count("bot> ") == 2 and "(new conversation)" in out
    assert out.startswith("bot> " + expected + "\n")


def test_chat_loop_drops_oldest_turns_when_window_is_full(trained_model, tokenizer):
    engine = Engine(trained_model, max_batch=1, eos_id=tokenizer.eos_id)
    lines = ["the cat sat on the mat and the dog ran under the tree"] * 6
    out = _run_chat(engine, tokenizer, lines)
    assert out.count("bot> ") == 6
    assert "oldest messages no longer fit" in out


def test_chat_loop_refuses_message_longer_than_window(trained_model, tokenizer):
    engine = Engine(trained_model, max_batch=1, eos_id=tokenizer.eos_id)
    out = _run_chat(engine, tokenizer, ["the cat " * 200])
    assert "message too long" in out and "bot> " not in out


def test_chat_cli_missing_checkpoint_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "model.chat", "--checkpoint", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert "no checkpoint folder" in proc.stderr and "--checkpoint" in proc.stderr


def test_export_cli_writes_int8_and_reports_diff(tmp_path, trained_model, tokenizer):
    save_checkpoint(tmp_path / "fp32", trained_model, tokenizer, {"scores": {"val_loss": 1.0}})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model.export",
            "--src",
            str(tmp_path / "fp32"),
            "--dst",
            str(tmp_path / "int8"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "int8 weights" in proc.stdout and "max |logit fp32 - int8|" in proc.stdout
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    diffs = config["quantization"]["max_abs_logit_diff"]
    assert set(diffs) == {"exact", "fast_cpu"} and config["scores"] == {"val_loss": 1.0}
    # exact int8 is at least as close to fp32 as the fast kernel that also rounds activations
    assert 0 < diffs["exact"] <= diffs["fast_cpu"]


def _chat_cli(*args: str, stdin: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "model.chat", "--threads", "1", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_chat_cli_answers_piped_messages_with_the_default_checkpoint():
    """`make chat` as a user runs it: the CLI's main on the default checkpoint, messages on stdin. Its
    greedy answers are the engine's, and a seeded sampled answer is the same on every run."""
    model, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    prompt = render_prompt(tok, [{"role": "user", "content": "Hello!"}])
    engine = Engine(model, max_batch=1, eos_id=tok.eos_id)
    # as the chat function serves: the loop guard on by default (model/loops.py)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16, no_repeat_ngram=NGRAM_WORDS)
    expected = tok.decode(list(engine.generate(prompt, greedy, WordTable(tok))))
    out = _chat_cli("--temperature", "0", "--max-new-tokens", "16", stdin="Hello!\n/reset\nHello!\n/quit\n")
    banner = out.splitlines()[0]
    assert banner.startswith("SLM 35.") and "(int8)" in banner  # an int8 model's size from its config
    # each answer follows the prompt "you> " (input() writes it to stdout) and "bot> "
    answers = [chunk.split("\n")[0] for chunk in out.split("bot> ")[1:]]
    assert answers == [expected, expected] and expected.strip()
    assert "(new conversation)" in out
    # piped, each message is shown after its prompt, as a terminal echoes it: the transcript reads as typed
    assert "\nyou> Hello!\nbot> " in out and "\nyou> /reset\n(new conversation)" in out
    alone = tok.decode(list(engine.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=16))))
    out = _chat_cli("--temperature", "0", "--max-new-tokens", "16", "--loop-guard", "0", stdin="Hello!\n")
    assert out.split("bot> ")[1].split("\n")[0] == alone  # --loop-guard 0: the model alone
    seeded = ("--temperature", "1.0", "--seed", "7", "--max-new-tokens", "12")
    first = _chat_cli(*seeded, stdin="How are you today?\n")  # ends at end of input, as Ctrl-D does
    assert "bot> " in first and first == _chat_cli(*seeded, stdin="How are you today?\n")


def test_make_chat_answers_piped_input():
    """The README's command itself: `make chat` with messages piped in answers each of them and leaves
    at the end of input (its answers are sampled, so only their presence is checked here)."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "chat"],
        cwd=Path(__file__).resolve().parents[2],
        input="Hello!\nWhat is 7 + 5?\n",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    answers = [chunk.split("\n")[0] for chunk in proc.stdout.split("bot> ")[1:]]
    assert len(answers) == 2 and all(a.strip() for a in answers), proc.stdout


def test_a_line_that_is_not_utf8_is_read_and_ctrl_c_stops_an_answer_not_the_chat(trained_model, tokenizer):
    """Bytes that were not UTF-8 (stdin keeps them as lone surrogates) crashed the chat with the tokenizer's
    TypeError; Ctrl-C at the prompt printed a traceback, and during an answer ended the conversation."""
    engine = Engine(trained_model, max_batch=1, eos_id=tokenizer.eos_id)
    out = _run_chat(engine, tokenizer, ["caf\udce9 \udcff"])
    assert out.count("bot> ") == 1
    lines, written, pressed = ["the cat", "a dog"], [], []

    def read(prompt):
        if not lines:
            raise KeyboardInterrupt  # Ctrl-C at the prompt: goodbye, no traceback
        return lines.pop(0)

    def write(text):
        written.append(text)
        if text and text != "bot> " and not pressed:
            pressed.append(True)
            raise KeyboardInterrupt  # Ctrl-C, once, while the first answer streams

    chat_loop(engine, tokenizer, SamplingParams(temperature=0.0, max_new_tokens=8), read, write)
    out = "".join(written)
    assert "(stopped)" in out and out.count("bot> ") == 2  # the chat went on to the second message


def test_the_chat_cli_refuses_sampling_out_of_range():
    for flags in (["--temperature", "-1"], ["--top-p", "0"], ["--top-k", "-5"], ["--max-new-tokens", "0"]):
        proc = subprocess.run(
            [sys.executable, "-m", "model.chat", *flags],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 2 and "out of range" in proc.stderr, (flags, proc.stderr)


def test_average_refuses_to_write_over_one_of_its_checkpoints(tmp_path):
    from model.average import main

    for out in ("base", "tuned"):
        try:
            main(
                [
                    "--base",
                    str(tmp_path / "base"),
                    "--tuned",
                    str(tmp_path / "tuned"),
                    "--weight",
                    "0.5",
                    "--out",
                    str(tmp_path / out),
                ]
            )
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError("the average was written over its --" + out)
