"""ids never reused (SQLite AUTOINCREMENT on every table); users get a random token subject

Without AUTOINCREMENT, SQLite gives a new row the largest id in use + 1, so the id of a deleted user,
conversation or message comes back with the next insert: an old token opened the next account and a late
save of a deleted conversation's answer landed in another user's answer. PostgreSQL's sequences never go
back, so only SQLite's tables are rebuilt (rows, ids and indexes kept; the sequence starts at the largest
id kept). Tokens name users by a random subject from now on, so tokens issued before this migration are
refused: their owners log in again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "conversations", "messages", "api_keys")


def _rebuild(autoincrement: bool) -> None:
    """SQLite: copy each table into one created with (or without) AUTOINCREMENT. Alembic's connection runs
    with foreign keys off, so dropping the old tables cascades nothing."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        assert bind.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0, "a rebuild would cascade deletes"
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("subject", sa.String(32), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("subject", sa.String(32)))
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(users.update().where(users.c.id == user_id).values(subject=secrets.token_hex(16)))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("subject", existing_type=sa.String(32), nullable=False)
        batch.create_index("ix_users_subject", ["subject"], unique=True)
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_subject")
        batch.drop_column("subject")
