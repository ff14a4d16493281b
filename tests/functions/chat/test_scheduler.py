import threading
import time

import pytest
import torch

from functions.chat import scheduler as scheduler_module
from functions.chat.arrivals import Arrivals
from functions.chat.events import END, Done, Event, Failed, Queued, Started, Token
from functions.chat.scheduler import SHUT_DOWN, Job, QueueFull, Scheduler
from model.engine import Engine, SamplingParams
from model.loops import WordTable

GREEDY = SamplingParams(temperature=0, max_new_tokens=12)


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.finished = threading.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, END):
            self.finished.set()

    def tokens(self) -> list[int]:
        return [e.id for e in self.events if isinstance(e, Token)]


def run_jobs(model, eos_id: int, prompts: list[list[int]], max_batch: int, params=GREEDY, cancel_after=None):
    scheduler = Scheduler(Engine(model, max_batch=max_batch), eos_id, max_batch)
    collectors, jobs = [], []
    for prompt in prompts:
        collector = Collector()
        job = Job(prompt=prompt, params=params, max_new_tokens=params.max_new_tokens, emit=collector)
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


def spy_prefills(engine: Engine) -> list[list[int]]:
    """The slots of each prefill_many call the engine gets from now on."""
    calls: list[list[int]] = []
    real_prefill_many = engine.prefill_many

    def prefill_many(slots, prompts):
        calls.append(list(slots))
        return real_prefill_many(slots, prompts)

    engine.prefill_many = prefill_many  # type: ignore[method-assign]
    return calls


def reference(model, eos_id: int, prompt: list[int], params=GREEDY) -> list[int]:
    return list(Engine(model, max_batch=1).generate(prompt, params))


def test_batched_streams_equal_each_stream_alone(trained_model, tokenizer) -> None:
    prompts = [
        tokenizer.encode(text) for text in ("the cat", "hello hi thanks please", "日本語", "a dog ran on")
    ]
    collectors = run_jobs(trained_model, tokenizer.eos_id, prompts, max_batch=4)
    for prompt, collector in zip(prompts, collectors, strict=True):
        assert collector.tokens() == reference(trained_model, tokenizer.eos_id, prompt)
        assert isinstance(collector.events[0], Started) and isinstance(collector.events[0].at, float)
        assert collector.events[-1] in (Done("eos"), Done("length"))


def test_more_streams_than_slots_wait_with_their_queue_position(trained_model, tokenizer) -> None:
    prompts = [tokenizer.encode("the cat sat") for _ in range(3)]
    collectors = run_jobs(trained_model, tokenizer.eos_id, prompts, max_batch=1)
    expected = reference(trained_model, tokenizer.eos_id, prompts[0])
    assert all(c.tokens() == expected for c in collectors)
    # submit answers each its position (the second 1, the third 2: the service's first meta says so); the
    # loop tells a waiting job its position again only when it moves, not once a decode step
    positions = [[e.position for e in c.events if isinstance(e, Queued)] for c in collectors]
    assert positions == [[], [], [1]]


def test_cancelled_stream_stops_within_a_step_and_others_go_on(trained_model, tokenizer) -> None:
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=40, seed=7)
    no_eos = trained_model.config.vocab_size  # an eos id that can never be sampled keeps streams running
    collectors = run_jobs(
        trained_model, no_eos, [tokenizer.encode("the"), tokenizer.encode("a")], 2, params, cancel_after=3
    )
    for collector in collectors:
        assert collector.events[-1] == Done("stopped")
        assert 3 <= len(collector.tokens()) < 40


def test_length_limit_ends_with_length(trained_model, tokenizer) -> None:
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=5, seed=1)
    no_eos = trained_model.config.vocab_size
    [collector] = run_jobs(trained_model, no_eos, [tokenizer.encode("the cat")], 2, params)
    assert len(collector.tokens()) == 5 and collector.events[-1] == Done("length")


def test_each_token_carries_the_time_the_scheduler_produced_it(trained_model, tokenizer) -> None:
    """What the metrics time (the stream delivers tokens paced, so their arrival would time the pacing)."""
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=6, seed=3)
    began = time.perf_counter()
    [collector] = run_jobs(trained_model, trained_model.config.vocab_size, [tokenizer.encode("a")], 1, params)
    started = next(e.at for e in collector.events if isinstance(e, Started))
    times = [e.at for e in collector.events if isinstance(e, Token)]
    assert len(times) == 6 and began <= started <= times[0] <= time.perf_counter()
    assert times == sorted(times) and times[0] < times[-1]  # one decode step after another


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
    scheduler.submit(Job(prompt=[999_999], params=GREEDY, max_new_tokens=5, emit=broken))
    assert broken.finished.wait(30) and isinstance(broken.events[-1], Failed)
    healthy = Collector()
    scheduler.submit(Job(prompt=tokenizer.encode("the cat"), params=GREEDY, max_new_tokens=5, emit=healthy))
    assert healthy.finished.wait(30) and isinstance(healthy.events[-1], Done)
    scheduler.close()


