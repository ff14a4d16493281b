"""The committed default checkpoint: what the app, the chat image and a fresh clone load."""

from __future__ import annotations

from model.checkpoint import DEFAULT_CHECKPOINT, WEIGHTS, load_checkpoint
from model.config import training_stages
from model.engine import Engine, SamplingParams
from model.tokenizer import render_prompt


def test_default_checkpoint_is_int8_and_small():
    assert (DEFAULT_CHECKPOINT / WEIGHTS).stat().st_size <= 40 * 2**20
    assert (DEFAULT_CHECKPOINT / "README.md").is_file()


def test_default_checkpoint_answers_a_greeting():
    model, tok, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert meta["quantization"]["scheme"] == "int8 per-row fp16 scale"
    assert meta["scores"]["int8"]["samples"]["Hello!"]  # the report card was written for these weights
    prompt = render_prompt(tok, [{"role": "user", "content": "Hello!"}])
    ids = list(Engine(model, max_batch=1).generate(prompt, SamplingParams(temperature=0, max_new_tokens=24)))
    assert tok.decode(ids).strip()


def test_default_checkpoint_card_measures_it_against_word_counting():
    model, tok, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    chitchat = meta["scores"]["int8"]["sources"]["chitchat"]
    assert chitchat["bigram"]["perplexity"] > 1 and chitchat["trigram"]["perplexity"] > 1
    assert chitchat["gpt"]["perplexity"] < chitchat["bigram"]["perplexity"]  # the first checkpoint lost here
    change = meta["scores"]["int8"]["val_loss"]["chitchat"] - meta["scores"]["fp32"]["val_loss"]["chitchat"]
    # int8 through fbgemm costs little (its 7-bit inputs, not the weights: as served the eighth loses 0.001):
    # +0.042 on the ninth and the eighth, +0.040 on the seventh, +0.033 on the sixth, +0.018 on the fifth, +0.006 on the fourth
    assert abs(change) <= 0.05
    assert model.config.pos == "rope" and model.config.norm == "rms"
    assert all(len(tok.decode([i])) == 1 for i in tok.encode("2026"))  # digits are single tokens
    # both stages on record, also when the last run fine-tuned only (the pretraining is then under "earlier")
    assert {"pretrain", "sft"} <= {stage["stage"] for _, stage in training_stages(meta["training"])}
