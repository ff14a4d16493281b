"""The ONNX Runtime engine against the torch reference, on the committed default checkpoint.

Both run the same int8 numbers; each quantizes activations on the fly in its own way (fbgemm:
7-bit per tensor; ONNX Runtime: 8-bit per tensor), so they are compared with the exact int8 path
(x @ (q * scale).T in fp32) within a stated tolerance: every logit within TOLERANCE, and the same
greedy token wherever the reference's best token leads the second by more than 2 x TOLERANCE.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from model.engine import Engine
from model.ort_engine import OrtEngine
from model.sampling import SamplingParams
from model.tokenizer import render_prompt

TOLERANCE = 0.75  # on the default checkpoint: up to 0.52 (the fifth: ~0.2-0.3, fbgemm 0.31)
PROMPTS = ["What is your favorite food?", "What is 7 + 5?", "Tell me about the sea.", "hi"]


@pytest.fixture(scope="module")
def engines():
    exact, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT, fast_int8=False)
    return OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4), Engine(exact, max_batch=4), tok


def _check(got: np.ndarray, want: np.ndarray) -> None:
    assert np.abs(got - want).max() <= TOLERANCE
    second, best = np.sort(want)[-2:]
    if best - second > 2 * TOLERANCE:
        assert got.argmax() == want.argmax()


@pytest.mark.parametrize("text", PROMPTS)
def test_logits_follow_the_reference_through_a_greedy_answer(engines, text):
    ort_engine, reference, tok = engines
    ids = render_prompt(tok, [{"role": "user", "content": text}])
    got, want = ort_engine.prefill(0, ids), reference.prefill(0, ids).numpy()
    for _ in range(40):  # teacher-forced: both are fed the reference's greedy tokens
        _check(got, want)
        token = int(want.argmax())
        got, want = ort_engine.decode([0], [token])[0], reference.decode([0], [token])[0].numpy()
    _check(got, want)
    assert ort_engine.position(0) == reference.position(0) == len(ids) + 40
    ort_engine.release(0), reference.release(0)


def test_batched_rows_at_different_positions_and_a_gap_follow_the_reference(engines):
    """Slots 0 and 3 decode together (1 and 2 lie between, 2 holding a stream of its own)."""
    ort_engine, reference, tok = engines
    prompts = {0: "Hello! How are you today?", 2: "I like the rain.", 3: "What is 12 + 30? Tell me."}
    for slot, text in prompts.items():
        ids = tok.encode(text)
        ort_engine.prefill(slot, ids), reference.prefill(slot, ids)
    kept = ort_engine.cache[:, :, 2, :, : ort_engine.position(2)].copy()
    for step in range(12):
        tokens = [100 + step, 200 + step]
        got, want = ort_engine.decode([0, 3], tokens), reference.decode([0, 3], tokens).numpy()
        for row in range(2):
            _check(got[row], want[row])
    # the stream in slot 2 is as it was: its keys, its position, its next logits
    assert np.array_equal(ort_engine.cache[:, :, 2, :, : ort_engine.position(2)], kept)
    assert ort_engine.position(2) == reference.position(2) == len(tok.encode(prompts[2]))
    _check(ort_engine.decode([2], [5])[0], reference.decode([2], [5])[0].numpy())
    for slot in prompts:
        ort_engine.release(slot), reference.release(slot)


def test_greedy_generate_matches_the_reference_where_it_is_clear_cut(engines):
    ort_engine, reference, tok = engines
    ids = render_prompt(tok, [{"role": "user", "content": "What is your favorite food?"}])
    params = SamplingParams(temperature=0, max_new_tokens=24)
    got, want = list(ort_engine.generate(ids, params)), list(reference.generate(ids, params))
    # the answers agree up to the first step where the reference's top two are within 2 x TOLERANCE
    reference.release(0)
    logits = reference.prefill(0, ids).numpy()
    for i, token in enumerate(want):
        second, best = np.sort(logits)[-2:]
        if best - second <= 2 * TOLERANCE:
            break
        assert got[i] == token
        logits = reference.decode([0], [token])[0].numpy()
    reference.release(0)


def test_slot_and_length_errors(engines):
    ort_engine, _, _ = engines
    with pytest.raises(ValueError):
        ort_engine.prefill(0, list(range(ort_engine.block_size)))
    with pytest.raises(ValueError):
        ort_engine.prefill(4, [1, 2])
    with pytest.raises(ValueError):
        ort_engine.decode([1], [5])  # never prefilled


def test_an_fp32_checkpoint_is_refused_with_a_reason(tmp_path):
    meta = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(DEFAULT_CHECKPOINT / name)
    (tmp_path / "config.json").write_text(json.dumps({**meta, "quantization": None}))
    with pytest.raises(CheckpointError, match="int8"):
        OrtEngine.from_checkpoint(tmp_path)


def test_the_chat_function_serves_without_importing_torch():
    """The serving process: the chat app, the ONNX engine and a first answer; torch never imported."""
    code = (
        "import sys\n"
        "import functions.chat.app\n"
        "from model.ort_engine import OrtEngine\n"
        "from model.sampling import SamplingParams\n"
        "from model.config import DEFAULT_CHECKPOINT\n"
        "engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=1)\n"
        "tokens = list(engine.generate([5, 6, 7], SamplingParams(temperature=0, max_new_tokens=4)))\n"
        "print(len(tokens), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "False"


def test_the_matmulnbits_kernel_follows_the_reference_too(engines):
    """The other int8 kernel (bench/decode.py measures both) on the same numbers and tolerance."""
    _, reference, tok = engines
    nbits = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=1, matmul="nbits")
    ids = render_prompt(tok, [{"role": "user", "content": PROMPTS[0]}])
    got, want = nbits.prefill(0, ids), reference.prefill(0, ids).numpy()
    for _ in range(24):
        _check(got, want)
        token = int(want.argmax())
        got, want = nbits.decode([0], [token])[0], reference.decode([0], [token])[0].numpy()
    reference.release(0)
