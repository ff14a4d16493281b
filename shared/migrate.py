"""Alembic migrations, applied on start and by `make migrate`.

python -m shared.migrate upgrade            # to head (the default)
python -m shared.migrate downgrade base     # back to an empty database
python -m shared.migrate revision -m "add x" # autogenerate a new revision from shared/models.py
"""

import argparse
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from shared.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic runs synchronously)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    elif parsed.drivername in ("postgresql", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    url = sync_url(database_url or get_settings().database_url)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def upgrade_on_cold_start() -> None:
    """Lambda entries run with lifespan off, so they migrate here, once per cold start (when enabled)."""
    if get_settings().migrate_on_start:
        upgrade()


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply SLM's database migrations (SLM_DATABASE_URL).")
    parser.add_argument(
        "action",
        nargs="?",
        default="upgrade",
        choices=["upgrade", "downgrade", "revision"],
        help="upgrade to a revision, downgrade to one, or autogenerate a new revision",
    )
    parser.add_argument("revision", nargs="?", default=None, help="target revision (head / base / an id)")
    parser.add_argument("-m", "--message", default="change", help="message of a new revision")
    args = parser.parse_args()
    if args.action == "upgrade":
        upgrade(revision=args.revision or "head")
    elif args.action == "downgrade":
        downgrade(revision=args.revision or "-1")
    else:
        command.revision(alembic_config(), message=args.message, autogenerate=True)


if __name__ == "__main__":
    main()
