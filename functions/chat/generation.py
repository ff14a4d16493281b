"""One answer being generated for /api/chat, and following an answer from the database.

A generation runs as its own task and its answer is saved as it grows (Saver: every answer an event loop
is generating, in one transaction every SAVE_INTERVAL_SECONDS), so a client that goes away changes
nothing: the answer runs to its end unless it is stopped (a database flag: one query for every stream of
the process each STOP_POLL_TOKENS decode steps, see StopWatch, and read by every save) or fails. `follow`
(functions/chat/follow.py) replays a saved answer and then tails it, from any process.
"""

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from functions.chat.context import Prompt
from functions.chat.scheduler import Event
from functions.chat.service import ChatModel, PerLoop
from functions.chat.sse import sse
from model.sampling import SamplingParams
from model.tokenizer import TextStreamer
from shared import ratelimit
from shared.database import get_sessionmaker, writing
from shared.models import Conversation, Message, utcnow

log = logging.getLogger("slm.chat")
STOP_POLL_TOKENS = 8  # the database stop flag is read every few tokens (works across processes and Lambda)
SAVE_INTERVAL_SECONDS = 0.25  # how often the answers that grew are written (a follower polls as often)
HEARTBEAT_SECONDS = 1.0  # an answer with nothing new (still queued) is written this often: it is alive
_running: set[asyncio.Task[None]] = set()


@dataclass
class Turn:
    conversation_id: int
    user_message_id: int
    assistant_message_id: int
    prompt: Prompt
    params: SamplingParams
    context: dict[str, int]  # meta.context: the prompt's tokens, its limit, the window, messages dropped
    title: str
    user_id: int  # whose answer: the conversation's owner
    reserved: ratelimit.Taken  # the tokens reserved from the user's day; the final save gives back the rest


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
        task = asyncio.get_running_loop().create_task(self._run())
        _running.add(task)
        task.add_done_callback(_running.discard)

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
                "conversation_id": turn.conversation_id,
                "user_message_id": turn.user_message_id,
                "assistant_message_id": turn.assistant_message_id,
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
        put = self.queue.put_nowait
        streamer = TextStreamer(self.model.tokenizer)
        answer = self.answer
        reason, error, started, first = "error", None, time.perf_counter(), True
        stops, saves = _stop_watches.get(), _savers.get()
        stops.watch(self)
        saves.watch(self)
        try:
            cold_start = self.model.claim_cold_start()
            async for kind, value in self.stream:
                if kind == "queue":
                    put(self._meta(value, cold_start))
                    if first and self.turn.prompt.dropped:
                        put(self._warning())
                    first = False
                elif kind == "start":
                    started = value
                elif kind == "token":
                    answer.ids.append(value)
                    n = len(answer.ids)
                    stops.tick()
                    if text := streamer.put(value):
                        answer.parts.append(text)
                        put(sse("token", {"text": text}, event_id=n - 1))
                elif kind == "done":
                    reason = value
                else:
                    error = str(value)
        except Exception as exc:
            log.exception("generation failed")
            self.cancelled.set()
            error = f"{type(exc).__name__}: {exc}"
        finally:
            stops.unwatch(self)
            # a partial save already under way finishes first (cancelling a database call midway can leave
            # the connection hanging, seen with psycopg), so it can never land after the final one
            await saves.unwatch(self)
        if tail := streamer.end():
            answer.parts.append(tail)
            put(sse("token", {"text": tail}, event_id=len(answer.ids) - 1))
        seconds = max(time.perf_counter() - started, 1e-6)
        tokens = len(answer.ids)
        try:
            await save_answer(self.turn, answer, "error" if error else reason)
        except Exception as exc:
            log.exception("could not save the answer")
            message = f"The answer could not be saved: {type(exc).__name__}"
            put(sse("error", {"code": "save_failed", "message": message}))
        else:
            message_id = self.turn.assistant_message_id
            if error:
                put(
                    sse(
                        "error",
                        {"code": "generation_failed", "message": error, "assistant_message_id": message_id},
                    )
                )
            else:
                done = {"assistant_message_id": message_id, "finish_reason": reason, "tokens": tokens}
                put(sse("done", done | {"tokens_per_second": round(tokens / seconds, 1)}))
        put(None)


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
            _running.add(self.task)
            self.task.add_done_callback(_running.discard)

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
                if generation.turn.conversation_id in stop:
                    generation.cancelled.set()


_savers = PerLoop(lambda _loop: Saver())


