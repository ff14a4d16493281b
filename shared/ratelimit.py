"""Fixed-window counters kept in the database, so a limit holds across processes and Lambda instances."""

import time
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, Table, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.database import get_sessionmaker, writing
from shared.errors import APIError
from shared.models import RateLimitBucket
from shared.settings import Settings, get_settings


@dataclass(frozen=True)
class Limit:
    key: str
    max_hits: int
    window_seconds: int

    def window_start(self, now: float) -> int:
        return int(now) - int(now) % self.window_seconds

    def retry_after(self, now: float) -> int:
        return max(1, self.window_start(now) + self.window_seconds - int(now))


def _spent(row: RateLimitBucket | None, limit: Limit, now: float) -> int | None:
    """Seconds to wait when this counter's window has reached the limit, else None."""
    if row is not None and row.window_start == limit.window_start(now) and row.count >= limit.max_hits:
        return limit.retry_after(now)
    return None


async def exceeded(session: AsyncSession, limit: Limit, now: float | None = None) -> int | None:
    """Seconds to wait when the window's count has reached the limit, else None. Counts nothing."""
    now = time.time() if now is None else now
    row = await session.scalar(select(RateLimitBucket).where(RateLimitBucket.key == limit.key))
    return _spent(row, limit, now)


async def hit(session: AsyncSession, limit: Limit, now: float | None = None, amount: int = 1) -> int:
    """Count `amount` hits atomically (one upsert, safe under concurrency) and commit; returns the
    window's count."""
    async with writing(session):
        count = await add(session, limit, now, amount)
        await session.commit()
    return count


async def add(session: AsyncSession, limit: Limit, now: float | None = None, amount: int = 1) -> int:
    """hit without the commit: the upsert joins the session's transaction."""
    now = time.time() if now is None else now
    start = limit.window_start(now)
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, RateLimitBucket.__table__)  # Core: no ORM bulk-insert machinery per hit
    bucket = table.c
    stmt = insert(table).values(key=limit.key, window_start=start, count=amount)
    same_window = bucket.window_start == stmt.excluded.window_start
    upsert = stmt.on_conflict_do_update(
        index_elements=[bucket.key],
        set_={
            "count": case((same_window, bucket.count + stmt.excluded.count), else_=stmt.excluded.count),
            "window_start": stmt.excluded.window_start,
        },
    ).returning(bucket.count)
    return int((await session.execute(upsert)).scalar_one())


async def reset(session: AsyncSession, key: str) -> None:
    await session.execute(delete(RateLimitBucket).where(RateLimitBucket.key == key))
    await session.commit()


def too_many(retry_after: int, what: str) -> APIError:
    """429 in the error shape, with Retry-After."""
    return APIError(
        429,
        "rate_limited",
        f"Too many {what}; try again in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


async def enforce(session: AsyncSession, limit: Limit, what: str, count: bool = True) -> None:
    """429 when the limit is reached; else count this hit (unless count=False)."""
    if (retry_after := await exceeded(session, limit)) is not None:
        raise too_many(retry_after, what)
    if count:
        await hit(session, limit)


def chat_limits(user_id: int, settings: Settings) -> tuple[Limit, Limit]:
    """(messages per minute, generated tokens per day) of one user, shared by /api/chat and /v1."""
    return (
        Limit(f"chat:user:{user_id}", settings.chat_max_messages_per_minute, 60),
        Limit(f"tokens:user:{user_id}", settings.chat_max_tokens_per_day, 24 * 3600),
    )


async def admit_chat(session: AsyncSession, user_id: int, settings: Settings) -> None:
    """Before a chat message is answered: 429 when the user's minute of messages or day of tokens is
    spent; else the message is counted (its tokens are counted when the answer ends: count_tokens)."""
    messages, tokens = chat_limits(user_id, settings)
    now = time.time()
    keys = (tokens.key, messages.key)  # both counters in one read: this is on every answer's first-token path
    rows = {
        r.key: r for r in await session.scalars(select(RateLimitBucket).where(RateLimitBucket.key.in_(keys)))
    }
    for limit, what in ((tokens, "generated tokens today"), (messages, "messages a minute")):
        if (retry_after := _spent(rows.get(limit.key), limit, now)) is not None:
            raise too_many(retry_after, what)
    await hit(session, messages, now)


async def count_tokens(user_id: int, tokens: int, session: AsyncSession | None = None) -> None:
    """Add an answer's generated tokens to the user's day: in `session`'s transaction (the caller
    commits), else in a session of its own."""
    if tokens <= 0:
        return
    limit = chat_limits(user_id, get_settings())[1]
    if session is not None:
        await add(session, limit, amount=tokens)
        return
    async with get_sessionmaker()() as own:
        await hit(own, limit, amount=tokens)


def keys_of(user_id: int, email: str) -> list[ColumnElement[bool]]:
    """Conditions matching every counter that belongs to one user (deleted with the account)."""
    key = RateLimitBucket.key
    escaped = email.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [
        key == f"login:account:{email}",
        key == f"login:throttle:{email}",
        key.like(f"login:fail:{escaped}|%", escape="\\"),
        key == f"chat:user:{user_id}",
        key == f"tokens:user:{user_id}",
    ]
