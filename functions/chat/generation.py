"""One answer being generated for POST /api/chat, and the saver that writes the answers as they grow.

A generation runs as its own task, so a client that goes away changes nothing: the answer runs to its
end unless it is stopped or fails. Its answer is saved as it grows (Saver: every answer an event loop is
generating, in one transaction every SAVE_INTERVAL_SECONDS, which also reads their stop flags: a stop
from any process, or a deleted conversation, ends the answer at the next save), and once more when it
ends. The rows themselves are functions/chat/rows.py's; following a saved answer is follow.py's.
"""

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from functions.chat import metrics, rows
from functions.chat.events import Done, Event, Failed, Queued, Started, Token
from functions.chat.outbox import PerLoop
from functions.chat.service import ChatModel
from functions.chat.sse import sse
from model.sampling import SamplingParams
from model.tokenizer import Prompt, TextStreamer
from shared import ratelimit, stops

log = logging.getLogger("slm.chat")
SAVE_INTERVAL_SECONDS = 0.25  # how often the answers that grew are written (a follower polls as often)
HEARTBEAT_SECONDS = 1.0  # an answer with nothing new (still queued) is written this often: it is alive
# an answer in progress saved this recently is being written (POST /api/chat refuses a reply to it); one
# quiet for longer lost its generator (the stale rule finalizes it later)
LIVE_SECONDS = 10 * HEARTBEAT_SECONDS
# a final save that failed (the database away) is tried again after each of these pauses, about ten
# minutes in all, so the whole answer is kept once the database is back (not only its last partial save)
FINAL_SAVE_RETRIES_SECONDS = (0.5, 1.0, 2.0) + (5.0,) * 119
_ENDED_HERE: dict[int, None] = {}  # answers whose generation ended in this process, newest last
_ENDED_KEPT = 10_000
# answers whose final save failed and is being tried again (save_answer_later)
_SAVING_LATER: set[int] = set()
# how a stream ends whose answer was deleted (with its conversation) while it was generated
DELETED = "The conversation was deleted: the answer was not saved"


def ended_here(answer_id: int) -> bool:
    """Whether this process generated the answer and its generation is over, even where its final save
    failed (the database was away) and the row still says it is in progress."""
    return answer_id in _ENDED_HERE


def saving_later(answer_id: int) -> bool:
    """Whether this process is still trying the answer's final save again (the database was away): the
    answer is whole here, not yet in the database."""
    return answer_id in _SAVING_LATER


def _ended(answer_id: int) -> None:
    _ENDED_HERE[answer_id] = None
    while len(_ENDED_HERE) > _ENDED_KEPT:
        del _ENDED_HERE[next(iter(_ENDED_HERE))]


_running: set[asyncio.Task[None]] = set()


def _keep(task: asyncio.Task[None]) -> None:
    """Hold a reference to a background task until it ends (the loop keeps only weak ones)."""
    _running.add(task)
    task.add_done_callback(_running.discard)


@dataclass(frozen=True, kw_only=True)
class Turn:
    ids: rows.TurnIds
    prompt: Prompt
    params: SamplingParams
    context: dict[str, int]  # meta.context: the prompt's tokens, its limit, the window, messages dropped
    title: str
    user_id: int  # whose answer: the conversation's owner
    reserved: ratelimit.Taken  # the tokens reserved from the user's day; the final save gives back the rest
    arrived: float  # time.perf_counter() when the request arrived (time to first token counts from it)


