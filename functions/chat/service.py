"""The model of this process: loaded once (in the background, so health can answer 503 meanwhile),
shared by every request through the batching scheduler."""

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends

from functions.chat import arrivals, metrics, preload
from functions.chat.arrivals import ARRIVALS
from functions.chat.events import END, Event, Queued
from functions.chat.outbox import Outbox, PerLoop
from functions.chat.preload import choose_engine
from functions.chat.scheduler import Job, OwnerFull, QueueFull, Scheduler
from functions.chat.schemas import MAX_WINDOW, sampling_bounds
from model.config import CheckpointError, read_config
from model.loops import WordTable
from model.runtime import cpu_budget
from model.sampling import SamplingParams
from model.tokenizer import ANSWER_RESERVE
from shared.errors import APIError
from shared.settings import get_settings

log = logging.getLogger("slm.chat")
T = TypeVar("T")


class ModelUnavailable(Exception):
    pass


OVERLOADED_RETRY_SECONDS = 5


def overloaded() -> APIError:
    """What both chat routes answer when the scheduler's queue is full: before any event is sent."""
    return APIError(
        503,
        "overloaded",
        "Too many answers are being generated; try again shortly",
        headers={"Retry-After": str(OVERLOADED_RETRY_SECONDS)},
    )


outboxes = PerLoop(Outbox)


