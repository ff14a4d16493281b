"""Fixed-window counters kept in the database, so a limit holds across processes and Lambda instances."""

import time
from dataclasses import dataclass

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import RateLimitBucket


@dataclass(frozen=True)
class Limit:
    key: str
    max_hits: int
    window_seconds: int

    def window_start(self, now: float) -> int:
        return int(now) - int(now) % self.window_seconds

    def retry_after(self, now: float) -> int:
        return max(1, self.window_start(now) + self.window_seconds - int(now))


async def exceeded(session: AsyncSession, limit: Limit, now: float | None = None) -> int | None:
    """Seconds to wait when the window's count has reached the limit, else None. Counts nothing."""
    now = time.time() if now is None else now
    row = (
        await session.execute(select(RateLimitBucket).where(RateLimitBucket.key == limit.key))
    ).scalar_one_or_none()
    if row is not None and row.window_start == limit.window_start(now) and row.count >= limit.max_hits:
        return limit.retry_after(now)
    return None


async def hit(session: AsyncSession, limit: Limit, now: float | None = None) -> int:
    """Count one hit atomically (one upsert, safe under concurrency) and commit; returns the window's count."""
    now = time.time() if now is None else now
    start = limit.window_start(now)
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    bucket = RateLimitBucket
    stmt = insert(bucket).values(key=limit.key, window_start=start, count=1)
    same_window = bucket.window_start == stmt.excluded.window_start
    upsert = stmt.on_conflict_do_update(
        index_elements=[bucket.key],
        set_={
            "count": case((same_window, bucket.count + 1), else_=1),
            "window_start": stmt.excluded.window_start,
        },
    ).returning(bucket.count)
    count = (await session.execute(upsert)).scalar_one()
    await session.commit()
    return int(count)


async def reset(session: AsyncSession, key: str) -> None:
    await session.execute(delete(RateLimitBucket).where(RateLimitBucket.key == key))
    await session.commit()
