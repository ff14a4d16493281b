"""an answer whose generator died is saved as failed ("error"), as DESIGN saves every failure

The stale rule (shared.crud.finalize_stale_answers) used to write a finish reason of its own,
"interrupted", which the stream protocol does not have: the events route then ended such an answer with
`done` and that reason. It now writes "error", so the events route ends it with the `error` event, and the
answers it finalized before are given the same reason here. Downgrading leaves them as they are: a failure
saved by its generator cannot be told from one the stale rule ended.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE messages SET finish_reason = 'error' WHERE finish_reason = 'interrupted'")


def downgrade() -> None:
    pass
