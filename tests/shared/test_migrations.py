from sqlalchemy import create_engine, inspect

from shared.migrate import downgrade, sync_url, upgrade

TABLES = {"users", "conversations", "messages", "rate_limit_buckets"}


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


def test_sync_url_swaps_async_drivers() -> None:
    assert sync_url("sqlite+aiosqlite:///./slm_chat.db") == "sqlite:///./slm_chat.db"
    assert sync_url("postgresql+psycopg://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert sync_url("postgresql://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
