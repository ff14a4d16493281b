from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine, inspect, text

from shared.migrate import downgrade, sync_url, upgrade

TABLES = {"users", "conversations", "messages", "api_keys", "rate_limit_buckets"}


def tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names - {"alembic_version"}


def test_upgrade_empty_database_to_head_and_back(database_url: str) -> None:
    downgrade(database_url, "base")  # the session database may have been migrated by other tests
    assert tables(database_url) == set()
    upgrade(database_url)
    assert tables(database_url) == TABLES
    upgrade(database_url)  # applying again changes nothing
    downgrade(database_url, "base")
    assert tables(database_url) == set()
    upgrade(database_url)


def test_models_match_the_migrations(database_url: str) -> None:
    """Autogenerate finds nothing to do: shared/models.py and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shared.models import Base

    upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


@contextmanager
def written_at(database_url: str, revision: str) -> Iterator[Connection]:
    """A transaction on an empty database migrated to `revision` only: the rows a migration after it meets."""
    downgrade(database_url, "base")
    upgrade(database_url, revision)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def read_at_head(database_url: str) -> Iterator[Connection]:
    """The same database migrated to head, to read; then emptied and migrated again for the other tests."""
    upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()
        downgrade(database_url, "base")
        upgrade(database_url)


def test_sync_url_swaps_async_drivers() -> None:
    assert sync_url("sqlite+aiosqlite:///./slm_chat.db") == "sqlite:///./slm_chat.db"
    assert sync_url("postgresql+psycopg://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert sync_url("postgresql://u:p@h/d") == "postgresql+psycopg://u:p@h/d"


def test_linear_conversations_become_chains(database_url: str) -> None:
    """0002 on a database that holds conversations: each message follows the one before it, the
    active branch ends at the newest, and nothing is lost."""
    now = "2026-11-30 12:00:00+00:00"
    with written_at(database_url, "0001") as c:
        c.execute(
            text("INSERT INTO users (id, email, password_hash, created_at) VALUES (1, 'a@b.co', 'x', :t)"),
            {"t": now},
        )
        for conversation in (1, 2, 3):
            c.execute(
                text(
                    "INSERT INTO conversations (id, user_id, title, created_at, updated_at) "
                    "VALUES (:id, 1, 'c', :t, :t)"
                ),
                {"id": conversation, "t": now},
            )
        # conversation 1: two turns, conversation 2: its ids interleaved with 1's, 3: empty
        for mid, conversation, role in [(1, 1, "user"), (2, 1, "assistant"), (3, 2, "user"), (4, 1, "user"),
                                        (5, 2, "assistant"), (6, 1, "assistant")]:  # fmt: skip
            c.execute(
                text(
                    "INSERT INTO messages (id, conversation_id, role, content, finish_reason, created_at) "
                    "VALUES (:id, :c, :r, :content, :f, :t)"
                ),
                {
                    "id": mid,
                    "c": conversation,
                    "r": role,
                    "content": f"m{mid}",
                    "t": now,
                    "f": "eos" if role == "assistant" else None,
                },  # fmt: skip
            )
    with read_at_head(database_url) as c:
        parents = dict(c.execute(text("SELECT id, parent_id FROM messages ORDER BY id")).all())
        current = dict(c.execute(text("SELECT id, current_message_id FROM conversations")).all())
        contents = [row[0] for row in c.execute(text("SELECT content FROM messages ORDER BY id"))]
        stamps = c.execute(text("SELECT COUNT(*) FROM messages WHERE updated_at IS NULL")).scalar()
    assert parents == {1: None, 2: 1, 3: None, 4: 2, 5: 3, 6: 4}
    assert current == {1: 6, 2: 5, 3: None}
    assert contents == [f"m{i}" for i in range(1, 7)] and stamps == 0


def test_counters_from_before_0005_are_kept_a_week_from_their_window(database_url: str) -> None:
    """0005 on a database that holds rate-limit counters: each gets its window's start plus seven days,
    longer than any default window, so no count is forgotten early; the counts stay."""
    with written_at(database_url, "0004") as c:
        c.execute(
            text("INSERT INTO rate_limit_buckets (key, window_start, count) VALUES ('login:ip:1', 1800, 3)")
        )
    with read_at_head(database_url) as c:
        rows = c.execute(text("SELECT key, count, expires_at FROM rate_limit_buckets")).all()
    assert [tuple(row) for row in rows] == [("login:ip:1", 3, 1800 + 7 * 24 * 3600)]


def test_answers_the_stale_rule_called_interrupted_become_failed_at_0006(database_url: str) -> None:
    """0006 on a database whose stale rule wrote "interrupted" (the stream protocol has no such reason):
    those answers become "error", as a failure is saved now; every other reason and the content stay."""
    now = "2026-12-07 09:00:00+00:00"
    reasons = {2: "interrupted", 4: "eos", 6: "stopped", 8: None}
    with written_at(database_url, "0005") as c:
        c.execute(
            text(
                "INSERT INTO users (id, email, password_hash, subject, created_at) "
                "VALUES (1, 'a@b.co', 'x', 's1', :t)"
            ),
            {"t": now},
        )
        c.execute(
            text(
                "INSERT INTO conversations (id, user_id, title, created_at, updated_at) "
                "VALUES (1, 1, 'c', :t, :t)"
            ),
            {"t": now},
        )
        for mid in range(1, 9):
            c.execute(
                text(
                    "INSERT INTO messages (id, conversation_id, parent_id, role, content, finish_reason, "
                    "created_at, updated_at) VALUES (:id, 1, :parent, :role, :content, :f, :t, :t)"
                ),
                {
                    "id": mid,
                    "parent": mid - 1 if mid > 1 else None,
                    "role": "assistant" if mid % 2 == 0 else "user",
                    "content": f"m{mid}",
                    "f": reasons.get(mid),
                    "t": now,
                },
            )
    with read_at_head(database_url) as c:
        rows = c.execute(text("SELECT id, finish_reason, content FROM messages ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [
        (1, None, "m1"), (2, "error", "m2"), (3, None, "m3"), (4, "eos", "m4"),
        (5, None, "m5"), (6, "stopped", "m6"), (7, None, "m7"), (8, None, "m8"),
    ]  # fmt: skip
