"""The serving loop: one thread owns the model and batches every active stream's decode step.

Requests wait in a queue until a KV-cache slot is free; each loop iteration prefills the prompts
admitted since the last one (together: the engine shares passes between them) and hands their first
tokens over at once, then runs ONE batched decode step for all active streams, so 8 streams cost far
less than 8 sequential generations. A stream takes the lowest free slot: the active slots stay packed,
so the engine's passes (a span of slots) compute few idle rows. While requests for an answer are still
on their way in (functions/chat/arrivals.py) and a slot is free, decode steps wait for them, at most
HOLD_SECONDS since the last step: their first tokens do not wait for the running streams' steps. Events
go back to each request's asyncio loop thread-safely, in one hand-off per step.
"""

import heapq
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from functions.chat.arrivals import Arrivals
from functions.chat.events import Done, Event, Failed, Queued, Started, Token
from model.loops import RepeatGuard, WordTable, forbid_repeats
from model.sampling import SamplingParams, forbid_eos, new_generator, repeat_guard, sample_next_token

log = logging.getLogger("slm.chat")
HOLD_SECONDS = 0.025  # the longest the running streams' next step waits for arrivals (40 steps/s at worst)
HOLD_POLL_SECONDS = 0.002  # how often a held step looks whether the arrivals are in
SHUT_DOWN = "the server shut down before the answer ended"  # what close() fails the streams left with
GATHER_SECONDS = 0.02  # the longest a queued prompt waits for the prompts of a burst still on their way


