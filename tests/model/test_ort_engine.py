"""The ONNX Runtime engine against the torch reference, on the committed default checkpoint.

Both run the same int8 numbers; each quantizes activations on the fly in its own way (fbgemm:
7-bit per tensor; ONNX Runtime: 8-bit per tensor), so they are compared with the exact int8 path
(x @ (q * scale).T in fp32) within a stated tolerance: every logit within TOLERANCE, and the same
greedy token wherever the reference's best token leads the second by more than 2 x TOLERANCE.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from model import ort_engine
from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from model.engine import Engine
from model.ort_engine import (
    KERNELS,
    PAD_ALLOWANCE,
    PASS_POSITIONS,
    SMALL_PASS,
    OrtEngine,
    cached_graphs,
    main,
    prefill_passes,
    trusted,
)
from model.sampling import SamplingParams
from model.tokenizer import render_prompt

TOLERANCE = 0.75  # on the default checkpoint: up to 0.52 (the fifth: ~0.2-0.3, fbgemm 0.31)
PROMPTS = ["What is your favorite food?", "What is 7 + 5?", "Tell me about the sea.", "hi"]


@pytest.fixture(scope="module")
def engines():
    exact, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT, fast_int8=False)
    engine = OrtEngine.from_checkpoint(
        DEFAULT_CHECKPOINT, max_batch=4, small_pass=SMALL_PASS
    )  # as on any CPU
    return engine, Engine(exact, max_batch=4), tok


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


def test_a_head_size_the_attention_kernel_cannot_run_is_refused_with_a_reason(tmp_path):
    meta = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(DEFAULT_CHECKPOINT / name)
    (tmp_path / "config.json").write_text(json.dumps({**meta, "model": {**meta["model"], "n_head": 64}}))
    with pytest.raises(CheckpointError, match="multiple of 16, not 8"):
        OrtEngine.from_checkpoint(tmp_path)


def test_the_served_loss_of_the_default_checkpoint_is_the_exact_int8_loss(engines):
    """model.evaluate's "int8 as served": held-out-style rows fed one token a pass through the served
    engine score as the exact int8 weights do (its activation rounding costs next to nothing)."""
    from model.evaluate import eval_rows, gpt_nats, served_losses, served_nats

    _, reference, tok = engines
    chats = [
        [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        for q, a in [
            ("Hi! How are you today?", "I'm doing well, thanks. How about you?"),
            ("What do you like to do on weekends?", "I like to go hiking and read books."),
            ("Do you have any pets?", "Yes, I have a dog named Max. He loves to play fetch."),
        ]
    ] * 12
    rows, masks = eval_rows(tok, chats, 384, 4)
    exact, count = gpt_nats(reference.model, rows, masks, 4)
    engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=SMALL_PASS, small_pass=SMALL_PASS)
    served, served_count = served_nats(engine, rows, masks)
    assert served_count == count > 100 and abs(served / count - exact / count) < 0.01
    assert served_losses(DEFAULT_CHECKPOINT, tok, {"chat": chats}, 4) == {"chat": round(served / count, 4)}


def test_the_chat_function_serves_without_importing_torch():
    """The serving process: the chat app, the ONNX engine and a first answer; torch never imported."""
    code = (
        "import sys\n"
        "import functions.chat.app\n"
        "from model.ort_engine import KERNELS, SMALL_PASS, OrtEngine, cached_graphs, main, trusted\n"
        "from model.sampling import SamplingParams\n"
        "from model.config import DEFAULT_CHECKPOINT\n"
        "engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=1)\n"
        "tokens = list(engine.generate([5, 6, 7], SamplingParams(temperature=0, max_new_tokens=4)))\n"
        "print(len(tokens), 'torch' in sys.modules, 'onnx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # nor onnx (0.6 s and 18 MB): the graphs are built into the cache by a child process, then loaded
    assert out.split()[-2:] == ["False", "False"]


@pytest.mark.parametrize("kernel", ["nbits", "dq"])
def test_each_int8_kernel_alone_follows_the_reference_too(engines, kernel):
    """Each kernel for every pass (bench/decode.py measures them apart) on the same numbers and tolerance."""
    _, reference, tok = engines
    engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=1, matmul=kernel)
    assert list(engine.sessions) == [kernel]
    _follows_greedily(engine, reference, render_prompt(tok, [{"role": "user", "content": PROMPTS[0]}]), 24)


def _follows_greedily(engine: OrtEngine, reference: Engine, ids: list[int], steps: int) -> None:
    """Prefill slot 0 of both with ids, then `steps` greedy tokens (the reference's), every logit checked."""
    got, want = engine.prefill(0, ids), reference.prefill(0, ids).numpy()
    for _ in range(steps):
        _check(got, want)
        token = int(want.argmax())
        got, want = engine.decode([0], [token])[0], reference.decode([0], [token])[0].numpy()
    reference.release(0)


class _Runs:
    """Counts the passes each of an engine's sessions runs."""

    def __init__(self, engine: OrtEngine) -> None:
        self.counts = dict.fromkeys(engine.sessions, 0)
        for kernel, session in engine.sessions.items():
            session.run_with_iobinding = self._counting(kernel, session.run_with_iobinding)

    def _counting(self, kernel, run):
        def counted(*args, **kwargs):
            self.counts[kernel] += 1
            return run(*args, **kwargs)

        return counted


def test_each_pass_takes_the_kernel_that_is_faster_for_its_size(tmp_path):
    """MatMulNBits for a pass of up to SMALL_PASS rows (one to three streams decoding), DynamicQuantizeMatMul
    for prefills and larger batches; both sessions write the one cache, so a stream moves between them."""
    engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=6, cache=tmp_path, small_pass=3)
    assert sorted(engine.sessions) == ["dq", "nbits"] and engine.small_pass == 3
    runs = _Runs(engine)
    for slot in range(6):
        engine.prefill(slot, [5, 6, 7, 8, slot + 9])  # 5 rows
    assert runs.counts == {"dq": 6, "nbits": 0}
    engine.decode([0], [10]), engine.decode([0, 1, 2], [10, 11, 12])
    assert runs.counts == {"dq": 6, "nbits": 2}
    engine.decode([0, 3], [11, 13])  # slots 0..3: a span of 4 rows (1 and 2 fed dummies)
    engine.decode(list(range(6)), [14] * 6)
    assert runs.counts == {"dq": 8, "nbits": 2}
    engine.release(0)
    engine.prefill(0, [5, 6])  # a 2-token prompt: 2 rows
    assert runs.counts == {"dq": 8, "nbits": 3}


