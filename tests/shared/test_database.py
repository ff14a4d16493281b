"""The SQLite connection settings every session gets."""

import asyncio

from sqlalchemy import text

from shared.database import build_engine


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
