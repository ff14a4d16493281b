"""Fixed-window counters kept in the database, so a limit holds across processes and Lambda instances.

A limit counts and checks in one atomic statement (`take`: an upsert that adds only while the sum stays
within the limit, RETURNING the new count), so a burst of requests cannot all pass a check made before
any of them counted. What is reserved but not used (an answer's unused tokens, a login that succeeded) is
given back afterwards (`give_back`). Each counter records when its window ends, and the ended ones are
deleted (`purge`: `take` starts one at most once per PURGE_EVERY_SECONDS in each process, in a transaction of
its own beside the request's), so the table holds the keys counted lately, not every key ever counted.
"""

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.crud import lock_user
from shared.database import writing
from shared.errors import APIError
from shared.models import RateLimitBucket
from shared.settings import Settings

BUCKETS = cast(Table, RateLimitBucket.__table__)  # Core: no ORM machinery per hit
PURGE_EVERY_SECONDS = 600  # how often one process deletes the counters whose window has ended
PURGE_BATCH = 500  # counters deleted per transaction: a big purge holds the write lock in short turns
# PostgreSQL ends a purge's transaction left idle this long: a Lambda instance frozen after its response,
# halfway through one, would otherwise keep its rows locked until the instance ran again
PURGE_IDLE_TIMEOUT = "10s"
_next_purge = 0.0  # time.time() after which this process's next `take` starts a purge
_purges: set[asyncio.Task[None]] = set()  # the purges running (a task needs a reference until it ends)
log = logging.getLogger("slm.ratelimit")


@dataclass(frozen=True)
class Limit:
    key: str
    max_hits: int
    window_seconds: int

    def window_start(self, now: float) -> int:
        return int(now) - int(now) % self.window_seconds

    def window_end(self, now: float) -> int:
        return self.window_start(now) + self.window_seconds

    def retry_after(self, now: float) -> int:
        return max(1, self.window_end(now) - int(now))


@dataclass(frozen=True)
class Taken:
    """What `take` counted: `amount` in the window starting at `window_start` (to give back later)."""

    limit: Limit
    amount: int
    window_start: int


@functools.cache
def _upsert(dialect: str) -> Any:
    """The counting statement of `take` for one dialect, built at its first use and kept: each call binds
    its key, window, amount and limit (building a statement costs more than running it on SQLite). Only
    the dialect in use is imported: SQLAlchemy's PostgreSQL dialect alone took ~50 ms of a cold start."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql as module
    else:
        from sqlalchemy.dialects import sqlite as module  # type: ignore[no-redef]
    bucket = BUCKETS.c
    stmt = module.insert(BUCKETS).values(
        key=bindparam("limit_key"),
        window_start=bindparam("start"),
        count=bindparam("amount"),
        expires_at=bindparam("end"),
    )
    same_window = bucket.window_start == stmt.excluded.window_start
    return stmt.on_conflict_do_update(
        index_elements=[bucket.key],
        set_={
            "count": case((same_window, bucket.count + stmt.excluded.count), else_=stmt.excluded.count),
            "window_start": stmt.excluded.window_start,
            "expires_at": stmt.excluded.expires_at,
        },
        # a new window always fits; the current one only while the sum stays within the limit
        where=or_(~same_window, bucket.count + stmt.excluded.count <= bindparam("max_hits")),
    ).returning(bucket.count)


_GIVE_BACK = (
    update(BUCKETS)
    .where(BUCKETS.c.key == bindparam("limit_key"), BUCKETS.c.window_start == bindparam("start"))
    .values(
        count=case((BUCKETS.c.count > bindparam("amount"), BUCKETS.c.count - bindparam("amount")), else_=0)
    )
)


async def take(
    session: AsyncSession, limit: Limit, amount: int = 1, now: float | None = None
) -> Taken | None:
    """Count `amount` against the limit when the window's count stays within it, in one statement that
    joins the session's transaction (the caller commits); None when it does not fit (nothing counted)."""
    global _next_purge
    now = time.time() if now is None else now
    if amount > limit.max_hits:
        return None
    wall = time.time()  # a purge goes by the clock, whatever `now` a caller (a test) passes
    if wall >= _next_purge and session.bind is not None:
        _next_purge = wall + PURGE_EVERY_SECONDS
        task = asyncio.get_running_loop().create_task(_purge_beside(session.bind, wall))
        _purges.add(task)
        task.add_done_callback(_purges.discard)
    start = limit.window_start(now)
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    values = {"limit_key": limit.key, "start": start, "amount": amount, "max_hits": limit.max_hits}
    values["end"] = limit.window_end(now)
    counted = (await session.execute(_upsert(dialect), values)).scalar_one_or_none()
    return None if counted is None else Taken(limit, amount, start)


async def give_back(session: AsyncSession, taken: Taken, amount: int | None = None) -> None:
    """Uncount `amount` (all of it by default) of what `take` counted, while its window lasts; joins the
    session's transaction. An update, never an insert: a counter deleted meanwhile stays deleted."""
    amount = taken.amount if amount is None else min(amount, taken.amount)
    if amount <= 0:
        return
    values = {"limit_key": taken.limit.key, "start": taken.window_start, "amount": amount}
    await session.execute(_GIVE_BACK, values)


async def used(session: AsyncSession, limit: Limit, now: float | None = None) -> int:
    """The current window's count (0 for a counter not yet seen or from an older window)."""
    now = time.time() if now is None else now
    row = await session.scalar(select(RateLimitBucket).where(RateLimitBucket.key == limit.key))
    return row.count if row is not None and row.window_start == limit.window_start(now) else 0


