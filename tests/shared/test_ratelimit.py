import asyncio
import uuid

import pytest

from shared import ratelimit
from shared.database import build_engine
from shared.errors import APIError
from shared.migrate import upgrade
from shared.settings import Settings


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


def test_admit_chat_refuses_a_spent_minute_or_day_and_counts_only_what_it_admits(database_url: str) -> None:
    upgrade(database_url)
    settings = Settings(chat_max_messages_per_minute=2, chat_max_tokens_per_day=100)
    user_id = uuid.uuid4().int % 1_000_000_000 + 1_000_000_000  # no other test's counters
    messages, tokens = ratelimit.chat_limits(user_id, settings)

    async def scenario(sessions):
        async with sessions() as session:
            for _ in range(2):
                await ratelimit.admit_chat(session, user_id, settings)
            with pytest.raises(APIError) as minute:
                await ratelimit.admit_chat(session, user_id, settings)
            counted = await ratelimit.hit(session, messages, amount=0)  # reads the count back
            await ratelimit.reset(session, messages.key)
            await ratelimit.hit(session, tokens, amount=100)  # the day's tokens are spent
            with pytest.raises(APIError) as day:
                await ratelimit.admit_chat(session, user_id, settings)
            after_day = await ratelimit.hit(session, messages, amount=0)
            return minute.value, counted, day.value, after_day

    minute, counted, day, after_day = asyncio.run(_run(database_url, scenario))
    assert minute.status == 429 and "messages a minute" in minute.message
    assert counted == 2  # the refused message was not counted
    assert day.status == 429 and "generated tokens today" in day.message
    assert after_day == 0  # refused for the day: not counted as a message either