def test_a_dropped_kernel_leaves_every_pass_to_the_other(tmp_path, engines):
    """drop closes a kernel's session and its bindings (a CPU where it wins no size); the other kernel then
    takes every pass, within the tests' bound of the reference; the last session cannot be dropped."""
    _, reference, tok = engines
    engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=2, cache=tmp_path, small_pass=3)
    ids = render_prompt(tok, [{"role": "user", "content": PROMPTS[1]}])
    engine.prefill(0, ids), engine.decode([0], [5])  # a binding in each session
    assert {key[0] for key in engine._bindings} == {"dq", "nbits"}
    engine.drop("nbits")
    assert list(engine.sessions) == ["dq"] and {key[0] for key in engine._bindings} == {"dq"}
    runs = _Runs(engine)
    engine.release(0)
    _follows_greedily(engine, reference, ids, 8)
    assert runs.counts == {"dq": 9}
    for kernel in ("dq", "nbits"):
        with pytest.raises(ValueError):
            engine.drop(kernel)
    # a size of 0 asked of an engine of MatMulNBits alone keeps it: its one session takes every pass
    alone = OrtEngine.from_checkpoint(
        DEFAULT_CHECKPOINT, max_batch=1, cache=tmp_path, matmul="nbits", small_pass=0
    )
    assert list(alone.sessions) == ["nbits"] and alone.kernel(1) == "nbits"


