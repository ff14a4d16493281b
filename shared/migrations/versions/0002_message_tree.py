"""messages form a tree: parent_id, current_message_id; answers saved while they stream, with their context

Today's linear conversations become chains: each message's parent is the one before it, and the
conversation's active branch ends at its newest message.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("token_ids", sa.Text(), nullable=True))
        batch.add_column(sa.Column("context", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
        batch.create_foreign_key(
            "fk_messages_parent_id_messages", "messages", ["parent_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_messages_parent_id", ["parent_id"])
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("current_message_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE messages SET parent_id = (SELECT MAX(p.id) FROM messages p "
        "WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id), "
        "updated_at = created_at"
    )
    op.execute(
        "UPDATE conversations SET current_message_id = "
        "(SELECT MAX(m.id) FROM messages m WHERE m.conversation_id = conversations.id)"
    )
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("updated_at", existing_type=TS, nullable=False)


def downgrade() -> None:
    # every message stays; the old schema reads them in id order, branches interleaved
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("current_message_id")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_parent_id")
        batch.drop_constraint("fk_messages_parent_id_messages", type_="foreignkey")
        batch.drop_column("updated_at")
        batch.drop_column("token_ids")
        batch.drop_column("context")
        batch.drop_column("parent_id")
