"""The SQLite connection settings every session gets, and the writers' lock on SQLite."""

import asyncio
import uuid

from sqlalchemy import text

from shared.database import build_engine, dispose_engine, get_sessionmaker, is_sqlite, writing
from shared.migrate import upgrade


def test_sqlite_connections_use_wal_normal_sync_foreign_keys_and_a_busy_timeout(sqlite_url: str) -> None:
    async def pragmas() -> list[object]:
        engine = build_engine(sqlite_url)
        try:
            async with engine.connect() as connection:
                names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                return [(await connection.execute(text(f"PRAGMA {name}"))).scalar() for name in names]
        finally:
            await engine.dispose()

    assert asyncio.run(pragmas()) == ["wal", 1, 1, 30000]  # synchronous 1 = NORMAL


def test_writers_of_one_process_take_turns_on_sqlite_and_not_on_postgresql(use_database: str) -> None:
    """writing(): on SQLite the writers of one event loop queue on one lock (none sleeps in SQLite's busy
    handler); on PostgreSQL they write at once. Every row lands either way."""
    upgrade(use_database)
    prefix = f"writing-{uuid.uuid4().hex[:8]}-"

    async def scenario() -> tuple[int, int]:
        inside = most = 0

        async def writer(i: int) -> None:
            nonlocal inside, most
            async with get_sessionmaker()() as session, writing(session):
                inside += 1
                most = max(most, inside)
                await session.execute(
                    text(
                        "INSERT INTO rate_limit_buckets (key, window_start, count, expires_at) VALUES (:k, 0, 1, 9999999999)"
                    ),
                    {"k": f"{prefix}{i}"},
                )
                await asyncio.sleep(0.01)  # the transaction stays open while the others run
                await session.commit()
                inside -= 1

        try:
            await asyncio.gather(*(writer(i) for i in range(8)))
            async with get_sessionmaker()() as session:
                query = text("SELECT count(*) FROM rate_limit_buckets WHERE key LIKE :p")
                rows = await session.scalar(query, {"p": f"{prefix}%"})
        finally:
            await dispose_engine()
        return most, int(rows or 0)

    most, rows = asyncio.run(scenario())
    assert rows == 8
    assert most == (1 if is_sqlite(use_database) else 8)


def test_more_writers_than_pooled_connections_all_get_through(use_database: str) -> None:
    """A writer takes its pooled connection before it waits for the lock: 24 sessions at once, more than
    the pool's 5 + 10 connections, half of them holding a connection from a read before they write,
    never leave the lock's holder waiting for the pool while those queued behind it hold every one."""
    upgrade(use_database)
    prefix = f"pool-{uuid.uuid4().hex[:8]}-"

    async def writer(i: int) -> None:
        async with get_sessionmaker()() as session:
            if i % 2:
                await session.execute(text("SELECT 1"))  # holds its connection while it waits
            async with writing(session) as connection:
                await connection.execute(
                    text(
                        "INSERT INTO rate_limit_buckets (key, window_start, count, expires_at) VALUES (:k, 0, 1, 9999999999)"
                    ),
                    {"k": f"{prefix}{i}"},
                )
                await asyncio.sleep(0.005)
                await session.commit()

    async def scenario() -> int:
        try:
            await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(24))), timeout=20)
            async with get_sessionmaker()() as session:
                query = text("SELECT count(*) FROM rate_limit_buckets WHERE key LIKE :p")
                return int(await session.scalar(query, {"p": f"{prefix}%"}) or 0)
        finally:
            await dispose_engine()

    assert asyncio.run(scenario()) == 24


def test_a_failed_write_block_is_rolled_back_on_both_databases(use_database: str) -> None:
    """writing(): what a block wrote before it failed is gone, and the session writes on afterwards."""
    upgrade(use_database)
    key = f"rolled-back-{uuid.uuid4().hex[:8]}"
    insert = text(
        "INSERT INTO rate_limit_buckets (key, window_start, count, expires_at) VALUES (:k, 0, 1, 9999999999)"
    )
    count = text("SELECT count(*) FROM rate_limit_buckets WHERE key LIKE :p")

    async def scenario() -> tuple[int, int]:
        try:
            async with get_sessionmaker()() as session:
                try:
                    async with writing(session):
                        await session.execute(insert, {"k": key})
                        raise RuntimeError("the rest of the transaction failed")
                except RuntimeError:
                    pass
                after_failure = await session.scalar(count, {"p": key})
                async with writing(session):
                    await session.execute(insert, {"k": key + "-next"})
                    await session.commit()
                return int(after_failure or 0), int(await session.scalar(count, {"p": f"{key}%"}) or 0)
        finally:
            await dispose_engine()

    assert asyncio.run(scenario()) == (0, 1)
