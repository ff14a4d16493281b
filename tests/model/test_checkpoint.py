import json

import pytest
import torch

from model.checkpoint import CheckpointError, export_int8, load_checkpoint, save_checkpoint
from model.gpt import GPT
from model.quant import Int8Linear
from model.tokenizer import Tokenizer


@pytest.fixture
def fp32_dir(tmp_path, trained_model, tokenizer):
    d = tmp_path / "fp32"
    save_checkpoint(d, trained_model, tokenizer, {"training": {"steps": 150}, "license": "MIT"})
    return d


def test_save_load_round_trips_weights_and_meta(fp32_dir, trained_model):
    model, tok, meta = load_checkpoint(fp32_dir)
    assert meta["training"] == {"steps": 150} and meta["license"] == "MIT"
    assert meta["quantization"] is None and meta["parameters"] == trained_model.num_params()
    for (k, a), (_, b) in zip(model.state_dict().items(), trained_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not model.training


def test_int8_export_keeps_greedy_tokens(fp32_dir, tmp_path, trained_model, tokenizer):
    config = export_int8(fp32_dir, tmp_path / "int8")
    assert config["quantization"]["scheme"] == "int8 per-row fp16 scale"
    model, _, meta = load_checkpoint(tmp_path / "int8")
    assert isinstance(model.lm_head, Int8Linear) and model.lm_head.weight.dtype == torch.int8
    assert meta["training"] == {"steps": 150}
    assert (tmp_path / "int8" / "model.safetensors").stat().st_size < 0.4 * (
        fp32_dir / "model.safetensors"
    ).stat().st_size
    prompt = torch.tensor([tokenizer.encode("the cat sat on the")])
    ref = trained_model.generate(prompt, 16, temperature=0)
    assert torch.equal(model.generate(prompt, 16, temperature=0), ref)
    # logits stay within 5% of their spread (the only error is rounding each weight row to 1/127)
    full, _ = trained_model(prompt, all_logits=True)
    q, _ = model(prompt, all_logits=True)
    assert (full - q).abs().max() < 0.05 * (full.max() - full.min())


def test_int8_export_of_int8_checkpoint_refused(fp32_dir, tmp_path):
    export_int8(fp32_dir, tmp_path / "int8")
    with pytest.raises(CheckpointError, match="already quantized"):
        export_int8(tmp_path / "int8", tmp_path / "again")


def test_load_mismatched_tokenizer_refused(fp32_dir, texts):
    Tokenizer.train(texts, vocab_size=300, show_progress=False).save(fp32_dir / "tokenizer.json")
    with pytest.raises(CheckpointError, match="tokenizer has 300 tokens, model expects 320"):
        load_checkpoint(fp32_dir)


def test_save_mismatched_tokenizer_refused(tmp_path, tiny_config, texts):
    tok = Tokenizer.train(texts, vocab_size=300, show_progress=False)
    with pytest.raises(CheckpointError, match="tokenizer has 300 tokens"):
        save_checkpoint(tmp_path, GPT(tiny_config), tok, {})


def test_load_missing_folder_or_file_says_what(tmp_path, fp32_dir):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_checkpoint(tmp_path / "nope")
    (fp32_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(fp32_dir)


def test_load_corrupt_files_says_which(fp32_dir):
    (fp32_dir / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(fp32_dir)
    (fp32_dir / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_checkpoint(fp32_dir)


def test_load_weights_of_other_shape_refused(fp32_dir):
    config = json.loads((fp32_dir / "config.json").read_text())
    config["model"]["n_embd"] = 64
    (fp32_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(fp32_dir)