def test_which_passes_are_small_is_measured_once_on_each_cpu_and_kept_beside_the_graphs(
    tmp_path, monkeypatch
):
    """A first start (graphs built into a writable cache) times both kernels at MEASURED_SIZES rows and
    keeps the answer beside the graphs; later starts read it; a read-only cache measured on another CPU
    (an image run elsewhere) keeps SMALL_PASS without measuring; a size given is used as given."""
    monkeypatch.setattr(ort_engine, "host_busy", lambda: None)  # however busy the machine running the tests
    cache = tmp_path / "cache"
    first = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=6, cache=cache)
    record = ort_engine.small_pass_record(cached_graphs(DEFAULT_CHECKPOINT, KERNELS, cache))
    assert record is not None and record.parent == cache
    kept = json.loads(record.read_text())
    medians = kept["median_ms_by_rows"]
    sizes = [n for n in ort_engine.MEASURED_SIZES if n <= 6]  # up to the engine's slots
    assert sizes == [1, 2, 3, 4, 6]
    timed = sorted(int(n) for n in medians)
    assert all(sorted(m) == ["dq", "nbits"] and min(m.values()) > 0 for m in medians.values())
    # the rule: the last size of the leading run of sizes where MatMulNBits was faster (0: none); timed up
    # to the first size where it was not, or all of them
    faster = [medians[str(n)]["nbits"] < medians[str(n)]["dq"] for n in timed]
    leading = (faster + [False]).index(False)
    assert timed == sizes[: leading + 1] or (timed == sizes and all(faster))
    assert kept["small_pass"] == first.small_pass == ([0, *timed][leading])
    # a CPU where MatMulNBits wins no size keeps no session of it (~30 MB)
    assert sorted(first.sessions) == (["dq"] if first.small_pass == 0 else ["dq", "nbits"])
    assert all(first.position(s) == 0 for s in range(6))  # the slots it measured on are empty again
    assert first._bindings == {}  # nor does it keep the passes' buffers

    def measured(engine):
        raise AssertionError("measured again")

    monkeypatch.setattr(ort_engine, "measure_small_pass", measured)
    record.write_text(json.dumps({**kept, "small_pass": 0}))  # as if DynamicQuantizeMatMul had won at 1 row
    again = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=6, cache=cache)
    runs = _Runs(again)
    again.prefill(0, [5, 6])
    again.decode([0], [7])
    assert again.small_pass == 0 and runs.counts == {"dq": 2}  # no MatMulNBits session was even loaded
    assert (
        OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=6, cache=cache, small_pass=2).small_pass == 2
    )
    # another CPU, the cache read-only (an image's): the default, nothing measured or written
    monkeypatch.setattr(ort_engine, "cpu_identity", lambda: "model name : another CPU")
    monkeypatch.setattr(ort_engine, "_writable", lambda folder: False)  # as the image's user finds it
    elsewhere = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=6, cache=cache)
    assert elsewhere.small_pass == SMALL_PASS and sorted(cache.glob("*.json")) == [record]


def test_an_unreadable_measurement_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setattr(ort_engine, "host_busy", lambda: None)
    cache = tmp_path / "cache"
    OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4, cache=cache)
    record = ort_engine.small_pass_record(cached_graphs(DEFAULT_CHECKPOINT, KERNELS, cache))
    assert record is not None
    for bad in ("not json", '{"small_pass": 99}', '{"small_pass": "3"}', '{"small_pass": true}', "[]"):
        record.write_text(bad)
        assert ort_engine.read_small_pass(record) is None
        engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4, cache=cache)
        assert ort_engine.read_small_pass(record) == engine.small_pass
    # an engine of fewer slots than the sizes measured keeps the default and leaves no record
    record.unlink()
    assert OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=2, cache=cache).small_pass == SMALL_PASS
    assert not record.exists()


def test_prompts_that_arrive_together_share_passes_and_follow_the_reference(engines):
    """Four prompts of different lengths into slots given out of order: two passes (the fourth would pad
    the others past the allowance), each row's logits at its own last token, then decoded together."""
    _, reference, tok = engines
    engine = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4)
    texts = [
        "hi",
        "What is 7 + 5?",
        "Tell me about the sea, and the sky and the boats on it please.",
        PROMPTS[0],
    ]
    prompts = [render_prompt(tok, [{"role": "user", "content": text}]) for text in texts]
    slots = [3, 1, 2, 0]
    assert prefill_passes([(s, len(p)) for s, p in zip(slots, prompts, strict=True)]) == [[3, 1, 2], [0]]
    runs = _Runs(engine)
    got, want = engine.prefill_many(slots, prompts), reference.prefill_many(slots, prompts).numpy()
    assert sum(runs.counts.values()) == 2
    assert [engine.position(s) for s in slots] == [len(p) for p in prompts]
    for _ in range(12):
        for row in range(4):
            _check(got[row], want[row])
        tokens = [int(t) for t in want.argmax(1)]
        got, want = engine.decode(slots, tokens), reference.decode(slots, tokens).numpy()
    for slot in slots:
        reference.release(slot)
    with pytest.raises(ValueError, match="distinct"):
        engine.prefill_many([0, 0], [[5], [6]])
    with pytest.raises(ValueError):
        engine.prefill_many([0, 1], [[5], []])