def test_full_queue_is_refused(trained_model, tokenizer) -> None:
    engine = Engine(trained_model, max_batch=1)
    scheduler = Scheduler(engine, trained_model.config.vocab_size, 1, max_waiting=1)
    hold, admitted = threading.Event(), threading.Event()
    long = SamplingParams(temperature=1.0, max_new_tokens=40, seed=0)

    def blocking(event: Event) -> None:  # the loop admits the first job, then waits in its emit
        admitted.set()
        hold.wait(5)

    first = Job(prompt=tokenizer.encode("the"), params=long, max_new_tokens=40, emit=blocking)
    scheduler.submit(first)
    assert admitted.wait(30)
    scheduler.submit(Job(prompt=tokenizer.encode("a"), params=long, max_new_tokens=40, emit=lambda e: None))
    assert scheduler.full()
    with pytest.raises(QueueFull):
        scheduler.submit(
            Job(prompt=tokenizer.encode("a"), params=long, max_new_tokens=40, emit=lambda e: None)
        )
    hold.set()
    first.cancelled.set()
    scheduler.close()


def test_close_stops_active_and_waiting_streams(trained_model, tokenizer) -> None:
    scheduler = Scheduler(Engine(trained_model, max_batch=1), trained_model.config.vocab_size, 1)
    collectors = [Collector() for _ in range(2)]
    params = SamplingParams(temperature=1.0, max_new_tokens=1000, seed=0)
    for collector in collectors:
        scheduler.submit(
            Job(prompt=tokenizer.encode("the"), params=params, max_new_tokens=40, emit=collector)
        )
    scheduler.close()
    # a shutdown is no stop that anyone asked for: the answers it cuts short fail, with the reason
    assert all(c.finished.is_set() and c.events[-1] == Failed(SHUT_DOWN) for c in collectors)


def test_a_stream_stopped_while_it_waits_never_starts(trained_model, tokenizer) -> None:
    scheduler = Scheduler(Engine(trained_model, max_batch=1), tokenizer.eos_id, 1)
    params = SamplingParams(temperature=0, max_new_tokens=200, min_new_tokens=200)
    running, waiting = Collector(), Collector()
    first = Job(prompt=tokenizer.encode("the cat"), params=params, max_new_tokens=200, emit=running)
    second = Job(prompt=tokenizer.encode("a dog"), params=params, max_new_tokens=200, emit=waiting)
    scheduler.submit(first)
    while not running.tokens():
        time.sleep(0.001)
    assert scheduler.submit(second) == 1
    second.cancelled.set()  # what the generation does when its save finds the stop flag
    assert waiting.finished.wait(30)
    assert waiting.events[-1] == Done("stopped") and not any(isinstance(e, Started) for e in waiting.events)
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
    assert free.tokens() == [] and free.events[-1] == Done("eos")
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
    flushed: list[list[Event]] = []
    seen_at_decode: list[list[type]] = []
    collector = Collector()
    real_decode = engine.decode

    def decode(slots, tokens):
        seen_at_decode.append([type(event) for batch in flushed for event in batch])
        return real_decode(slots, tokens)

    engine.decode = decode  # type: ignore[method-assign]
    pending: list[Event] = []

    def flush() -> None:
        flushed.append(list(pending))
        pending.clear()

    def emit(event) -> None:
        pending.append(event)
        collector(event)

    scheduler.submit(
        Job(prompt=tokenizer.encode("the cat"), params=GREEDY, max_new_tokens=5, emit=emit, flush=flush)
    )
    assert collector.finished.wait(30)
    scheduler.close()
    assert seen_at_decode[0] == [Started, Token]  # delivered before the first decode step ran
    assert [type(e) for e in collector.events] == [Started] + [Token] * 5 + [Done]


def test_jobs_admitted_together_are_prefilled_together_into_the_lowest_free_slots(trained_model, tokenizer):
    """Prompts that wait together are admitted in one iteration and handed to the engine in one call (the
    ONNX engine shares passes between them), into the lowest free slots; a later one takes the lowest slot
    freed since. Each stream's tokens are what it gets alone."""
    engine = Engine(trained_model, max_batch=4)
    calls = spy_prefills(engine)
    scheduler = Scheduler(engine, tokenizer.eos_id, 4)
    prompts = [tokenizer.encode(text) for text in ("the cat", "hello hi thanks please", "a dog ran on")]
    collectors = [Collector() for _ in prompts]
    with scheduler._cv:  # the loop cannot admit any of them before all three wait
        for prompt, collector in zip(prompts, collectors, strict=True):
            scheduler.submit(Job(prompt=prompt, params=GREEDY, max_new_tokens=12, emit=collector))
    for collector in collectors:
        assert collector.finished.wait(30)
    assert calls == [[0, 1, 2]]
    for prompt, collector in zip(prompts, collectors, strict=True):
        assert collector.tokens() == reference(trained_model, tokenizer.eos_id, prompt)
        assert [type(e) for e in collector.events][:2] == [Started, Token]
    later = Collector()
    scheduler.submit(Job(prompt=prompts[0], params=GREEDY, max_new_tokens=3, emit=later))
    assert later.finished.wait(30)
    scheduler.close()
    assert calls[1:] == [[0]]  # all three slots were free again: the lowest one


