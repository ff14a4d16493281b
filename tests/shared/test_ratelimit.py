import asyncio
import uuid

from shared import ratelimit
from shared.database import build_engine
from shared.migrate import upgrade


async def _run(url: str, coro_factory):
    from sqlalchemy.ext.asyncio import async_sessionmaker

    engine = build_engine(url)
    try:
        return await coro_factory(async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await engine.dispose()


def test_hits_count_within_a_window_and_reset_in_the_next(database_url: str) -> None:
    upgrade(database_url)
    limit = ratelimit.Limit(f"test:{uuid.uuid4()}", max_hits=3, window_seconds=60)

    async def scenario(sessions):
        async with sessions() as session:
            counts = [await ratelimit.hit(session, limit, now=1200.0 + i) for i in range(3)]
            blocked = await ratelimit.exceeded(session, limit, now=1210.0)
            next_window = await ratelimit.exceeded(session, limit, now=1260.0)
            after = await ratelimit.hit(session, limit, now=1261.0)
            return counts, blocked, next_window, after

    counts, blocked, next_window, after = asyncio.run(_run(database_url, scenario))
    assert counts == [1, 2, 3]
    assert blocked == 50  # seconds left in the window 1200..1260
    assert next_window is None and after == 1


def test_concurrent_hits_from_many_sessions_are_all_counted(database_url: str) -> None:
    upgrade(database_url)
    limit = ratelimit.Limit(f"test:{uuid.uuid4()}", max_hits=100, window_seconds=3600)

    async def scenario(sessions):
        async def one():
            async with sessions() as session:
                return await ratelimit.hit(session, limit, now=7200.0)

        return await asyncio.gather(*(one() for _ in range(20)))

    counts = asyncio.run(_run(database_url, scenario))
    assert sorted(counts) == list(range(1, 21))