def test_prefill_passes_cover_consecutive_slots_within_the_padding_and_size_bounds():
    assert prefill_passes([(0, 10), (1, 12), (2, 9)]) == [[0, 1, 2]]
    assert prefill_passes([(0, 10), (2, 12)]) == [[0], [1]]  # slot 1 lies between: not one span
    assert prefill_passes([(5, 10), (4, 12)]) == [[1, 0]]  # by slot, whatever the order given
    # padding: up to PAD_ALLOWANCE positions for short prompts, a quarter of their tokens for long ones
    assert prefill_passes([(0, 1), (1, 1 + PAD_ALLOWANCE)]) == [[0, 1]]
    assert prefill_passes([(0, 1), (1, 2 + PAD_ALLOWANCE)]) == [[0], [1]]
    assert prefill_passes([(0, 200), (1, 240)]) == [[0, 1]]  # 40 padded of 440
    assert prefill_passes([(0, 100), (1, 240)]) == [[0], [1]]
    # no pass computes more than PASS_POSITIONS positions, but a prompt longer than that still goes
    assert prefill_passes([(0, 200), (1, 200), (2, 200)]) == [[0, 1], [2]]
    assert PASS_POSITIONS < 600 and prefill_passes([(0, 600)]) == [[0]]
    assert prefill_passes([]) == []


def test_graphs_are_built_once_into_the_cache_and_rebuilt_when_the_checkpoint_changes(tmp_path):
    checkpoint, cache = tmp_path / "ckpt", tmp_path / "cache"
    checkpoint.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (checkpoint / name).write_bytes((DEFAULT_CHECKPOINT / name).read_bytes())
    first = cached_graphs(checkpoint, KERNELS, cache)
    assert all(isinstance(path, Path) and path.parent == cache for path in first.values())
    assert sorted(p.name.split("-")[1] for p in cache.glob("*.onnx")) == ["dq", "nbits"]
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert cached_graphs(checkpoint, KERNELS, cache) == first  # found, not built again
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    meta = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**meta, "name": "changed"}))
    second = cached_graphs(checkpoint, ["dq"], cache)
    assert second["dq"] != first["dq"] and second["dq"].is_file()
    # the engine serves from the files alone
    engine = OrtEngine.from_checkpoint(checkpoint, max_batch=1, matmul="dq", cache=cache)
    assert engine.prefill(0, [5, 6, 7]).shape == (meta["model"]["vocab_size"],)


def test_without_a_writable_cache_the_graph_goes_to_the_temp_folder_or_memory(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    graphs = cached_graphs(DEFAULT_CHECKPOINT, ["dq"], blocked / "cache")
    assert graphs["dq"].parent == tmp_path / "tmp" / f"slm-onnx-{os.getuid()}"
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(blocked))  # nowhere writable
    in_memory = cached_graphs(DEFAULT_CHECKPOINT, ["nbits"], blocked / "cache")
    assert isinstance(in_memory["nbits"], bytes) and len(in_memory["nbits"]) > 30_000_000