def test_decode_steps_wait_for_requests_on_their_way_in(trained_model, tokenizer, monkeypatch) -> None:
    """While a request for an answer is still on its way in (arrivals.begin() until its end) and a slot is
    free, the running stream's decode steps wait, at most HOLD_SECONDS since its last token (long here, so
    the hold is plain to see): the arrival is admitted and prefilled meanwhile, and once it is in, both
    go on. Neither stream's tokens change."""
    monkeypatch.setattr(scheduler_module, "HOLD_SECONDS", 60.0)
    arrivals = Arrivals()
    scheduler = Scheduler(Engine(trained_model, max_batch=3), tokenizer.eos_id, 3, arrivals=arrivals)
    params = SamplingParams(temperature=0, max_new_tokens=40)
    first, second = Collector(), Collector()
    prompts = [tokenizer.encode("the cat"), tokenizer.encode("a dog ran on")]
    scheduler.submit(Job(prompt=prompts[0], params=params, max_new_tokens=40, emit=first))
    while len(first.tokens()) < 3:
        time.sleep(0.001)
    arrival = arrivals.begin()  # a request arrives: its token check, its limits, its rows
    time.sleep(0.05)  # a step under way when it arrived ends
    held = len(first.tokens())
    time.sleep(0.3)
    assert len(first.tokens()) == held < 40  # no step while it is on its way
    scheduler.submit(Job(prompt=prompts[1], params=params, max_new_tokens=40, emit=second))
    arrival.queued()  # as ChatModel.open_stream says once it has submitted
    while not second.tokens():  # admitted and prefilled at once: its first token
        time.sleep(0.001)
    time.sleep(0.1)
    # its rows are still being written, and a slot is still free for others
    assert len(first.tokens()) == held and len(second.tokens()) == 1
    arrival.end()
    arrival.end()  # counted off once
    assert arrivals.pending == 0 and arrivals.coming == 0
    assert first.finished.wait(30) and second.finished.wait(30)
    scheduler.close()
    for prompt, collector in zip(prompts, (first, second), strict=True):
        assert collector.tokens() == reference(trained_model, tokenizer.eos_id, prompt, params)


def test_a_step_is_held_only_while_it_helps(trained_model, tokenizer, monkeypatch) -> None:
    """No hold without an arrival, without a free slot for it, with a job already waiting for its slot
    (admitted first), or once a running stream's last token is HOLD_SECONDS old."""
    monkeypatch.setattr(scheduler_module, "HOLD_SECONDS", 60.0)
    arrivals = Arrivals()
    scheduler = Scheduler(Engine(trained_model, max_batch=2), tokenizer.eos_id, 2, arrivals=arrivals)
    scheduler.close()  # the predicate alone, on a loop that no longer runs
    scheduler._closed = False
    job = Job(prompt=[5], params=GREEDY, max_new_tokens=4, emit=Collector(), slot=0)
    job.last_at = time.perf_counter()
    scheduler._active = {0: job}
    scheduler._free = [1]
    assert not scheduler._hold()  # nobody on the way
    arrival = arrivals.begin()
    assert scheduler._hold()
    scheduler._free = []
    assert not scheduler._hold()  # no slot for it: it would only queue
    scheduler._free = [1]
    scheduler._waiting.append(Job(prompt=[6], params=GREEDY, max_new_tokens=4, emit=Collector()))
    assert not scheduler._hold()
    scheduler._waiting.clear()
    job.last_at -= 61.0
    assert not scheduler._hold()  # the stream has waited long enough
    arrival.end()
    job.last_at = time.perf_counter()
    assert not scheduler._hold()


