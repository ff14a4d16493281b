"""rate-limit counters know when their window ends, so the ended ones are purged

Every key ever counted ("login:fail:{email}|{address}" for each pair a credential-stuffing run tries)
kept its row for good: the table only grew. Each counter now records when its window ends (expires_at),
and ratelimit.purge deletes the ended ones. The counters already there get their window's start plus
seven days, longer than any window the settings' defaults give (the longest is a day), so none is
forgotten early; a counter written by code from before this migration (a function not yet redeployed)
gets a date in 2100 from the column's default, until new code counts it again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEPT_SECONDS = 7 * 24 * 3600  # what a counter from before this migration is kept for, from its window's start
# a function not yet redeployed (its code from before 0005) counts without an expires_at: its rows get this,
# 2100-01-01, so none of its counts is forgotten early; the next count by new code sets the real one
KEPT_BY_OLD_CODE = "4102444800"


def upgrade() -> None:
    with op.batch_alter_table("rate_limit_buckets") as batch:
        batch.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE rate_limit_buckets SET expires_at = window_start + {KEPT_SECONDS}")
    with op.batch_alter_table("rate_limit_buckets") as batch:
        batch.alter_column(
            "expires_at", existing_type=sa.BigInteger(), nullable=False, server_default=KEPT_BY_OLD_CODE
        )
        batch.create_index("ix_rate_limit_buckets_expires_at", ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("rate_limit_buckets") as batch:
        batch.drop_index("ix_rate_limit_buckets_expires_at")
        batch.drop_column("expires_at")
