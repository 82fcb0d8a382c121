"""The sidebar's order in one index: a person's conversations by last activity

Revision ID: 9a1d5f3e7c20
Revises: 5e2a9c7b4d13
Create Date: 2026-11-24 14:55:00.000000

Every page and every new conversation lists the person's most recent conversations. With an
index on user_id alone, that read every one of their conversations and sorted them; this one
hands over the newest 51 in order. It also serves every lookup by user_id, and nothing orders
all conversations by updated_at alone, so the two single-column indexes go.
"""

from alembic import op

revision = "9a1d5f3e7c20"
down_revision = "5e2a9c7b4d13"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversation_user_recent", ["user_id", "updated_at", "id"], unique=False
        )
        batch_op.drop_index("ix_conversation_user_id")
        batch_op.drop_index("ix_conversation_updated_at")


def downgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_updated_at", ["updated_at"], unique=False)
        batch_op.create_index("ix_conversation_user_id", ["user_id"], unique=False)
        batch_op.drop_index("ix_conversation_user_recent")
