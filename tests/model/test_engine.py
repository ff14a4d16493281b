import pytest
import torch

from model.engine import Engine, SamplingParams, TextStreamer, cpu_budget
from model.tokenizer import render_prompt

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=20)


def test_cached_generate_equals_plain_generate_greedy(trained_model, tokenizer):
    ids = render_prompt(tokenizer, [{"role": "user", "content": "the cat sat on"}])
    ref = trained_model.generate(torch.tensor([ids]), 20, temperature=0)[0, len(ids) :].tolist()
    if tokenizer.eos_id in ref:
        ref = ref[: ref.index(tokenizer.eos_id)]
    engine = Engine(trained_model, max_batch=2, eos_id=tokenizer.eos_id)
    assert list(engine.generate(ids, GREEDY)) == ref


def test_cached_logits_match_full_forward(trained_model, tiny_config):
    torch.manual_seed(0)
    seq = torch.randint(4, tiny_config.vocab_size, (1, 30))
    full, _ = trained_model(seq, all_logits=True)  # (1, 30, V)
    engine = Engine(trained_model, max_batch=1)
    logits = [engine.prefill(0, seq[0, :10].tolist())]
    for t in range(10, 30):
        logits.append(engine.decode([0], [int(seq[0, t])])[0])
    assert torch.allclose(torch.stack(logits), full[0, 9:], atol=1e-4)
    assert engine.position(0) == 30


def test_batched_decode_at_different_positions_equals_each_alone(trained_model, tiny_config):
    torch.manual_seed(1)
    prompts = [torch.randint(4, tiny_config.vocab_size, (n,)).tolist() for n in (3, 11, 7, 20)]
    steps = 8

    def run_alone(prompt):
        engine = Engine(trained_model, max_batch=1)
        logits, out = engine.prefill(0, prompt), []
        for _ in range(steps):
            out.append(logits)
            logits = engine.decode([0], [int(logits.argmax())])[0]
        return torch.stack(out)

    alone = [run_alone(p) for p in prompts]
    engine = Engine(trained_model, max_batch=6)
    slots = [5, 0, 3, 2]  # not contiguous, not in order: the gather path
    last = torch.stack([engine.prefill(s, p) for s, p in zip(slots, prompts, strict=True)])
    together = [[] for _ in prompts]
    for _ in range(steps):
        for i, row in enumerate(last):
            together[i].append(row)
        last = engine.decode(slots, [int(row.argmax()) for row in last])
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a.argmax(-1), torch.stack(b).argmax(-1))
        assert torch.allclose(a, torch.stack(b), atol=1e-4)
    assert [engine.position(s) for s in slots] == [len(p) + steps for p in prompts]


def test_contiguous_slots_decode_equals_gather(trained_model, tiny_config):
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    out = []
    for slots in ([0, 1], [1, 0]):
        engine = Engine(trained_model, max_batch=2)
        for s, p in zip(slots, prompts, strict=True):
            engine.prefill(s, p)
        out.append(engine.decode(slots, [20, 21]))
    assert torch.allclose(out[0], out[1], atol=1e-5)


def test_prefill_rejects_prompt_filling_the_window(trained_model, tiny_config):
    engine = Engine(trained_model, max_batch=1)
    with pytest.raises(ValueError, match="caller trims"):
        engine.prefill(0, [5] * tiny_config.block_size)
    with pytest.raises(ValueError):
        engine.prefill(0, [])
    with pytest.raises(ValueError, match="slot 3 out of range"):
        engine.prefill(3, [5])


def test_decode_unfilled_or_full_slot_raises(trained_model, tiny_config):
    engine = Engine(trained_model, max_batch=2)
    with pytest.raises(ValueError, match="prefill it"):
        engine.decode([1], [5])
    engine.prefill(0, [5] * (tiny_config.block_size - 1))
    engine.decode([0], [5])
    with pytest.raises(ValueError, match="full"):
        engine.decode([0], [5])
    engine.release(0)
    assert engine.position(0) == 0


def test_generate_stops_at_context_end(trained_model, tiny_config):
    engine = Engine(trained_model, max_batch=1, eos_id=-1)  # no eos: only the window can stop it
    prompt = [5] * (tiny_config.block_size - 4)
    out = list(engine.generate(prompt, SamplingParams(temperature=1.0, max_new_tokens=100, seed=0)))
    assert len(out) == 5  # 4 tokens fill the cache, the 5th is sampled from the last position
    assert engine.position(0) == tiny_config.block_size


def test_generate_seed_reproducible(trained_model):
    engine = Engine(trained_model, max_batch=1, eos_id=-1)
    params = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=15, seed=42)
    a, b = list(engine.generate([5, 6], params)), list(engine.generate([5, 6], params))
    c = list(
        engine.generate(
            [5, 6], SamplingParams(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=15, seed=7)
        )
    )
    assert a == b and len(a) == 15 and a != c


@pytest.mark.parametrize("text", ["héllo wörld 🙂🚀 日本語 👍🏽 café", "🎉🎉🎉", "中文你好"])
def test_streamer_never_splits_a_character(tokenizer, text):
    ids = tokenizer.encode(text)
    streamer = TextStreamer(tokenizer)
    pieces = [streamer.put(i) for i in ids] + [streamer.end()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    # some characters span several tokens, so some puts must have waited
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)


def test_cpu_budget_reads_cgroup_v2(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_budget(tmp_path, environ={}, affinity=8) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_budget(tmp_path, environ={}, affinity=8) == 8


def test_cpu_budget_reads_cgroup_v1(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_budget(tmp_path, environ={}, affinity=4) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_budget(tmp_path, environ={}, affinity=4) == 4


def test_cpu_budget_follows_lambda_memory(tmp_path):
    assert cpu_budget(tmp_path, environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3538"}, affinity=6) == 2
    assert cpu_budget(tmp_path, environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"}, affinity=6) == 1
    assert cpu_budget(tmp_path, environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"}, affinity=2) == 2
    assert cpu_budget(tmp_path, environ={}, affinity=None) >= 1


def test_the_cpu_is_described_by_its_name_and_widest_matrix_instructions(tmp_path):
    from model.runtime import cpu_description

    def described(flags: str) -> str:
        (tmp_path / "cpuinfo").write_text(
            f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu {flags}\n\n"
        )
        return cpu_description(tmp_path / "cpuinfo")

    assert described("avx2 fma") == "AMD EPYC (AVX2)"
    assert described("avx2 avx512f avx512_vnni avx512_bf16") == "AMD EPYC (AVX-512 VNNI)"
    assert described("avx2 avx512f amx_tile amx_int8") == "AMD EPYC (AMX)"
    assert described("sse2") == "AMD EPYC"
