import threading
import time

import pytest
import torch

from functions.chat.scheduler import Job, QueueFull, Scheduler
from model.engine import Engine, SamplingParams

GREEDY = SamplingParams(temperature=0, max_new_tokens=12)


class Collector:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.finished = threading.Event()

    def __call__(self, event) -> None:
        self.events.append(event)
        if event[0] in ("done", "error"):
            self.finished.set()

    def tokens(self) -> list[int]:
        return [v for k, v in self.events if k == "token"]


def run_jobs(model, eos_id: int, prompts: list[list[int]], max_batch: int, params=GREEDY, cancel_after=None):
    scheduler = Scheduler(Engine(model, max_batch=max_batch), eos_id, max_batch)
    collectors, jobs = [], []
    for prompt in prompts:
        collector = Collector()
        job = Job(prompt, params, params.max_new_tokens, collector)
        collectors.append(collector)
        jobs.append(job)
        scheduler.submit(job)
    for collector, job in zip(collectors, jobs, strict=True):
        if cancel_after is not None:
            while len(collector.tokens()) < cancel_after and not collector.finished.is_set():
                time.sleep(0.001)
            job.cancelled.set()
        assert collector.finished.wait(30)
    scheduler.close()
    return collectors


def reference(model, eos_id: int, prompt: list[int], params=GREEDY) -> list[int]:
    return list(Engine(model, max_batch=1).generate(prompt, params))


def test_batched_streams_equal_each_stream_alone(trained_model, tokenizer) -> None:
    prompts = [
        tokenizer.encode(text) for text in ("the cat", "hello hi thanks please", "日本語", "a dog ran on")
    ]
    collectors = run_jobs(trained_model, tokenizer.eos_id, prompts, max_batch=4)
    for prompt, collector in zip(prompts, collectors, strict=True):
        assert collector.tokens() == reference(trained_model, tokenizer.eos_id, prompt)
        assert collector.events[0][0] == "start" and isinstance(collector.events[0][1], float)
        assert collector.events[-1][0] == "done" and collector.events[-1][1] in ("eos", "length")


def test_more_streams_than_slots_wait_with_their_queue_position(trained_model, tokenizer) -> None:
    prompts = [tokenizer.encode("the cat sat") for _ in range(3)]
    collectors = run_jobs(trained_model, tokenizer.eos_id, prompts, max_batch=1)
    expected = reference(trained_model, tokenizer.eos_id, prompts[0])
    assert all(c.tokens() == expected for c in collectors)
    positions = [[v for k, v in c.events if k == "queue"] for c in collectors]
    assert positions[0] == [] and 1 in positions[1] + positions[2]
    assert positions[2][0] == 2  # third in line: two ahead of it


def test_cancelled_stream_stops_within_a_step_and_others_go_on(trained_model, tokenizer) -> None:
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=40, seed=7)
    no_eos = trained_model.config.vocab_size  # an eos id that can never be sampled keeps streams running
    collectors = run_jobs(
        trained_model, no_eos, [tokenizer.encode("the"), tokenizer.encode("a")], 2, params, cancel_after=3
    )
    for collector in collectors:
        assert collector.events[-1] == ("done", "stopped")
        assert 3 <= len(collector.tokens()) < 40


def test_length_limit_ends_with_length(trained_model, tokenizer) -> None:
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=5, seed=1)
    no_eos = trained_model.config.vocab_size
    [collector] = run_jobs(trained_model, no_eos, [tokenizer.encode("the cat")], 2, params)
    assert len(collector.tokens()) == 5 and collector.events[-1] == ("done", "length")


def test_a_failing_step_fails_its_streams_and_the_loop_survives(
    trained_model, tokenizer, monkeypatch
) -> None:
    engine = Engine(trained_model, max_batch=2)
    scheduler = Scheduler(engine, tokenizer.eos_id, 2)
    broken = Collector()
    real_prefill = engine.prefill
    monkeypatch.setattr(
        engine, "prefill", lambda slot, ids: torch.zeros(0) if ids == [999_999] else real_prefill(slot, ids)
    )
    scheduler.submit(Job([999_999], GREEDY, 5, broken))
    assert broken.finished.wait(30) and broken.events[-1][0] == "error"
    healthy = Collector()
    scheduler.submit(Job(tokenizer.encode("the cat"), GREEDY, 5, healthy))
    assert healthy.finished.wait(30) and healthy.events[-1][0] == "done"
    scheduler.close()


