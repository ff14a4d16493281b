"""The limits' counters: one atomic count-and-check per statement, on SQLite and PostgreSQL."""

import asyncio
import uuid

import pytest

from shared import ratelimit
from shared.database import build_engine, writing
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


async def _take(sessions, limit: ratelimit.Limit, amount: int = 1, now: float | None = None):
    async with sessions() as session, writing(session):
        taken = await ratelimit.take(session, limit, amount, now)
        await session.commit()
        return taken


async def _used(sessions, limit: ratelimit.Limit, now: float | None = None) -> int:
    async with sessions() as session:
        return await ratelimit.used(session, limit, now)


def test_take_counts_within_a_window_refuses_past_it_and_starts_again_in_the_next(database_url: str) -> None:
    upgrade(database_url)
    limit = ratelimit.Limit(f"test:{uuid.uuid4()}", max_hits=3, window_seconds=60)

    async def scenario(sessions):
        taken = [await _take(sessions, limit, now=1200.0 + i) for i in range(4)]
        used = await _used(sessions, limit, now=1210.0)
        too_big = await _take(sessions, limit, amount=4, now=1300.0)  # more than the limit: never fits
        next_window = await _take(sessions, limit, now=1261.0)
        return taken, used, too_big, next_window, await _used(sessions, limit, now=1261.0)

    taken, used, too_big, next_window, after = asyncio.run(_run(database_url, scenario))
    assert [t is not None for t in taken] == [True, True, True, False]
    assert used == 3  # the refused hit was not counted
    assert limit.retry_after(1210.0) == 50  # seconds left in the window 1200..1260
    assert too_big is None and next_window is not None and after == 1


def test_a_burst_is_admitted_exactly_up_to_the_limit(database_url: str) -> None:
    """30 sessions take at once, each on its own connection: exactly 10 are admitted and the counter reads
    10 (a check made before counting let 23 of 30 registrations through for a limit of 10)."""
    upgrade(database_url)
    limit = ratelimit.Limit(f"test:{uuid.uuid4()}", max_hits=10, window_seconds=3600)

    async def scenario(sessions):
        results = await asyncio.gather(*(_take(sessions, limit, now=7200.0) for _ in range(30)))
        return results, await _used(sessions, limit, now=7200.0)

    results, used = asyncio.run(_run(database_url, scenario))
    assert sum(r is not None for r in results) == 10 and used == 10


def test_give_back_uncounts_within_its_window_and_never_recreates_a_counter(database_url: str) -> None:
    upgrade(database_url)
    limit = ratelimit.Limit(f"test:{uuid.uuid4()}", max_hits=100, window_seconds=60)

    async def scenario(sessions):
        taken = await _take(sessions, limit, amount=40, now=600.0)
        async with sessions() as session:
            await ratelimit.give_back(session, taken, 25)
            await session.commit()
        partly = await _used(sessions, limit, now=600.0)
        async with sessions() as session:
            await ratelimit.give_back(session, taken, 1000)  # never below zero, never more than taken
            await ratelimit.reset(session, limit.key)
            await ratelimit.give_back(session, taken)  # the counter is gone: it stays gone
            await session.commit()
        gone = await _used(sessions, limit, now=600.0)
        again = await _take(sessions, limit, amount=30, now=600.0)
        later = await _take(sessions, limit, amount=30, now=700.0)  # the next window
        async with sessions() as session:
            await ratelimit.give_back(session, again)  # from the last window: nothing to give back now
            await session.commit()
        return partly, gone, await _used(sessions, limit, now=700.0), later

    partly, gone, after_window, later = asyncio.run(_run(database_url, scenario))
    assert partly == 15 and gone == 0 and later is not None and after_window == 30


def test_admit_chat_refuses_a_spent_minute_or_day_and_counts_nothing_it_refuses(database_url: str) -> None:
    upgrade(database_url)
    settings = Settings(chat_max_messages_per_minute=2, chat_max_tokens_per_day=100)
    user_id = uuid.uuid4().int % 1_000_000_000 + 1_000_000_000  # no other test's counters
    messages, tokens = ratelimit.chat_limits(user_id, settings)

    async def scenario(sessions):
        async with sessions() as session:
            first = await ratelimit.admit_chat(session, user_id, settings, 30)
            await ratelimit.admit_chat(session, user_id, settings, 30)
            with pytest.raises(APIError) as minute:
                await ratelimit.admit_chat(session, user_id, settings, 30)
            counted = (await ratelimit.used(session, messages), await ratelimit.used(session, tokens))
            await ratelimit.settle(session, first, 10)  # the first answer used 10 of its 30 tokens
            await ratelimit.reset(session, messages.key)
            await session.commit()
            settled = await ratelimit.used(session, tokens)
            with pytest.raises(APIError) as day:  # 40 + 61 > 100: the answer could exceed the day
                await ratelimit.admit_chat(session, user_id, settings, 61)
            after_day = (await ratelimit.used(session, messages), await ratelimit.used(session, tokens))
            return minute.value, counted, settled, day.value, after_day

    minute, counted, settled, day, after_day = asyncio.run(_run(database_url, scenario))
    assert minute.status == 429 and "messages a minute" in minute.message
    assert counted == (2, 60)  # the refused message counted neither a message nor tokens
    assert settled == 40
    assert day.status == 429 and "60 of today's 100 are left" in day.message
    assert after_day == (0, 40)  # refused for the day: not counted as a message either


def test_admit_chat_in_a_burst_reserves_no_more_than_the_day(database_url: str) -> None:
    """30 answers of 100 tokens asked at once against a 300-token day: 3 start (the old code counted an
    answer's tokens when it ended, and let 3,750 tokens through)."""
    upgrade(database_url)
    settings = Settings(chat_max_messages_per_minute=1000, chat_max_tokens_per_day=300)
    user_id = uuid.uuid4().int % 100_000_000 + 2_000_000_000  # an int4 id, like every user's
    tokens = ratelimit.chat_limits(user_id, settings)[1]

    async def scenario(sessions):
        async def one() -> bool:
            async with sessions() as session:
                try:
                    await ratelimit.admit_chat(session, user_id, settings, 100)
                    return True
                except APIError:
                    return False

        admitted = await asyncio.gather(*(one() for _ in range(30)))
        return sum(admitted), await _used(sessions, tokens)

    admitted, used = asyncio.run(_run(database_url, scenario))
    assert (admitted, used) == (3, 300)