class ChatModel:
    """What a loaded checkpoint offers the routes: its tokenizer, card, window, and token streams."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.threads = cpu_budget()
        settings = get_settings()
        self.max_batch, self.max_queue = settings.chat_max_batch, settings.chat_max_queue
        self.max_per_user = settings.chat_max_streams_per_user
        started = time.perf_counter()
        self.config = read_config(directory)
        self.engine_name = choose_engine(settings.chat_engine, self.config)
        engine: Any
        self.words: WordTable
        if self.engine_name == "onnx":  # torch is never imported: the process stays ~190 MB smaller
            key = (directory, self.max_batch, self.threads)
            # the take: begun at import, with the loop guard's WordTable (~20 ms) built in the same thread
            engine, self.tokenizer, self.words = preload.take(*key) or preload.load(*key)
            if self.tokenizer.vocab_size != self.config["model"]["vocab_size"]:  # as load_checkpoint checks
                raise CheckpointError(f"checkpoint {directory}: the tokenizer does not match the model")
        else:
            import torch

            from model.checkpoint import load_checkpoint
            from model.engine import Engine

            torch.set_num_threads(self.threads)
            model, self.tokenizer, _ = load_checkpoint(directory)
            engine = Engine(model.eval(), max_batch=self.max_batch)
            self.words = WordTable(self.tokenizer)  # the loop guard's view of the vocabulary
        self.block_size: int = self.config["model"]["block_size"]  # the window: the checkpoint's own
        if self.block_size > MAX_WINDOW:
            raise CheckpointError(
                f"checkpoint {directory}: its window of {self.block_size} tokens is larger than the API's "
                f"{MAX_WINDOW} (MAX_WINDOW in functions/chat/schemas.py bounds every request)"
            )
        # an int8 model's matrices are buffers, not parameters: the count saved with the weights is the truth
        self.parameters: int = int(self.config.get("parameters") or 0)
        self.scheduler = self._scheduler(engine)
        metrics.watch_scheduler(lambda: self.scheduler.waiting(), lambda: self.scheduler.active())
        self.load_seconds = time.perf_counter() - started
        self._served_first = False
        log.info(
            "model loaded from %s in %.2fs, %s engine, %d threads",
            directory, self.load_seconds, self.engine_name, self.threads,
        )  # fmt: skip

    def reopen(self) -> None:
        """A fresh scheduler over the same engine, once a shutdown has closed the last one."""
        self.scheduler = self._scheduler(self.scheduler.engine)

    def _scheduler(self, engine: Any) -> Scheduler:
        return Scheduler(
            engine,
            self.tokenizer.eos_id,
            self.max_batch,
            self.max_queue,
            self.max_per_user,
            arrivals=ARRIVALS,
            words=self.words,
        )

    def budget(self, prompt: list[int], params: SamplingParams) -> int:
        """The most tokens an answer to `prompt` can have: what it asked for, within the window."""
        return min(params.max_new_tokens, self.block_size - len(prompt))

    def claim_cold_start(self) -> bool:
        """True for the first request after loading (its answer pays for warm caches)."""
        first, self._served_first = not self._served_first, True
        return first

    def open_stream(
        self, prompt: list[int], params: SamplingParams, cancelled: threading.Event, owner: int
    ) -> AsyncIterator[Event]:
        """Queue one generation of user `owner` now and return its events, Queued first, Done or Failed
        last; setting `cancelled` ends it with Done("stopped") within one decode step. Before any
        response is sent: a queue that filled since the route's check is a 503 `overloaded`, and a user
        who has chat_max_streams_per_user answers in flight or queued already a 429."""
        outbox = outboxes.get()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            outbox.put(queue, event)

        job = Job(
            prompt=prompt,
            params=params,
            max_new_tokens=self.budget(prompt, params),
            emit=emit,
            cancelled=cancelled,
            flush=outbox.flush,
            owner=owner,
        )
        try:
            position = self.scheduler.submit(job)
            arrivals.queued()  # its prompt is in: the scheduler need not gather for it any more
        except QueueFull as exc:
            raise overloaded() from exc
        except OwnerFull as exc:
            raise APIError(
                429,
                "too_many_streams",
                f"You have {self.max_per_user} answers in progress already: wait for one to end (or stop it)",
                headers={"Retry-After": str(OVERLOADED_RETRY_SECONDS)},
            ) from exc

        async def events() -> AsyncIterator[Event]:
            yield Queued(position)  # always first: 0 means it starts at once
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, END):
                    return

        return events()

    def card(self) -> dict[str, Any]:
        keys = ("name", "description", "training", "data", "scores", "quantization", "license")
        card = {key: self.config.get(key) for key in keys if key in self.config}
        card.setdefault("name", self.directory.name)
        card["config"] = self.config.get("model", {})
        card["parameters"] = self.parameters
        # what the browser's settings and memory gauge use: the window and the sampling bounds, from here
        card["limits"] = {
            "window": self.block_size,
            "answer_room": ANSWER_RESERVE,
            "sampling": sampling_bounds(self.block_size),
        }
        card["serving"] = {
            "engine": self.engine_name,
            "threads": self.threads,
            "max_batch": self.max_batch,
            "max_queue": self.max_queue,
            "load_seconds": round(self.load_seconds, 3),
            # every answer's loop guard: no sequence of this many words twice (0: none)
            "loop_guard_words": get_settings().chat_loop_guard_words,
        }
        return card


class ModelHolder:
    """Loads the checkpoint once per process, off the event loop; requests wait for it."""

    def __init__(self) -> None:
        self._task: asyncio.Task[ChatModel] | None = None
        self.error: str | None = None

    def start(self, directory: Path) -> None:
        # A second lifespan in this process (tests, reloads) reuses a loaded model with a new scheduler (the
        # old one was closed: requests would wait on it forever), and loads again when the first load did
        # not finish (its event loop is gone) or failed.
        loop = asyncio.get_running_loop()
        if (model := self.loaded) is not None:
            if model.scheduler.closed:
                model.reopen()
        elif self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self.error = None
            self._task = loop.create_task(self._load(directory))

    async def _load(self, directory: Path) -> ChatModel:
        try:
            return await asyncio.to_thread(ChatModel, directory)
        except Exception as exc:
            self.error = f"cannot load the model from {directory}: {exc}"
            log.error(self.error)
            raise

    @property
    def loaded(self) -> ChatModel | None:
        if (
            self._task is not None
            and self._task.done()
            and not self._task.cancelled()
            and not self._task.exception()
        ):
            return self._task.result()
        return None

    async def get(self) -> ChatModel:
        if self._task is None:  # started without a lifespan (Mangum): load on first use
            self.start(get_settings().model_dir)
        assert self._task is not None
        try:
            return await asyncio.shield(self._task)
        except Exception as exc:
            raise ModelUnavailable(self.error or str(exc)) from exc

    async def stop(self) -> None:
        if (model := self.loaded) is not None:
            await asyncio.to_thread(model.scheduler.close)

    async def health(self) -> tuple[bool, str]:
        if self.loaded is not None:
            return True, "ready"
        if self.error:
            return False, self.error
        return False, "loading"


holder = ModelHolder()


async def loaded_model() -> ChatModel:
    """The dependency of every chat route: the loaded model, 503 while it loads or when it cannot, and
    503 `overloaded` when the scheduler's queue is already full."""
    try:
        model = await holder.get()
    except ModelUnavailable as exc:
        raise APIError(503, "model_unavailable", str(exc), headers={"Retry-After": "10"}) from exc
    return model


async def chat_model(model: Annotated[ChatModel, Depends(loaded_model)]) -> ChatModel:
    if model.scheduler.full():  # checked again when the stream is opened (ChatModel.open_stream)
        raise overloaded()
    return model


LoadedModel = Annotated[ChatModel, Depends(loaded_model)]  # the card, the model list
AdmittedModel = Annotated[ChatModel, Depends(chat_model)]  # a route that generates