def test_no_timing_is_kept_from_a_busy_host(tmp_path, monkeypatch, caplog):
    """Kernels timed while other work keeps the host busy can rank them wrongly for good. A start that finds
    the host busy takes the default without timing (the ~0.3 s of it is cold start); one that grew busy
    while it timed uses the timing but keeps no record; each says why; the next start on a quiet host
    measures and keeps it."""
    loads = iter([(3.9, 3.0, 2.5), (0.2, 0.3, 0.4), (3.0, 1.0, 1.0), (0.2, 0.3, 0.4), (0.2, 0.3, 0.4)])
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    timed: list[int] = []
    real = ort_engine.measure_small_pass
    monkeypatch.setattr(ort_engine, "measure_small_pass", lambda e: timed.append(1) or real(e))
    cache = tmp_path / "cache"
    with caplog.at_level("WARNING", logger=ort_engine.log.name):
        busy = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4, cache=cache)
    record = ort_engine.small_pass_record(cached_graphs(DEFAULT_CHECKPOINT, KERNELS, cache))
    assert record is not None and not record.exists()
    assert (busy.small_pass, timed) == (ort_engine.SMALL_PASS, [])
    assert "not timed beside other work (a load average of 3.9 on 2 CPUs)" in caplog.text
    with caplog.at_level("WARNING", logger=ort_engine.log.name):
        grew_busy = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4, cache=cache)
    assert grew_busy.small_pass in range(5) and timed == [1] and not record.exists()
    assert "timed beside other work (a load average of 3.0 on 2 CPUs): not kept" in caplog.text
    quiet = OrtEngine.from_checkpoint(DEFAULT_CHECKPOINT, max_batch=4, cache=cache)
    assert ort_engine.read_small_pass(record) == quiet.small_pass and timed == [1, 1]
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert ort_engine.host_busy() == "a load average of 1.5 on 2 CPUs"  # BUSY_LOAD of 2 CPUs
    monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 9.0, 9.0))
    assert ort_engine.host_busy() is None  # the last minute's load, not the last 5 or 15
    monkeypatch.setattr(os, "getloadavg", lambda: (_ for _ in ()).throw(OSError("unavailable")))
    assert ort_engine.host_busy() is None


def test_the_build_command_fills_a_cache_that_the_engine_then_reads(tmp_path, capsys, monkeypatch):
    """Both graphs and this CPU's measured small-pass size, each file printed, readable by the service's
    own user (the image builds them as root)."""
    monkeypatch.setattr(ort_engine, "host_busy", lambda: None)
    main(["--build", str(DEFAULT_CHECKPOINT), "--cache", str(tmp_path)])
    printed = [Path(p) for p in capsys.readouterr().out.split()]
    assert sorted(p.name for p in printed) == sorted(p.name for p in tmp_path.iterdir())
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in printed)
    graphs = cached_graphs(DEFAULT_CHECKPOINT, KERNELS, tmp_path)
    assert graphs == {p.name.split("-")[1]: p for p in printed if p.suffix == ".onnx"}
    record = ort_engine.small_pass_record(graphs)
    assert record in printed and ort_engine.read_small_pass(record) is not None


def test_a_long_prompt_gives_its_freed_memory_back(monkeypatch, engines):
    """A prefill of TRIM_AFTER tokens or more is followed by a malloc_trim (its intermediates left holes in
    the heap: 8 full windows took 305 MB, 274 MB with it); a short one is not (it would cost more than it
    frees)."""
    engine, _, tok = engines
    trims = []
    monkeypatch.setattr(ort_engine, "_give_back_freed_memory", lambda: trims.append(1))
    engine.prefill(0, [5] * (ort_engine.TRIM_AFTER - 1))
    assert trims == []
    engine.release(0)
    engine.prefill(0, [5] * ort_engine.TRIM_AFTER)
    assert trims == [1]
    engine.release(0)


def test_a_graph_in_a_folder_others_may_write_is_never_loaded(tmp_path, monkeypatch):
    """A shared temp folder: a graph someone else could have put there is rebuilt, not run."""
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    shared = tmp_path / "cache"
    first = cached_graphs(DEFAULT_CHECKPOINT, ["dq"], shared)["dq"]
    assert first.parent == shared and trusted(shared)
    shared.chmod(0o777)  # now anyone may write there
    assert not trusted(shared)
    again = cached_graphs(DEFAULT_CHECKPOINT, ["dq"], shared)["dq"]
    assert again.parent == tmp_path / "tmp" / f"slm-onnx-{os.getuid()}"  # built again where only we write


def test_a_corrupt_weights_file_is_a_checkpoint_error_before_anything_is_built(tmp_path):
    for name in ("tokenizer.json", "config.json"):
        (tmp_path / name).write_bytes((DEFAULT_CHECKPOINT / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        OrtEngine.from_checkpoint(tmp_path, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