def test_full_queue_is_refused(trained_model, tokenizer) -> None:
    engine = Engine(trained_model, max_batch=1)
    scheduler = Scheduler(engine, trained_model.config.vocab_size, 1, max_waiting=1)
    hold = threading.Event()
    long = SamplingParams(temperature=1.0, max_new_tokens=40, seed=0)
    first = Job(tokenizer.encode("the"), long, 40, lambda e: hold.wait(5))
    scheduler.submit(first)
    time.sleep(0.05)  # let the loop admit the first job (it then blocks in its emit)
    scheduler.submit(Job(tokenizer.encode("a"), long, 40, lambda e: None))
    assert scheduler.full()
    with pytest.raises(QueueFull):
        scheduler.submit(Job(tokenizer.encode("a"), long, 40, lambda e: None))
    hold.set()
    first.cancelled.set()
    scheduler.close()


def test_close_stops_active_and_waiting_streams(trained_model, tokenizer) -> None:
    scheduler = Scheduler(Engine(trained_model, max_batch=1), trained_model.config.vocab_size, 1)
    collectors = [Collector() for _ in range(2)]
    params = SamplingParams(temperature=1.0, max_new_tokens=1000, seed=0)
    for collector in collectors:
        scheduler.submit(Job(tokenizer.encode("the"), params, 40, collector))
    scheduler.close()
    assert all(c.finished.is_set() and c.events[-1][0] == "done" for c in collectors)


def test_a_stream_stopped_while_it_waits_never_starts(trained_model, tokenizer) -> None:
    scheduler = Scheduler(Engine(trained_model, max_batch=1), tokenizer.eos_id, 1)
    params = SamplingParams(temperature=0, max_new_tokens=200, min_new_tokens=200)
    running, waiting = Collector(), Collector()
    first = Job(tokenizer.encode("the cat"), params, 200, running)
    second = Job(tokenizer.encode("a dog"), params, 200, waiting)
    scheduler.submit(first)
    while not running.tokens():
        time.sleep(0.001)
    assert scheduler.submit(second) == 1
    second.cancelled.set()  # what the generation does when its save finds the stop flag
    assert waiting.finished.wait(30)
    assert waiting.events[-1] == ("done", "stopped") and "start" not in [k for k, _ in waiting.events]
    assert not running.finished.is_set()  # the running stream goes on
    first.cancelled.set()
    assert running.finished.wait(30)
    scheduler.close()


def test_min_new_tokens_holds_eos_back(trained_model, tokenizer) -> None:
    """Call the model's first greedy token "<|eos|>": without min_new_tokens the answer is empty; with it,
    exactly min_new_tokens tokens come (that token never among them), then <|eos|> ends it."""
    prompt = tokenizer.encode("hello")
    greedy = reference(trained_model, tokenizer.eos_id, prompt)
    eos = greedy[0]
    [free] = run_jobs(trained_model, eos, [prompt], max_batch=2)
    assert free.tokens() == [] and free.events[-1] == ("done", "eos")
    held = SamplingParams(temperature=0, max_new_tokens=200, min_new_tokens=10)
    [collector] = run_jobs(trained_model, eos, [prompt], max_batch=2, params=held)
    assert len(collector.tokens()) >= 10 and eos not in collector.tokens()[:10]
    engine = Engine(trained_model, max_batch=1, eos_id=eos)
    assert collector.tokens() == list(engine.generate(prompt, held))  # the engine's own loop agrees


def test_first_tokens_are_handed_over_before_the_next_decode_step(trained_model, tokenizer) -> None:
    """A stream admitted next to running ones gets its first token (sampled from the prefill) when the
    prefill ends, not one shared decode step later: time to first token does not wait for the batch."""
    engine = Engine(trained_model, max_batch=2)
    scheduler = Scheduler(engine, tokenizer.eos_id, 2)
    flushed: list[list[tuple[str, object]]] = []
    seen_at_decode: list[list[str]] = []
    collector = Collector()
    real_decode = engine.decode

    def decode(slots, tokens):
        seen_at_decode.append([kind for batch in flushed for kind, _ in batch])
        return real_decode(slots, tokens)

    engine.decode = decode  # type: ignore[method-assign]
    pending: list[tuple[str, object]] = []

    def flush() -> None:
        flushed.append(list(pending))
        pending.clear()

    def emit(event) -> None:
        pending.append(event)
        collector(event)

    scheduler.submit(Job(tokenizer.encode("the cat"), GREEDY, 5, emit, flush=flush))
    assert collector.finished.wait(30)
    scheduler.close()
    assert seen_at_decode[0] == ["start", "token"]  # delivered before the first decode step ran
    assert [k for k, _ in collector.events] == ["start"] + ["token"] * 5 + ["done"]