async def purge(session: AsyncSession, now: float | None = None) -> int:
    """Delete up to PURGE_BATCH of the counters whose window has ended (they count nothing: the next hit of
    such a key starts a new window from zero either way), except those another transaction holds
    (PostgreSQL: it is counting them again; they go at a later purge): the purge waits for no one, so it
    can never be half of a deadlock. Joins the session's transaction; returns how many it deleted."""
    now = time.time() if now is None else now
    ended = (
        select(BUCKETS.c.key)
        .where(BUCKETS.c.expires_at <= int(now))
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    result = await session.execute(delete(BUCKETS).where(BUCKETS.c.key.in_(ended)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _purge_beside(bind: Any, now: float) -> None:
    """`purge` in sessions and transactions of its own on the same engine, a batch each, committed: not
    inside a request's transaction, whose locks it would keep until that request commits. A failure is
    logged, not raised: the counters stay until the next purge."""
    if isinstance(bind, AsyncConnection):  # a session bound to a connection: its engine, not its transaction
        bind = bind.engine
    try:
        deleted = PURGE_BATCH
        while deleted == PURGE_BATCH:
            async with AsyncSession(bind, expire_on_commit=False) as session, writing(session) as connection:
                if connection.dialect.name == "postgresql":
                    await connection.exec_driver_sql(
                        f"SET LOCAL idle_in_transaction_session_timeout = '{PURGE_IDLE_TIMEOUT}'"
                    )
                deleted = await purge(session, now)
                await session.commit()
    except Exception:
        log.warning("the ended rate-limit counters were not purged", exc_info=True)


async def reset(session: AsyncSession, *keys: str) -> None:
    """Delete these counters; joins the session's transaction."""
    await session.execute(delete(RateLimitBucket).where(RateLimitBucket.key.in_(keys)))


def too_many(retry_after: int, what: str, detail: str = "") -> APIError:
    """429 in the error shape, with Retry-After."""
    return APIError(
        429,
        "rate_limited",
        f"Too many {what}{detail}; try again in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


async def enforce(session: AsyncSession, limit: Limit, what: str) -> Taken:
    """Count one hit and commit, or 429 when the limit is reached (nothing counted)."""
    async with writing(session):
        taken = await take(session, limit)
        await session.commit()
    if taken is None:
        raise too_many(limit.retry_after(time.time()), what)
    return taken


def chat_limits(user_id: int, settings: Settings) -> tuple[Limit, Limit]:
    """(messages per minute, generated tokens per day) of one user, shared by /api/chat and /v1."""
    return (
        Limit(f"chat:user:{user_id}", settings.chat_max_messages_per_minute, 60),
        Limit(f"tokens:user:{user_id}", settings.chat_max_tokens_per_day, 24 * 3600),
    )


async def reserve_chat(session: AsyncSession, user_id: int, settings: Settings, max_new_tokens: int) -> Taken:
    """Before a chat message is answered: count the message against the user's minute and reserve its
    `max_new_tokens` from the user's day, joining the session's write transaction (the caller commits it
    with what it writes, so a request that fails later counts nothing); or 429, with the transaction to
    be rolled back. Returns the reservation: the answer gives back what it did not use (settle).

    On PostgreSQL the user's row is locked first. The caller goes on to write rows that take it too, and an
    account's deletion takes the user before its counters: taken in the other order, a turn and the
    deletion of its account would each wait for the other (a deadlock, which PostgreSQL breaks by
    failing one of them after a second)."""
    await lock_user(session, user_id)
    messages, tokens = chat_limits(user_id, settings)
    now = time.time()
    counted = await take(session, messages, 1, now)
    if counted is None:
        raise too_many(messages.retry_after(now), "messages a minute")
    reserved = await take(session, tokens, max_new_tokens, now)
    if reserved is not None:
        return reserved
    left = max(0, tokens.max_hits - await used(session, tokens, now))
    raise APIError(
        429,
        "rate_limited",
        f"This answer may use {max_new_tokens} tokens and {left} of today's {tokens.max_hits} are left: "
        f"ask for fewer (max_new_tokens) or try again in {tokens.retry_after(now)} seconds",
        headers={"Retry-After": str(tokens.retry_after(now))},
    )


async def admit_chat(session: AsyncSession, user_id: int, settings: Settings, max_new_tokens: int) -> Taken:
    """reserve_chat in a transaction of its own, committed (/v1, which writes no rows); a 429 counts
    nothing."""
    async with writing(session):  # a 429 leaves the block: rolled back
        reserved = await reserve_chat(session, user_id, settings, max_new_tokens)
        await session.commit()
    return reserved


async def settle(session: AsyncSession, reserved: Taken, generated: int) -> None:
    """An answer ended after `generated` tokens: give back the rest of its reservation (joins the
    session's transaction)."""
    await give_back(session, reserved, reserved.amount - generated)


def login_keys(email: str) -> list[str]:
    """Prefixes of every login counter of an account (see functions/auth/guard.py)."""
    return [f"login:fail:{email}|", f"login:device:{email}|"]


def keys_of(user_id: int, email: str) -> list[ColumnElement[bool]]:
    """Conditions matching every counter that belongs to one user (deleted with the account)."""
    key = RateLimitBucket.key
    prefixes = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for p in login_keys(email)]
    return [
        key == f"login:untrusted:{email}",
        key == f"login:known:{email}",  # the checks from the account's own browsers
        *(key.like(f"{prefix}%", escape="\\") for prefix in prefixes),
        key == f"chat:user:{user_id}",
        key == f"tokens:user:{user_id}",
    ]
