"""The SQLite driver (shared/sqlite.py): SQLAlchemy's statements through it behave as through aiosqlite's
own cursors (rows, new ids, counts, errors, transactions), each in one hop to the connection's thread,
and a commit or rollback with nothing to end makes none."""

import asyncio
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.database import build_engine

ITEMS = Table(
    "items", MetaData(), Column("id", Integer, primary_key=True), Column("name", String, unique=True)
)


def test_statements_return_rows_ids_counts_and_errors_in_one_hop_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []  # each call into the connection's thread: a statement's first word, or the method
    real_execute = aiosqlite.Connection._execute

    async def execute(self: aiosqlite.Connection, function, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(args[1].split()[0] if function.__name__ == "_run" else function.__name__)
        return await real_execute(self, function, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", execute)

    async def scenario() -> None:
        engine = build_engine(f"sqlite+aiosqlite:///{tmp_path}/driver.db")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(ITEMS.metadata.create_all)
            async with engine.connect() as connection:
                hops.clear()
                first = await connection.execute(insert(ITEMS), {"name": "one"})
                assert first.inserted_primary_key == (1,)
                await connection.execute(insert(ITEMS), [{"name": "two"}, {"name": "three"}])  # executemany
                renamed = await connection.execute(
                    update(ITEMS).where(ITEMS.c.id > bindparam("above")).values(name=ITEMS.c.name + "!"),
                    {"above": 1},
                )
                assert renamed.rowcount == 2
                renamed_each = await connection.execute(  # executemany, as the saver's partial saves run
                    update(ITEMS).where(ITEMS.c.id == bindparam("item")).values(name=bindparam("new_name")),
                    [{"item": 2, "new_name": "two"}, {"item": 3, "new_name": "three"}],
                )
                assert renamed_each.rowcount == 2
                returned = await connection.execute(
                    insert(ITEMS).values(name="four").returning(ITEMS.c.id, ITEMS.c.name)
                )
                assert returned.all() == [(4, "four")]
                found = await connection.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))
                assert found.scalars().all() == ["one", "two", "three", "four"]
                await connection.commit()
                await connection.rollback()  # nothing to roll back: no hop
                with pytest.raises(IntegrityError):  # sqlite3's error, as SQLAlchemy gives it
                    await connection.execute(insert(ITEMS), {"name": "five"})
                    await connection.execute(insert(ITEMS), {"name": "one"})
                await connection.rollback()  # "five" goes with it
                assert (await connection.execute(select(ITEMS.c.id))).scalars().all() == [1, 2, 3, 4]
            # one hop a statement (the two-row insert is one statement: insertmanyvalues), a commit or a
            # rollback only with a transaction open (the pool's rollback on return found none)
            assert hops == [
                *("INSERT", "INSERT", "UPDATE", "UPDATE", "INSERT", "SELECT", "commit"),
                *("INSERT", "INSERT", "rollback", "SELECT"),
            ]
        finally:
            await engine.dispose()

    asyncio.run(scenario())