@dataclass
class Answer:
    """What has been generated so far; the saver writes it, the stream reads it."""

    ids: list[int] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    saved_tokens: int = -1  # len(ids) at the last save (-1: never saved)
    saved_at: float = -math.inf  # time.monotonic() of the last save

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Generation:
    """Runs the opened stream `stream` (ChatModel.open_stream; `cancelled` stops it) for `turn`."""

    def __init__(
        self, model: ChatModel, turn: Turn, stream: AsyncIterator[Event], cancelled: threading.Event
    ) -> None:
        self.model, self.turn, self.stream = model, turn, stream
        self.cancelled = cancelled
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.answer = Answer()
        _keep(asyncio.get_running_loop().create_task(self._run()))

    def saved(self) -> rows.Saved:
        ids = self.turn.ids
        return rows.Saved(
            answer_id=ids.assistant_message_id,
            conversation_id=ids.conversation_id,
            text=self.answer.text,
            ids=list(self.answer.ids),
            asked_at=ids.asked_at,
        )

    async def events(self) -> AsyncIterator[bytes]:
        """The SSE body. A client that goes away closes only this reader: the generation goes on.
        Whatever is queued goes out as one write (one send per wake-up, not per event)."""
        while (chunk := await self.queue.get()) is not None:
            parts = [chunk]
            while not self.queue.empty():
                if (chunk := self.queue.get_nowait()) is None:
                    yield b"".join(parts)
                    return
                parts.append(chunk)
            yield b"".join(parts)

    def _meta(self, position: int, cold_start: bool) -> bytes:
        turn = self.turn
        return sse(
            "meta",
            {
                "conversation_id": turn.ids.conversation_id,
                "user_message_id": turn.ids.user_message_id,
                "assistant_message_id": turn.ids.assistant_message_id,
                "title": turn.title,
                "context": turn.context,
                "queue_position": position,
                "cold_start": cold_start,
            },
        )

    def _warning(self) -> bytes:
        n = self.turn.prompt.dropped
        return sse(
            "warning",
            {
                "code": "context_truncated",
                "dropped_messages": n,
                "message": f"{n} earlier messages no longer fit in the model's "
                f"{self.model.block_size}-token memory; it does not see them.",
            },
        )

    async def _run(self) -> None:
        put, answer = self.queue.put_nowait, self.answer
        streamer = TextStreamer(self.model.tokenizer)
        reason, error, started, first = "error", None, time.perf_counter(), True
        saves, clock = _savers.get(), metrics.TokenClock(self.turn.arrived)
        saves.watch(self)
        try:
            cold_start = self.model.claim_cold_start()
            async for event in self.stream:
                match event:
                    case Queued(position):
                        put(self._meta(position, cold_start))
                        if first and self.turn.prompt.dropped:
                            put(self._warning())
                        first = False
                    case Started(at):
                        started = at
                    case Token(token, at):
                        clock.token(at)
                        answer.ids.append(token)
                        if text := streamer.put(token):
                            answer.parts.append(text)
                            put(sse("token", {"text": text}, event_id=len(answer.ids) - 1))
                    case Done(reason):
                        pass
                    case Failed(message):
                        error = message
        except Exception as exc:
            log.exception("generation failed")
            self.cancelled.set()
            error = f"{type(exc).__name__}: {exc}"
        finally:
            # a partial save already under way finishes first (cancelling a database call midway can leave
            # the connection hanging, seen with psycopg), so it can never land after the final one
            await saves.unwatch(self)
        if tail := streamer.end():
            answer.parts.append(tail)
            put(sse("token", {"text": tail}, event_id=len(answer.ids) - 1))
        put(await self._end("error" if error else reason, error, max(time.perf_counter() - started, 1e-6)))
        _ended(self.turn.ids.assistant_message_id)
        put(None)

    async def _end(self, reason: str, error: str | None, seconds: float) -> bytes:
        """The final save, then the stream's last event: done, or error."""
        message_id, tokens = self.turn.ids.assistant_message_id, len(self.answer.ids)
        try:
            kept = await save_answer(self, reason)
        except Exception as exc:
            log.exception("could not save the answer: trying again in the background")
            _SAVING_LATER.add(message_id)  # from now: the task starts at the loop's next turn
            _keep(asyncio.get_running_loop().create_task(save_answer_later(self, reason)))
            message = (
                f"The answer could not be saved yet ({type(exc).__name__}); it will be saved when the "
                "database is back"
            )
            return sse("error", {"code": "save_failed", "message": message})
        if not kept:  # deleted with its conversation meanwhile: as its followers hear it
            return sse("error", {"code": "not_found", "message": DELETED})
        if error:
            return sse(
                "error", {"code": "generation_failed", "message": error, "assistant_message_id": message_id}
            )
        done = {"assistant_message_id": message_id, "finish_reason": reason, "tokens": tokens}
        return sse("done", done | {"tokens_per_second": round(tokens / seconds, 1)})


