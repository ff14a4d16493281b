"""Plain data-access functions shared by more than one function."""

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from shared.database import writing
from shared.errors import APIError, not_found
from shared.models import Conversation, Message, User
from shared.tree import stale_answers


async def get_own_conversation(
    session: AsyncSession, user: User, conversation_id: int, options: Sequence[Any] = ()
) -> Conversation:
    """The user's conversation; another user's (or none) is a 404, never a 403, so its existence stays hidden."""
    conversation = await session.scalar(
        select(Conversation)
        .where(Conversation.id == conversation_id, Conversation.user_id == user.id)
        .options(*options)
    )
    if conversation is None:
        raise not_found("Conversation")
    return conversation


_LOCKED_USERS = "slm.locked_users"  # session.info: (the transaction, the users it has locked)
_LOCK_USER = select(User.id).where(User.id == bindparam("user_id")).with_for_update()


async def lock_user(session: AsyncSession, user_id: int) -> None:
    """On PostgreSQL, lock the user's row until the transaction ends, so that one user's capped inserts
    (insert_within_cap) count one after another. Once a transaction: a chat turn takes the user for its
    limits and again to start a conversation, and the lock it holds already needs no second statement (the
    project takes no savepoints, whose rollback would let it go)."""
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return
    held: tuple[Any, set[int]] | None = session.info.get(_LOCKED_USERS)
    if held is not None and held[0] is session.sync_session.get_transaction() and user_id in held[1]:
        return
    await session.execute(_LOCK_USER, {"user_id": user_id})
    transaction = session.sync_session.get_transaction()
    if held is None or held[0] is not transaction:
        held = session.info[_LOCKED_USERS] = (transaction, set())
    held[1].add(user_id)


@functools.cache
def _capped_insert(table: Table, names: tuple[str, ...]) -> Any:
    """INSERT INTO table (names) SELECT :v_<name>, ... WHERE (the owner's rows) < :cap RETURNING id, built
    once per table and columns: each call binds its values."""
    owned = (
        select(func.count()).select_from(table).where(table.c.user_id == bindparam("owner")).scalar_subquery()
    )
    row = select(*(bindparam(f"v_{name}", type_=table.c[name].type) for name in names)).where(
        owned < bindparam("cap")
    )
    return insert(table).from_select(list(names), row).returning(table.c.id)


async def insert_within_cap(
    session: AsyncSession, table: Table, user_id: int, cap: int, values: dict[str, Any]
) -> int | None:
    """Insert a row of `user_id` into `table` while the user has fewer than `cap` of them, in one statement
    (INSERT ... SELECT ... WHERE count < cap: atomic on SQLite, even across processes; on PostgreSQL
    after lock_user, as two transactions would both count before either inserts). Returns the new id,
    or None when the cap is reached; joins the session's transaction."""
    await lock_user(session, user_id)
    statement = _capped_insert(table, tuple(values))
    bound = {f"v_{name}": value for name, value in values.items()} | {"owner": user_id, "cap": cap}
    return (await session.execute(statement, bound)).scalar_one_or_none()


def too_many_conversations(cap: int) -> APIError:
    return APIError(
        429, "conversation_limit", f"An account has at most {cap} conversations: delete some to start another"
    )


async def finalize_stale_answers(
    session: AsyncSession, messages: Sequence[Message], stale_seconds: float
) -> None:
    """The answers of `messages` in progress that no generator has saved for `stale_seconds` (the stale
    rule, shared.tree.stale_answers) end as failed ("error", as DESIGN saves every failure), keeping what
    was saved, committed at once. The statement finalizes an answer only while it is still in progress,
    so a final save that lands between the read and this write (one tried again after an outage) is never
    overwritten; the objects read are set as the database holds them, not left for the session to write."""
    if not (dead := stale_answers(messages, stale_seconds)):
        return
    table = cast(Table, Message.__table__)
    async with writing(session) as connection:
        finalized = await connection.execute(
            update(table)
            .where(table.c.id.in_([m.id for m in dead]), table.c.finish_reason.is_(None))
            .values(finish_reason="error")
            .returning(table.c.id)
        )
        failed = set(finalized.scalars())
        await session.commit()
    for m in dead:
        if m.id in failed:
            set_committed_value(m, "finish_reason", "error")
        else:  # its final save landed meanwhile (or it was deleted): as it is now
            await session.refresh(m)
