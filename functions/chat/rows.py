"""Every row the chat function writes or reads: a turn's rows before the first token, the answers as they
grow (with their conversations' stop flags), the final save, the answers its followers read, and the
tokens an answer did not use.

Core statements, not the ORM's unit of work: these are on every answer's path, and eight answers at once
pay them one after another on one event loop. Every statement names the owner of what it writes in its
key (`WHERE id = … AND conversation_id = …`, the conversation's `user_id`): a save can never land in
another user's row, nor recreate what was deleted. On SQLite the writers of a process take turns
(shared.database.writing).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared import ratelimit
from shared.crud import finalize_stale_answers, insert_within_cap, lock_user, too_many_conversations
from shared.database import get_sessionmaker, writing
from shared.models import Conversation, Message, utcnow

CONVERSATIONS, MESSAGES = cast(Table, Conversation.__table__), cast(Table, Message.__table__)

# Built once: each call binds its values (building a statement costs more than running it on SQLite).
_INSERT_MESSAGE = insert(MESSAGES)
_OWN_CONVERSATION = (CONVERSATIONS.c.id == bindparam("of"), CONVERSATIONS.c.user_id == bindparam("owner"))
_POINT_AT_ANSWER = (
    update(CONVERSATIONS)
    .where(*_OWN_CONVERSATION)
    .values(current_message_id=bindparam("answer"), updated_at=bindparam("now"))
)
_ANSWER = (MESSAGES.c.id == bindparam("message_id"), MESSAGES.c.conversation_id == bindparam("of"))
_GROWN: dict[str, Any] = {
    "content": bindparam("new_content"),
    "token_count": bindparam("new_count"),
    "token_ids": bindparam("new_ids"),
}
_SAVE_PARTIAL = (
    update(MESSAGES)
    .where(*_ANSWER, MESSAGES.c.finish_reason.is_(None))
    .values(**_GROWN, updated_at=bindparam("now"))
)
# a final save already there (an earlier try committed after all), for a save that ends the answer as
# failed and for one that does not: another process's stale rule may have ended an answer whose final
# save is being tried again as failed ("error") meanwhile, over its last partial save, and the whole
# answer is written over that
_FINISHED = {
    True: select(MESSAGES.c.id).where(*_ANSWER, MESSAGES.c.finish_reason.is_not(None)),
    False: select(MESSAGES.c.id).where(
        *_ANSWER, MESSAGES.c.finish_reason.is_not(None), MESSAGES.c.finish_reason != "error"
    ),
}
_SAVE_FINAL = (
    update(MESSAGES)
    .where(*_ANSWER)
    .values(**_GROWN, finish_reason=bindparam("reason"), updated_at=bindparam("now"))
)
# The stop flag is never cleared: a stop at time T ends the answers asked for before T (save_partial), so
# a stop sent a moment after the message is not lost (a turn's rows used to clear the flag when they were
# written, a few milliseconds after the stop), and an old stop never ends a later answer.
_TOUCH_CONVERSATION = update(CONVERSATIONS).where(*_OWN_CONVERSATION).values(updated_at=bindparam("now"))


@dataclass(frozen=True, kw_only=True)
class TurnIds:
    conversation_id: int
    user_message_id: int
    assistant_message_id: int
    asked_at: datetime  # when the request for the answer arrived: a stop from then on ends it


async def _insert_message(connection: AsyncConnection, **values: Any) -> int:
    key = (await connection.execute(_INSERT_MESSAGE, values)).inserted_primary_key
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
    asked_at: datetime,
) -> TurnIds:
    """The rows of one turn, written before the first token in the caller's write transaction (which
    commits them with the turn's reserved tokens, shared.database.writing): the conversation when it is
    new (429 past the user's `max_conversations`), the user message `message` (unless this regenerates
    `question`'s answer), the empty answer, and the conversation pointing at it."""
    now, user_id = utcnow(), conversation.user_id
    connection = await session.connection()
    conversation_id = conversation.id
    if conversation_id is None:
        values = {"user_id": user_id, "title": conversation.title, "created_at": now, "updated_at": now}
        conversation_id = await insert_within_cap(session, CONVERSATIONS, user_id, max_conversations, values)
        if conversation_id is None:
            raise too_many_conversations(max_conversations)
    if question is None:
        question_id = await _insert_message(
            connection,
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
    answer_id = await _insert_message(
        connection,
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
        _POINT_AT_ANSWER, {"of": conversation_id, "owner": user_id, "answer": answer_id, "now": now}
    )
    return TurnIds(
        conversation_id=conversation_id,
        user_message_id=question_id,
        assistant_message_id=answer_id,
        asked_at=asked_at,
    )


@dataclass(frozen=True, kw_only=True)
class Saved:
    """An answer as it stands: what a save writes."""

    answer_id: int
    conversation_id: int
    text: str
    ids: list[int]
    asked_at: datetime  # TurnIds.asked_at


def _grown(answer: Saved) -> dict[str, Any]:
    """The bound values of an answer's row as it stands (for _SAVE_PARTIAL and _SAVE_FINAL)."""
    return {
        "message_id": answer.answer_id,
        "of": answer.conversation_id,
        "new_content": answer.text,
        "new_count": len(answer.ids),
        "new_ids": " ".join(map(str, answer.ids)),
    }


async def save_partial(answers: list[Saved]) -> set[int]:
    """One transaction: each answer as it stands (an answer already finished is never touched), then the
    stop flags of their conversations. Returns the answers (their ids) that must stop: a stop of their
    conversation was requested since they were asked for, or the conversation was deleted meanwhile.
    This is the one reader of the stop flag."""
    now = utcnow()
    rows = [{"now": now, **_grown(a)} for a in answers]
    conversations = {a.conversation_id for a in answers}
    async with get_sessionmaker()() as session, writing(session) as connection:
        await connection.execute(_SAVE_PARTIAL, rows)  # one executemany
        found = await connection.execute(
            select(CONVERSATIONS.c.id, CONVERSATIONS.c.stop_requested_at).where(
                CONVERSATIONS.c.id.in_(conversations)
            )
        )
        flags: dict[int, Any] = {row[0]: row[1] for row in found}
        await session.commit()
    return {
        a.answer_id
        for a in answers
        if a.conversation_id not in flags
        or (flags[a.conversation_id] is not None and flags[a.conversation_id] >= a.asked_at)
    }


async def save_final(
    answer: Saved, *, user_id: int, finish_reason: str, reserved: ratelimit.Taken | None, again: bool = False
) -> bool:
    """The final save, one transaction: the answer with its finish reason, its conversation's updated_at,
    and the tokens of the day's reservation `reserved` it did not use given back
    (None: the answer is saved without settling). Settling, it locks the user first on PostgreSQL, as a
    turn does before its counters and its rows (ratelimit.reserve_chat): in the other order, the save and
    the conversation's next turn each waited for the other. `again` (a try after a failed one): nothing
    is written when the answer already has its finish reason (the failed try committed after all), but
    an answer that another process's stale rule ended as failed meanwhile is written over, whole, by a
    save that does not end it as failed too. Returns whether the answer is in the database (False: it
    was deleted with its conversation meanwhile, and nothing was written but the tokens given back)."""
    now = utcnow()
    async with get_sessionmaker()() as session, writing(session) as connection:
        if reserved is not None:
            await lock_user(session, user_id)
        if again and await connection.scalar(
            _FINISHED[finish_reason == "error"],
            {"message_id": answer.answer_id, "of": answer.conversation_id},
        ):
            return True
        saved = await connection.execute(_SAVE_FINAL, {"reason": finish_reason, "now": now, **_grown(answer)})
        values = {"of": answer.conversation_id, "owner": user_id, "now": now}
        await connection.execute(_TOUCH_CONVERSATION, values)
        if reserved is not None:
            await ratelimit.settle(session, reserved, len(answer.ids))
        await session.commit()
    return saved.rowcount > 0


async def settle(reserved: ratelimit.Taken, generated: int) -> None:
    """/v1 (which saves no answer): give back what an answer of `generated` tokens did not use."""
    async with get_sessionmaker()() as session, writing(session):
        await ratelimit.settle(session, reserved, generated)
        await session.commit()


async def read_answers(keys: dict[int, int], stale: timedelta) -> dict[int, Message]:
    """The answers {id: conversation id} as saved, in one short read (the connection goes back to the
    pool at once); an answer in progress that no generator has saved for `stale` is finalized as
    failed first. A deleted answer is missing from the result."""
    async with get_sessionmaker()() as session:
        found = await session.scalars(select(Message).where(Message.id.in_(keys)))
        answers = [m for m in found if keys.get(m.id) == m.conversation_id]
        await finalize_stale_answers(session, answers, stale.total_seconds())
        return {m.id: m for m in answers}