@dataclass(kw_only=True)
class Job:
    prompt: list[int]
    params: SamplingParams
    max_new_tokens: int
    emit: Callable[[Event], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    slot: int = -1
    generated: int = 0
    last_token: int = -1
    last_at: float = 0.0  # time.perf_counter() when its last token was produced
    queued_at: float = 0.0  # time.perf_counter() when it was submitted
    generator: np.random.Generator | None = None
    guard: RepeatGuard | None = None  # params.no_repeat_ngram's loop guard: the answer's words so far
    finished: bool = False
    # called once after each scheduler step that emitted to this job: delivers what emit buffered
    flush: Callable[[], None] | None = None
    owner: int | None = None  # whose share of the scheduler this job takes (a user id)
    # the queue position its client was last told (submit's answer, then each change): a client hears of
    # a new position once, not once a decode step
    position: int = -1


class QueueFull(Exception):
    pass


class OwnerFull(Exception):
    """The job's owner already has max_per_owner jobs in flight or queued."""


class Scheduler:
    def __init__(
        self,
        engine: Any,
        eos_id: int,
        max_batch: int,
        max_waiting: int = 64,
        max_per_owner: int | None = None,
        arrivals: Arrivals | None = None,
        words: WordTable | None = None,
    ) -> None:
        self.engine, self.eos_id, self.max_batch, self.max_waiting = engine, eos_id, max_batch, max_waiting
        self.words = words  # the tokenizer's words, for the loop guard of jobs that ask for one
        self.arrivals = arrivals  # requests on their way in: decode steps wait for them (see _hold)
        self.max_per_owner = max_per_owner  # one owner's jobs in flight and queued: a fair share
        self._owned: Counter[int] = Counter()
        self._waiting: deque[Job] = deque()
        self._active: dict[int, Job] = {}
        self._free = list(range(max_batch))  # a heap: the lowest free slot first
        self._cv = threading.Condition()
        self._closed = False
        self._to_flush: dict[Callable[[], None], None] = {}  # this step's flushes, each once, in order
        self._thread = threading.Thread(target=self._run, name="slm-scheduler", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> int:
        """Queue a job; returns its queue position (0 = a slot is free, it starts at once). QueueFull when
        the queue is full, OwnerFull when the job's owner has its share in flight or queued already."""
        # the loop guard is made here: its error must not fail a step that other streams share
        job.guard = repeat_guard(job.params, self.words)
        with self._cv:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull
            if job.owner is not None and self.max_per_owner is not None:
                if self._owned[job.owner] >= self.max_per_owner:
                    raise OwnerFull
                self._owned[job.owner] += 1
            job.queued_at = time.perf_counter()
            self._waiting.append(job)
            position = 0 if len(self._waiting) <= len(self._free) else len(self._waiting) - len(self._free)
            job.position = position
            self._cv.notify()
        return position

    def close(self) -> None:
        """Stop the loop thread after its current step. Streams still active or queued fail (their answers
        are saved as "error", as DESIGN saves every failure): nobody asked them to stop."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    @property
    def closed(self) -> bool:
        return self._closed

    def waiting(self) -> int:
        """Jobs waiting for a slot."""
        return len(self._waiting)

    def active(self) -> int:
        """Jobs being generated."""
        return len(self._active)

    def full(self) -> bool:
        with self._cv:
            return len(self._waiting) >= self.max_waiting

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._active and not self._closed:
                    self._cv.wait()
                while self._hold() or self._gather():
                    self._cv.wait(HOLD_POLL_SECONDS)  # a submit wakes it at once
                if self._closed:
                    break
                stopped = [job for job in self._waiting if job.cancelled.is_set()]  # a stop while queued
                for job in stopped:
                    self._waiting.remove(job)
                admitted = []
                while self._waiting and self._free:
                    job = self._waiting.popleft()
                    job.slot = heapq.heappop(self._free)
                    admitted.append(job)
                for position, job in enumerate(self._waiting, start=1):
                    if job.position != position:
                        job.position = position
                        self._emit(job, Queued(position))
            for job in stopped:
                self._finish(job, "stopped")
            try:
                self._prefill(admitted)
                if admitted and self._active:  # their first tokens go out now, not after the next step
                    self._flush()
                if not self._hold():  # more on their way: the next iteration waits for them first
                    self._decode_step()
            except Exception as exc:  # a failed step must not kill the loop: fail the affected streams
                log.exception("generation step failed")
                for job in list(self._active.values()) + admitted:
                    self._finish(job, "error", f"generation failed: {type(exc).__name__}: {exc}")
            self._flush()
        for job in list(self._active.values()) + list(self._waiting):
            self._finish(job, "error", SHUT_DOWN)
        self._flush()

    def _hold(self) -> bool:
        """Whether the next decode step waits: requests are on their way in, a slot is free for them, none
        is waiting already (it is admitted first), and no running stream's last token is HOLD_SECONDS old."""
        return (
            self.arrivals is not None
            and self.arrivals.pending > 0
            and bool(self._active)
            and not self._closed
            and not self._waiting
            and bool(self._free)
            and time.perf_counter() - min(job.last_at for job in self._active.values()) < HOLD_SECONDS
        )

    def _gather(self) -> bool:
        """Whether the queued prompts wait before they are prefilled: requests of the same burst are still
        on their way to queue theirs (their limits, their rows), a free slot is left for one of them, and
        the oldest queued prompt has waited less than GATHER_SECONDS. The prompts are then prefilled in
        shared passes (8 short prompts together take about half the time of 8 one after another), not
        one pass each, every one of which takes the cores the burst's request paths need."""
        return (
            self.arrivals is not None
            and self.arrivals.coming > 0
            and bool(self._waiting)
            and not self._closed
            and len(self._free) > len(self._waiting)
            and time.perf_counter() - self._waiting[0].queued_at < GATHER_SECONDS
        )

    def _emit(self, job: Job, event: Event) -> None:
        job.emit(event)
        if job.flush is not None:
            self._to_flush[job.flush] = None

    def _flush(self) -> None:
        """The end of a step: each event loop that was sent events gets them in one wake-up."""
        flushes, self._to_flush = self._to_flush, {}
        for flush in flushes:
            flush()

    def _prefill(self, admitted: list[Job]) -> None:
        """The prompts admitted together, prefilled together; each job's first token sampled from its own."""
        jobs = []
        for job in admitted:
            if job.cancelled.is_set():
                self._finish(job, "stopped")
                continue
            self._active[job.slot] = job
            self._emit(job, Started(time.perf_counter()))  # the reader may see it later: the time rides along
            job.generator = new_generator(job.params.seed)
            jobs.append(job)
        if not jobs:
            return
        logits = self._allowed(
            self.engine.prefill_many([j.slot for j in jobs], [j.prompt for j in jobs]), jobs
        )
        tokens = sample_next_token(logits, [j.params for j in jobs], [j.generator for j in jobs])
        now = time.perf_counter()
        for job, token in zip(jobs, tokens.tolist(), strict=True):
            self._accept(job, token, now)

    def _decode_step(self) -> None:
        jobs = list(self._active.values())
        if not jobs:
            return
        logits = self._allowed(self.engine.decode([j.slot for j in jobs], [j.last_token for j in jobs]), jobs)
        tokens = sample_next_token(logits, [j.params for j in jobs], [j.generator for j in jobs])
        now = time.perf_counter()
        for job, token in zip(jobs, tokens.tolist(), strict=True):
            self._accept(job, token, now)

    def _allowed(self, logits: Any, jobs: list[Job]) -> np.ndarray:
        """No <|eos|> for a stream still under its min_new_tokens, and no word its loop guard forbids."""
        logits = forbid_eos(logits, self.eos_id, [j.generated < j.params.min_new_tokens for j in jobs])
        return forbid_repeats(logits, [j.guard for j in jobs])

    def _accept(self, job: Job, token: int, at: float) -> None:
        if job.cancelled.is_set():
            return self._finish(job, "stopped")
        if token == self.eos_id:
            return self._finish(job, "eos")
        job.generated += 1
        job.last_token, job.last_at = token, at
        self._emit(job, Token(token, at))
        if job.guard is not None:
            job.guard.push(token)
        if job.generated >= job.max_new_tokens:
            self._finish(job, "length")

    def _finish(self, job: Job, reason: str, error: str | None = None) -> None:
        if job.finished:
            return
        job.finished = True
        if job.owner is not None and self.max_per_owner is not None:
            with self._cv:
                self._owned[job.owner] -= 1
                if self._owned[job.owner] <= 0:
                    del self._owned[job.owner]
        if job.slot >= 0 and self._active.get(job.slot) is job:
            del self._active[job.slot]
        if job.slot >= 0:
            self.engine.release(job.slot)
            with self._cv:
                heapq.heappush(self._free, job.slot)
            job.slot = -1
        self._emit(job, Failed(error) if error else Done(reason))
