"""One answer being generated for /api/chat: it runs as its own task, so a client that goes away never
cancels the saving of the partial answer; the response only reads the events it produces."""

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from functions.chat.context import Prompt
from functions.chat.service import ChatModel
from model.engine import SamplingParams, TextStreamer
from shared.database import get_sessionmaker
from shared.models import Conversation, Message, utcnow

log = logging.getLogger("slm.chat")
STOP_POLL_TOKENS = 8  # the database stop flag is read every few tokens (works across processes and Lambda)
_running: set[asyncio.Task[None]] = set()


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


@dataclass
class Turn:
    conversation_id: int
    user_message_id: int
    prompt: Prompt
    params: SamplingParams
    context_limit: int


class Generation:
    def __init__(self, model: ChatModel, turn: Turn) -> None:
        self.model, self.turn = model, turn
        self.cancelled = threading.Event()
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(self._run())
        _running.add(task)
        task.add_done_callback(_running.discard)

    async def events(self) -> Any:
        """The SSE body. When the client goes away this generator is closed, which stops the generation."""
        try:
            while (chunk := await self.queue.get()) is not None:
                yield chunk
        finally:
            self.cancelled.set()

    def _meta(self, position: int, cold_start: bool) -> bytes:
        turn = self.turn
        context = {
            "tokens": len(turn.prompt.ids),
            "limit": turn.context_limit,
            "dropped_messages": turn.prompt.dropped,
        }
        return sse(
            "meta",
            {
                "conversation_id": turn.conversation_id,
                "user_message_id": turn.user_message_id,
                "context": context,
                "queue_position": position,
                "cold_start": cold_start,
            },
        )

    async def _run(self) -> None:
        put = self.queue.put_nowait
        streamer = TextStreamer(self.model.tokenizer)
        parts: list[str] = []
        tokens, reason, error, started, first = 0, "error", None, time.perf_counter(), True
        check: asyncio.Task[None] | None = None
        try:
            cold_start = self.model.claim_cold_start()
            async for kind, value in self.model.stream(
                self.turn.prompt.ids, self.turn.params, self.cancelled
            ):
                if kind == "queue":
                    put(self._meta(value, cold_start))
                    if first and self.turn.prompt.dropped:
                        n = self.turn.prompt.dropped
                        put(
                            sse(
                                "warning",
                                {
                                    "code": "context_truncated",
                                    "dropped_messages": n,
                                    "message": f"{n} earlier messages no longer fit in the model's "
                                    f"{self.model.block_size}-token memory; it does not see them.",
                                },
                            )
                        )
                    first = False
                elif kind == "start":
                    started = time.perf_counter()
                elif kind == "token":
                    tokens += 1
                    if tokens % STOP_POLL_TOKENS == 0 and (check is None or check.done()):
                        check = asyncio.create_task(self._check_stop_flag())
                    if text := streamer.put(value):
                        parts.append(text)
                        put(sse("token", {"text": text}))
                elif kind == "done":
                    reason = value
                else:
                    error = str(value)
        except Exception as exc:
            log.exception("generation failed")
            self.cancelled.set()
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if check is not None:
                check.cancel()
        if tail := streamer.end():
            parts.append(tail)
            put(sse("token", {"text": tail}))
        seconds = max(time.perf_counter() - started, 1e-6)
        try:
            message_id = await save_answer(
                self.turn.conversation_id, "".join(parts), "error" if error else reason, tokens
            )
        except Exception as exc:
            log.exception("could not save the answer")
            put(
                sse(
                    "error",
                    {
                        "code": "save_failed",
                        "message": f"The answer could not be saved: {type(exc).__name__}",
                    },
                )
            )
        else:
            if error:
                put(
                    sse(
                        "error",
                        {"code": "generation_failed", "message": error, "assistant_message_id": message_id},
                    )
                )
            else:
                put(
                    sse(
                        "done",
                        {
                            "assistant_message_id": message_id,
                            "finish_reason": reason,
                            "tokens": tokens,
                            "tokens_per_second": round(tokens / seconds, 1),
                        },
                    )
                )
        put(None)

    async def _check_stop_flag(self) -> None:
        try:
            if await stop_requested(self.turn.conversation_id):
                self.cancelled.set()
        except Exception:  # the database is away for a moment: keep generating, read it again later
            log.warning("could not read the stop flag", exc_info=True)


async def stop_requested(conversation_id: int) -> bool:
    async with get_sessionmaker()() as session:
        flag = await session.scalar(
            select(Conversation.stop_requested_at).where(Conversation.id == conversation_id)
        )
    return flag is not None


async def save_answer(conversation_id: int, content: str, finish_reason: str, tokens: int) -> int:
    async with get_sessionmaker()() as session:
        message = Message(
            conversation_id=conversation_id,
            role="assistant",
            content=content,
            finish_reason=finish_reason,
            token_count=tokens,
        )
        session.add(message)
        conversation = await session.get(Conversation, conversation_id)
        if conversation is not None:
            conversation.updated_at = utcnow()
            conversation.stop_requested_at = None
        await session.commit()
        return message.id