async def save_answer(
    generation: Generation, finish_reason: str, quiet: bool = False, again: bool = False
) -> bool:
    """The final save with the day's tokens settled; best-effort for the limit: when that transaction
    fails, the answer is saved again alone. An answer or a conversation deleted meanwhile updates
    nothing, and nothing is ever inserted. `again`: a try after one that failed, which may have committed
    all the same (the connection lost with the commit on its way): then this one writes nothing, so the
    tokens are never given back twice. Returns whether the answer is in the database (False: deleted)."""
    turn = generation.turn
    try:
        return await rows.save_final(
            generation.saved(),
            user_id=turn.user_id,
            finish_reason=finish_reason,
            reserved=turn.reserved,
            again=again,
        )
    except Exception:
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "could not save the answer and settle its tokens: saving it alone", exc_info=True)
        return await rows.save_final(
            generation.saved(), user_id=turn.user_id, finish_reason=finish_reason, reserved=None, again=again
        )


async def save_answer_later(generation: Generation, finish_reason: str) -> None:
    """The final save tried again after each of FINAL_SAVE_RETRIES_SECONDS, until one succeeds. Each try
    is the whole final save, settlement included: a failed one committed nothing. Given up, the answer
    keeps its last partial save, which the stale rule ends as failed ("error"); saved after that, the
    whole answer replaces it."""
    answer_id = generation.turn.ids.assistant_message_id
    _SAVING_LATER.add(answer_id)
    try:
        for pause in FINAL_SAVE_RETRIES_SECONDS:
            await asyncio.sleep(pause)
            try:
                await save_answer(generation, finish_reason, quiet=True, again=True)
            except Exception as exc:
                log.debug("answer %d still not saved: %s", answer_id, exc)
                continue
            log.info("answer %d saved after the database came back", answer_id)
            return
        log.error("answer %d was not saved: the database stayed away; its last partial save stays", answer_id)
    finally:
        _SAVING_LATER.discard(answer_id)


class Saver:
    """The partial answers of every generation one event loop runs, written together: every
    SAVE_INTERVAL_SECONDS, one transaction updates each answer that grew (and, every HEARTBEAT_SECONDS,
    one that did not: a queued answer's save is the heartbeat that tells it from a dead one) and reads
    their conversations' stop flags. Eight streams cost one commit per interval, not one per stream
    and 32 tokens. The final save of each answer is its own (save_answer)."""

    def __init__(self) -> None:
        self.watched: dict[Generation, None] = {}  # insertion-ordered set
        self.task: asyncio.Task[None] | None = None
        self.writing = asyncio.Lock()  # held while a batch is written

    def watch(self, generation: Generation) -> None:
        self.watched[generation] = None
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
            _keep(self.task)

    async def unwatch(self, generation: Generation) -> None:
        """No more partial saves of this answer: returns once none is being written."""
        self.watched.pop(generation, None)
        async with self.writing:
            pass

    def due(self, now: float) -> list[Generation]:
        """The answers to write now: those that grew since their last save, and those whose heartbeat is due."""
        return [
            g
            for g in self.watched
            if len(g.answer.ids) != g.answer.saved_tokens or now - g.answer.saved_at >= HEARTBEAT_SECONDS
        ]

    async def _run(self) -> None:
        while self.watched:
            await asyncio.sleep(SAVE_INTERVAL_SECONDS)
            due = self.due(time.monotonic())
            if not due:
                continue
            async with self.writing:
                try:
                    stop = await save_partial(due)
                except Exception:  # the database is away for a moment: the next batch, or the final save
                    log.warning("could not save the partial answers", exc_info=True)
                    continue
            for generation in due:
                if generation.turn.ids.assistant_message_id in stop:
                    generation.cancelled.set()


_savers = PerLoop(lambda _loop: Saver())


def _stop_here(conversation_id: int) -> None:
    """A stop stored by this process (shared/stops.py): its answers on this event loop end at their next
    step, not at the next save's read of the flag."""
    for generation in list(_savers.get().watched):
        if generation.turn.ids.conversation_id == conversation_id:
            generation.cancelled.set()


stops.listen(_stop_here)


async def save_partial(generations: list[Generation]) -> set[int]:
    """rows.save_partial of these answers as they stand, marked saved; the answers (ids) to stop."""
    now = time.monotonic()
    for generation in generations:
        generation.answer.saved_tokens, generation.answer.saved_at = len(generation.answer.ids), now
    return await rows.save_partial([g.saved() for g in generations])