async def save_partial(generations: list[Generation]) -> set[int]:
    """One transaction: each answer as it stands (an answer already finished is never touched), then
    the conversations to stop: a stop requested, or deleted while the answer was generated."""
    table = cast(Table, Message.__table__)
    rows = []
    for generation in generations:
        answer = generation.answer
        answer.saved_tokens, answer.saved_at = len(answer.ids), time.monotonic()
        rows.append(
            {
                "message_id": generation.turn.assistant_message_id,
                "of": generation.turn.conversation_id,
                "new_content": answer.text,
                "new_count": len(answer.ids),
                "new_ids": " ".join(map(str, answer.ids)),
                "now": utcnow(),
            }
        )
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("message_id"),
            table.c.conversation_id == bindparam("of"),  # the key names the owner: never another row
            table.c.finish_reason.is_(None),
        )
        .values(
            content=bindparam("new_content"),
            token_count=bindparam("new_count"),
            token_ids=bindparam("new_ids"),
            updated_at=bindparam("now"),
        )
    )
    conversations = {g.turn.conversation_id for g in generations}
    async with get_sessionmaker()() as session, writing(session) as connection:
        await connection.execute(statement, rows)  # Core: one executemany, no ORM load
        found = await session.execute(
            select(Conversation.id, Conversation.stop_requested_at).where(Conversation.id.in_(conversations))
        )
        flags: dict[int, Any] = {row[0]: row[1] for row in found}
        await session.commit()
    return {c for c in conversations if c not in flags or flags[c] is not None}


class StopWatch:
    """The stop flags of every answer one event loop is generating, read in one query once every
    STOP_POLL_TOKENS decode steps (counted as STOP_POLL_TOKENS tokens per stream watched): one
    stream is checked every 8 tokens as before, and 8 streams cost one query, not eight."""

    def __init__(self) -> None:
        self.watched: dict[Generation, None] = {}  # insertion-ordered set
        self.tokens = 0
        self.task: asyncio.Task[None] | None = None

    def watch(self, generation: Generation) -> None:
        self.watched[generation] = None

    def unwatch(self, generation: Generation) -> None:
        self.watched.pop(generation, None)

    def tick(self) -> None:
        """One token of one watched stream."""
        self.tokens += 1
        if self.tokens < STOP_POLL_TOKENS * max(1, len(self.watched)):
            return
        if self.task is None or self.task.done():  # one query in flight at most
            self.tokens = 0
            self.task = asyncio.get_running_loop().create_task(self._check(list(self.watched)))
            _running.add(self.task)
            self.task.add_done_callback(_running.discard)

    async def _check(self, generations: list[Generation]) -> None:
        try:
            stopped = await stops_requested({g.turn.conversation_id for g in generations})
        except Exception:  # the database is away for a moment: keep generating, read it again later
            log.warning("could not read the stop flags", exc_info=True)
            return
        for generation in generations:
            if generation.turn.conversation_id in stopped:
                generation.cancelled.set()


_stop_watches = PerLoop(lambda _loop: StopWatch())


async def stops_requested(conversation_ids: set[int]) -> set[int]:
    """Which of these conversations have a stop requested."""
    async with get_sessionmaker()() as session:
        rows = await session.scalars(
            select(Conversation.id).where(
                Conversation.id.in_(conversation_ids), Conversation.stop_requested_at.is_not(None)
            )
        )
        return set(rows)


async def save_answer(turn: Turn, answer: Answer, finish_reason: str) -> None:
    """The final save, one transaction: the answer with its finish reason, its conversation's
    updated_at and cleared stop flag, and the tokens of the day's reservation it did not use given back.
    The limit settles best-effort: when that transaction fails, the answer is saved again alone. Every
    statement is keyed by the answer's conversation and its owner: an answer or a conversation deleted
    meanwhile updates nothing, and nothing is ever inserted."""
    try:
        await _final_save(turn, answer, finish_reason, settle=True)
    except Exception:
        log.warning("could not save the answer and settle its tokens: saving it alone", exc_info=True)
        await _final_save(turn, answer, finish_reason, settle=False)


async def _final_save(turn: Turn, answer: Answer, finish_reason: str, settle: bool) -> None:
    messages, conversations = cast(Table, Message.__table__), cast(Table, Conversation.__table__)
    now = utcnow()
    async with get_sessionmaker()() as session, writing(session) as connection:  # Core: two updates
        await connection.execute(
            update(messages)
            .where(
                messages.c.id == turn.assistant_message_id, messages.c.conversation_id == turn.conversation_id
            )
            .values(
                content=answer.text,
                token_count=len(answer.ids),
                token_ids=" ".join(map(str, answer.ids)),
                finish_reason=finish_reason,
                updated_at=now,
            )
        )
        await connection.execute(
            update(conversations)
            .where(conversations.c.id == turn.conversation_id, conversations.c.user_id == turn.user_id)
            .values(updated_at=now, stop_requested_at=None)
        )
        if settle:
            await ratelimit.settle(session, turn.reserved, len(answer.ids))
        await session.commit()
