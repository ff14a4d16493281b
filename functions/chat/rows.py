"""Every row the chat function writes or reads: a turn's rows before the first token, the answers as they
grow (with their conversations' stop flags), the final save, the answers its followers read, and the
tokens a refused request gives back.

Core statements, not the ORM's unit of work: these are on every answer's path, and eight answers at once
pay them one after another on one event loop. Every statement names the owner of what it writes in its
key (`WHERE id = … AND conversation_id = …`, the conversation's `user_id`): a save can never land in
another user's row, nor recreate what was deleted. On SQLite the writers of a process take turns
(shared.database.writing).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared import ratelimit
from shared.crud import insert_within_cap, too_many_conversations
from shared.database import get_sessionmaker, writing
from shared.models import Conversation, Message, utcnow
from shared.tree import finalize_stale, stale_answers

CONVERSATIONS, MESSAGES = cast(Table, Conversation.__table__), cast(Table, Message.__table__)


@dataclass(frozen=True, kw_only=True)
class TurnIds:
    conversation_id: int
    user_message_id: int
    assistant_message_id: int


async def _insert(connection: AsyncConnection, table: Table, **values: Any) -> int:
    key = (await connection.execute(insert(table).values(**values))).inserted_primary_key
    assert key is not None
    return int(key[0])


async def write_turn(
    session: AsyncSession,
    *,
    conversation: Conversation,
    question: Message | None,
    parent_id: int | None,
    message: str,
    message_tokens: int,
    context: dict[str, int],
    max_conversations: int,
) -> TurnIds:
    """The rows of one turn, committed before the first token: the conversation when it is new (429 past
    the user's `max_conversations`), the user message `message` (unless this regenerates `question`'s
    answer), the empty answer, and the conversation pointing at it."""
    now, user_id = utcnow(), conversation.user_id
    async with writing(session) as connection:
        conversation_id = conversation.id
        if conversation_id is None:
            values = {"user_id": user_id, "title": conversation.title, "created_at": now, "updated_at": now}
            conversation_id = await insert_within_cap(
                session, CONVERSATIONS, user_id, max_conversations, values
            )
            if conversation_id is None:
                raise too_many_conversations(max_conversations)
        if question is None:
            question_id = await _insert(
                connection,
                MESSAGES,
                conversation_id=conversation_id,
                role="user",
                content=message,
                parent_id=parent_id,
                token_count=message_tokens,
                created_at=now,
                updated_at=now,
            )
        else:
            question_id = question.id
        answer_id = await _insert(
            connection,
            MESSAGES,
            conversation_id=conversation_id,
            role="assistant",
            content="",
            parent_id=question_id,
            token_count=0,
            token_ids="",
            context=context,
            created_at=now,
            updated_at=now,
        )
        await connection.execute(
            update(CONVERSATIONS)
            .where(CONVERSATIONS.c.id == conversation_id, CONVERSATIONS.c.user_id == user_id)
            .values(current_message_id=answer_id, stop_requested_at=None, updated_at=now)
        )
        await session.commit()
    return TurnIds(
        conversation_id=conversation_id, user_message_id=question_id, assistant_message_id=answer_id
    )


@dataclass(frozen=True, kw_only=True)
class Saved:
    """An answer as it stands: what a save writes."""

    answer_id: int
    conversation_id: int
    text: str
    ids: list[int]


async def save_partial(answers: list[Saved]) -> set[int]:
    """One transaction: each answer as it stands (an answer already finished is never touched), then the
    stop flags of their conversations. Returns the conversations whose answers must stop: a stop was
    requested, or the conversation was deleted meanwhile. This is the one reader of the stop flag."""
    rows = [
        {
            "message_id": a.answer_id,
            "of": a.conversation_id,
            "new_content": a.text,
            "new_count": len(a.ids),
            "new_ids": " ".join(map(str, a.ids)),
            "now": utcnow(),
        }
        for a in answers
    ]
    statement = (
        update(MESSAGES)
        .where(
            MESSAGES.c.id == bindparam("message_id"),
            MESSAGES.c.conversation_id == bindparam("of"),
            MESSAGES.c.finish_reason.is_(None),
        )
        .values(
            content=bindparam("new_content"),
            token_count=bindparam("new_count"),
            token_ids=bindparam("new_ids"),
            updated_at=bindparam("now"),
        )
    )
    conversations = {a.conversation_id for a in answers}
    async with get_sessionmaker()() as session, writing(session) as connection:
        await connection.execute(statement, rows)  # one executemany
        found = await connection.execute(
            select(CONVERSATIONS.c.id, CONVERSATIONS.c.stop_requested_at).where(
                CONVERSATIONS.c.id.in_(conversations)
            )
        )
        flags: dict[int, Any] = {row[0]: row[1] for row in found}
        await session.commit()
    return {c for c in conversations if c not in flags or flags[c] is not None}


async def save_final(
    answer: Saved, *, user_id: int, finish_reason: str, reserved: ratelimit.Taken | None
) -> None:
    """The final save, one transaction: the answer with its finish reason, its conversation's updated_at
    and cleared stop flag, and the tokens of the day's reservation `reserved` it did not use given back
    (None: the answer is saved without settling)."""
    now = utcnow()
    async with get_sessionmaker()() as session, writing(session) as connection:
        await connection.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == answer.answer_id, MESSAGES.c.conversation_id == answer.conversation_id)
            .values(
                content=answer.text,
                token_count=len(answer.ids),
                token_ids=" ".join(map(str, answer.ids)),
                finish_reason=finish_reason,
                updated_at=now,
            )
        )
        await connection.execute(
            update(CONVERSATIONS)
            .where(CONVERSATIONS.c.id == answer.conversation_id, CONVERSATIONS.c.user_id == user_id)
            .values(updated_at=now, stop_requested_at=None)
        )
        if reserved is not None:
            await ratelimit.settle(session, reserved, len(answer.ids))
        await session.commit()


async def give_back(session: AsyncSession, reserved: ratelimit.Taken) -> None:
    """A refused or failed request returns the tokens it reserved."""
    await session.rollback()
    async with writing(session):
        await ratelimit.give_back(session, reserved)
        await session.commit()


async def settle(reserved: ratelimit.Taken, generated: int) -> None:
    """/v1 (which saves no answer): give back what an answer of `generated` tokens did not use."""
    async with get_sessionmaker()() as session, writing(session):
        await ratelimit.settle(session, reserved, generated)
        await session.commit()


async def finalize_stale_answers(
    session: AsyncSession, messages: list[Message], stale_seconds: float
) -> None:
    """Commit the answers of `messages` that stopped moving as interrupted (shared.tree.finalize_stale)."""
    if finalize_stale(messages, stale_seconds):
        async with writing(session):
            await session.commit()


async def read_answers(keys: dict[int, int], stale: timedelta) -> dict[int, Message]:
    """The answers {id: conversation id} as saved, in one short read (the connection goes back to the
    pool at once); an answer in progress that no generator has saved for `stale` is finalized as
    interrupted first. A deleted answer is missing from the result."""
    async with get_sessionmaker()() as session:
        found = await session.scalars(select(Message).where(Message.id.in_(keys)))
        answers = [m for m in found if keys.get(m.id) == m.conversation_id]
        if dead := stale_answers(answers, stale.total_seconds()):
            async with writing(session) as connection:
                await connection.execute(
                    update(MESSAGES)
                    .where(MESSAGES.c.id.in_([m.id for m in dead]), MESSAGES.c.finish_reason.is_(None))
                    .values(finish_reason="interrupted")
                )
                await session.commit()
            for m in dead:  # as saved (the session closes without writing these objects)
                m.finish_reason = "interrupted"
        return {m.id: m for m in answers}
