"""A chat turn's one transaction (the user's limits, then the turn's rows), an answer's final save (its
rows, then the unused tokens given back) and an account's deletion (the user, then the user's counters)
all take the user first on PostgreSQL (a row lock; on SQLite the writers of a process take turns), so no
two of them wait on each other in a cycle. Each test failed with a deadlock on PostgreSQL before."""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, event, or_
from sqlalchemy.exc import DBAPIError

from functions.chat import rows
from shared import ratelimit
from shared.database import dispose_engine, get_sessionmaker, writing
from shared.migrate import upgrade
from shared.models import Conversation, RateLimitBucket, User, utcnow
from shared.settings import Settings

SETTINGS = Settings()


async def _user_who_chatted() -> User:
    """A user with counters already (an earlier answer): a turn then locks existing rows."""
    async with get_sessionmaker()() as session:
        user = User(email=f"locks-{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
        session.add(user)
        await session.commit()
        await ratelimit.reserve_chat(session, user.id, SETTINGS, 32)
        await session.commit()
        return user


async def _turn(
    user: User, conversation: Conversation | None = None, parent_id: int | None = None, pause: Any = None
) -> tuple[rows.TurnIds, ratelimit.Taken]:
    """What POST /api/chat does before the first token, in its one transaction; `pause` (awaited between
    the limits and the rows) lets another transaction start meanwhile."""
    async with get_sessionmaker()() as session, writing(session):
        reserved = await ratelimit.reserve_chat(session, user.id, SETTINGS, 32)
        if pause is not None:
            await pause()
        ids = await _write_turn(session, user, conversation, parent_id)
        await session.commit()
        return ids, reserved


async def _write_turn(
    session: Any, user: User, conversation: Conversation | None = None, parent_id: int | None = None
) -> rows.TurnIds:
    """The turn's rows: a new conversation unless one is given."""
    return await rows.write_turn(
        session,
        conversation=conversation or Conversation(user_id=user.id, title="hi", messages=[]),
        question=None,
        parent_id=parent_id,
        message="hi",
        message_tokens=1,
        context={},
        max_conversations=10,
        asked_at=utcnow(),
    )


def _run(use_database: str, scenario: Callable[[], Any]) -> Any:
    upgrade(use_database)

    async def run() -> Any:
        try:
            return await scenario()
        finally:
            await dispose_engine()

    return asyncio.run(run())


def test_a_chat_turn_and_the_deletion_of_its_account_never_deadlock(use_database: str) -> None:
    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        user = await _user_who_chatted()
        async with get_sessionmaker()() as deleting, writing(deleting):  # DELETE /api/auth/me: the user first
            await deleting.delete(await deleting.get(User, user.id))
            await deleting.flush()
            chat = asyncio.create_task(_turn(user))
            await asyncio.sleep(0.3)  # the turn starts while the deletion holds the user
            deleted: BaseException | None = None
            try:
                await deleting.execute(
                    delete(RateLimitBucket).where(or_(*ratelimit.keys_of(user.id, user.email)))
                )
                await deleting.commit()
            except DBAPIError as exc:
                deleted = exc
        refused = (await asyncio.gather(chat, return_exceptions=True))[0]
        return deleted, refused

    deleted, refused = _run(use_database, scenario)
    assert deleted is None, deleted  # the account is gone
    # the turn found its user gone (no conversation for a user that is not there), not a deadlock
    assert isinstance(refused, DBAPIError) and "deadlock" not in str(refused).lower(), refused


def test_a_turn_and_the_final_save_of_the_answer_before_it_never_deadlock(use_database: str) -> None:
    """The next message of a conversation while its answer's final save runs (two tabs, the API, or a
    send right as an answer ends): the save writes the answer and the conversation, then gives back the
    unused tokens; the turn counts its tokens, then writes its rows into the same conversation."""

    async def scenario() -> tuple[BaseException | None, bool | BaseException]:
        user = await _user_who_chatted()
        ids, reserved = await _turn(user)  # an answer in progress
        answer = rows.Saved(
            answer_id=ids.assistant_message_id,
            conversation_id=ids.conversation_id,
            text="Hi!",
            ids=[5],
            asked_at=ids.asked_at,
        )
        saving: list[asyncio.Task[bool]] = []

        async def final_save_meanwhile() -> None:
            save = rows.save_final(answer, user_id=user.id, finish_reason="eos", reserved=reserved)
            saving.append(asyncio.create_task(save))
            await asyncio.sleep(0.3)  # the save runs until it waits for this turn

        conversation = Conversation(id=ids.conversation_id, user_id=user.id, title="hi", messages=[])
        turn = await asyncio.gather(
            _turn(user, conversation, ids.assistant_message_id, pause=final_save_meanwhile),
            return_exceptions=True,
        )
        saved = (await asyncio.gather(*saving, return_exceptions=True))[0]
        failed = turn[0] if isinstance(turn[0], BaseException) else None
        return failed, saved

    failed, saved = _run(use_database, scenario)
    assert failed is None and saved is True, (failed, saved)  # both went through, one after the other


def test_a_turn_that_starts_a_conversation_locks_its_user_once(use_database: str) -> None:
    """The limits take the user's row; starting the conversation (insert_within_cap) needs the same lock and
    finds it held: one SELECT ... FOR UPDATE a transaction on PostgreSQL, none on SQLite. A next
    transaction of the same session takes it again."""

    async def scenario() -> list[int]:
        user = await _user_who_chatted()
        engine = get_sessionmaker()().bind
        assert engine is not None
        locks: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "FOR UPDATE" in statement:
                locks.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        per_turn = []
        async with get_sessionmaker()() as session:
            for _ in range(2):
                async with writing(session):
                    await ratelimit.reserve_chat(session, user.id, SETTINGS, 32)
                    await _write_turn(session, user)
                    await session.commit()
                per_turn.append(len(locks))
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        return per_turn

    locked = _run(use_database, scenario)
    assert locked == ([1, 2] if use_database.startswith("postgresql") else [0, 0])