def test_prompts_of_a_burst_are_gathered_and_prefilled_together(
    trained_model, tokenizer, monkeypatch
) -> None:
    """A prompt queued while another request of the same burst is still on its way to queue its own (its
    limits, its rows) waits for it, at most GATHER_SECONDS (long here, so the wait is plain to see); then
    both are prefilled in one call. Their tokens are what each gets alone."""
    monkeypatch.setattr(scheduler_module, "GATHER_SECONDS", 60.0)
    engine = Engine(trained_model, max_batch=4)
    calls = spy_prefills(engine)
    arrivals = Arrivals()
    scheduler = Scheduler(engine, tokenizer.eos_id, 4, arrivals=arrivals)
    prompts = [tokenizer.encode("the cat"), tokenizer.encode("a dog ran on")]
    collectors = [Collector(), Collector()]
    first, second = arrivals.begin(), arrivals.begin()  # two requests arrive together
    scheduler.submit(Job(prompt=prompts[0], params=GREEDY, max_new_tokens=12, emit=collectors[0]))
    first.queued()
    time.sleep(0.3)
    assert calls == [] and not collectors[0].events  # gathering: the second is still on its way
    scheduler.submit(Job(prompt=prompts[1], params=GREEDY, max_new_tokens=12, emit=collectors[1]))
    second.queued()
    for collector in collectors:
        assert collector.finished.wait(30)
    first.end(), second.end()
    scheduler.close()
    assert calls == [[0, 1]]
    for prompt, collector in zip(prompts, collectors, strict=True):
        assert collector.tokens() == reference(trained_model, tokenizer.eos_id, prompt)


def test_a_prompt_waits_for_its_burst_only_while_it_helps(trained_model, tokenizer, monkeypatch) -> None:
    """No gathering without a request still on its way to the queue, without a queued prompt, without a
    free slot left for the one on its way, or once the oldest queued prompt has waited GATHER_SECONDS."""
    monkeypatch.setattr(scheduler_module, "GATHER_SECONDS", 60.0)
    arrivals = Arrivals()
    scheduler = Scheduler(Engine(trained_model, max_batch=2), tokenizer.eos_id, 2, arrivals=arrivals)
    scheduler.close()  # the predicate alone, on a loop that no longer runs
    scheduler._closed = False
    scheduler._free = [0, 1]
    job = Job(prompt=[5], params=GREEDY, max_new_tokens=4, emit=Collector(), queued_at=time.perf_counter())
    scheduler._waiting.append(job)
    assert not scheduler._gather()  # nobody on the way
    arrival = arrivals.begin()
    assert scheduler._gather()
    scheduler._free = [1]
    assert not scheduler._gather()  # the one free slot is the queued prompt's: the other would only queue
    scheduler._free = [0, 1]
    job.queued_at -= 61.0
    assert not scheduler._gather()  # the queued prompt has waited long enough
    job.queued_at = time.perf_counter()
    arrival.queued()
    assert not scheduler._gather() and arrivals.pending == 1  # queued, its rows still being written
    scheduler._waiting.clear()
    assert not scheduler._gather()
    arrival.end()


def test_guarded_streams_batched_equal_each_alone(trained_model, tokenizer) -> None:
    """The loop guard the chat function asks for (SLM_CHAT_LOOP_GUARD_WORDS) works per stream in a batch:
    each guarded stream's tokens are the engine's guarded answer alone. The tiny model says one word twice
    ("ran ran") but never 3 words twice, so the guard here forbids any word said before (n=1), and it must
    change some answers for the test to mean anything."""
    words = WordTable(tokenizer)
    params = SamplingParams(temperature=0, max_new_tokens=24, no_repeat_ngram=1)
    prompts = [tokenizer.encode(text) for text in ("the cat", "hello hi thanks please", "a dog ran on", "we")]
    scheduler = Scheduler(Engine(trained_model, max_batch=4), tokenizer.eos_id, 4, words=words)
    collectors = [Collector() for _ in prompts]
    for prompt, collector in zip(prompts, collectors, strict=True):
        scheduler.submit(Job(prompt=prompt, params=params, max_new_tokens=24, emit=collector))
    for collector in collectors:
        assert collector.finished.wait(30)
    scheduler.close()
    unguarded = SamplingParams(temperature=0, max_new_tokens=24)
    changed = 0
    for prompt, collector in zip(prompts, collectors, strict=True):
        alone = list(Engine(trained_model, max_batch=1).generate(prompt, params, words))
        assert collector.tokens() == alone
        changed += alone != list(Engine(trained_model, max_batch=1).generate(prompt, unguarded))
    assert changed  # the guard acted: without it, some of these answers come out otherwise


def test_a_job_asking_for_a_guard_is_refused_at_submit_by_a_scheduler_without_words(
    trained_model, tokenizer
) -> None:
    """Refused before it is queued: inside a step its error would fail every stream that shares the step."""
    scheduler = Scheduler(Engine(trained_model, max_batch=1), tokenizer.eos_id, 1)
    params = SamplingParams(temperature=0, max_new_tokens=4, no_repeat_ngram=3)
    with pytest.raises(ValueError, match="loop guard"):
        scheduler.submit(
            Job(prompt=tokenizer.encode("hi"), params=params, max_new_tokens=4, emit=Collector())
        )
    assert scheduler.waiting() == 0
    scheduler.close()
