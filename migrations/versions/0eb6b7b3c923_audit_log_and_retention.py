"""The audit log, and an index for retention: conversations by when they were last touched

Revision ID: 0eb6b7b3c923
Revises: 4f9c2e7a1b6d
Create Date: 2026-12-03 10:00:00.000000

Retention (CHATAPP_RETAIN_DAYS) deletes the conversations untouched the longest, a few at a
time; without an index on updated_at each sweep would read every conversation.
"""

import sqlalchemy as sa
from alembic import op

revision = "0eb6b7b3c923"
down_revision = "4f9c2e7a1b6d"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=80), nullable=True),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_audit_event_kind", ["kind", "id"], unique=False)
        batch_op.create_index("ix_audit_event_username", ["username", "id"], unique=False)
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.create_index("ix_conversation_updated_at", ["updated_at", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_updated_at")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_username")
        batch_op.drop_index("ix_audit_event_kind")
        batch_op.drop_index("ix_audit_event_created_at")
    op.drop_table("audit_event")
