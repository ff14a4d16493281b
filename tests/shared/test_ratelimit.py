"""The limits' counters: one atomic count-and-check per statement, on SQLite and PostgreSQL."""

import asyncio
import math
import time
import uuid

import pytest

from shared import ratelimit
from shared.database import build_engine, writing
from shared.errors import APIError
from shared.migrate import upgrade
from shared.settings import Settings


@pytest.fixture(autouse=True)
def no_purge_unless_asked(monkeypatch) -> None:
    """These tests count at made-up times long past: a purge, which goes by the clock, would delete their
    counters halfway. The purge's own tests start one themselves."""
    monkeypatch.setattr(ratelimit, "_next_purge", math.inf)


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


async def _keys(sessions, prefix: str) -> dict[str, tuple[int, int]]:
    from sqlalchemy import select

    buckets = ratelimit.BUCKETS.c
    async with sessions() as session:
        rows = await session.execute(
            select(buckets.key, buckets.count, buckets.expires_at).where(buckets.key.like(f"{prefix}%"))
        )
        return {key: (count, expires) for key, count, expires in rows}


def test_purge_deletes_the_counters_whose_window_ended_and_keeps_the_rest(database_url: str) -> None:
    """Every key ever counted kept its row: the table only grew. Now a counter records when its window ends,
    and a purge deletes it from then on; a counter of a window still running keeps its count."""
    upgrade(database_url)
    prefix = f"test:{uuid.uuid4()}:"
    now = time.time()
    ended = ratelimit.Limit(prefix + "ended", max_hits=5, window_seconds=60)
    running = ratelimit.Limit(prefix + "running", max_hits=5, window_seconds=3600)

    async def scenario(sessions):
        await _take(sessions, ended, 2, now=now - 120)  # its window ended a minute ago at least
        await _take(sessions, running, 2, now=now)
        before = await _keys(sessions, prefix)
        async with sessions() as session, writing(session):
            await ratelimit.purge(session, now)
            await session.commit()
        return before, await _keys(sessions, prefix), await _take(sessions, running, 4, now=now)

    before, after, over = asyncio.run(_run(database_url, scenario))
    assert before[ended.key] == (2, ended.window_end(now - 120))
    assert after == {running.key: (2, running.window_end(now))}
    assert over is None  # the purge left the running window's count: 2 + 4 is still over 5


def test_take_starts_one_purge_in_a_transaction_of_its_own(database_url: str, monkeypatch) -> None:
    """The first count after PURGE_EVERY_SECONDS starts a purge beside the request (its own session,
    committed on its own, in batches: 2 counters per transaction here), and the counts within the next
    PURGE_EVERY_SECONDS start none."""
    upgrade(database_url)
    monkeypatch.setattr(ratelimit, "PURGE_BATCH", 2)
    prefix = f"test:{uuid.uuid4()}:"
    now = time.time()
    old = [ratelimit.Limit(f"{prefix}old{i}", max_hits=5, window_seconds=60) for i in range(5)]
    fresh = ratelimit.Limit(prefix + "fresh", max_hits=5, window_seconds=60)

    async def scenario(sessions):
        for limit in old:
            await _take(sessions, limit, now=now - 600)
        monkeypatch.setattr(ratelimit, "_next_purge", 0.0)
        async with sessions() as session, writing(session):
            await ratelimit.take(session, fresh, now=now)
            started = set(ratelimit._purges)
            await session.rollback()  # the request fails: the purge, a transaction of its own, still counts
        await asyncio.gather(*started)
        next_purge = ratelimit._next_purge
        await _take(sessions, fresh, now=now)
        return started, next_purge, set(ratelimit._purges), await _keys(sessions, prefix)

    started, next_purge, second, keys = asyncio.run(_run(database_url, scenario))
    assert len(started) == 1 and not second
    assert next_purge >= now + ratelimit.PURGE_EVERY_SECONDS
    assert set(keys) == {fresh.key}


def test_a_purge_skips_a_counter_another_transaction_holds(database_url: str) -> None:
    """PostgreSQL: a purge never waits for a row another transaction is counting (so it cannot be half of a
    deadlock with a request's transaction, whose locks it would otherwise take in another order); the row
    goes at a later purge. SQLite lets one transaction write at a time: the purge waits its turn there."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite: one writer at a time, no row locks")
    upgrade(database_url)
    prefix = f"test:{uuid.uuid4()}:"
    now = time.time()
    held, free = (ratelimit.Limit(prefix + name, max_hits=5, window_seconds=60) for name in ("held", "free"))

    async def scenario(sessions):
        for limit in (held, free):
            await _take(sessions, limit, now=now - 600)
        async with sessions() as holder:
            await ratelimit.take(holder, held, now=now - 600)  # its row locked, not committed
            async with sessions() as session:
                await asyncio.wait_for(ratelimit.purge(session, now), timeout=30)
                await session.commit()
            await holder.commit()
        return await _keys(sessions, prefix)

    assert set(asyncio.run(_run(database_url, scenario))) == {held.key}
