"""Sharing a conversation: a snapshot of its messages and files, read through a link

Revision ID: b5d1e8f2a4c6
Revises: b5d1f7a3c8e2
Create Date: 2026-12-04 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "b5d1e8f2a4c6"
down_revision = "b5d1f7a3c8e2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "share",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shared_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_id"),
        sa.UniqueConstraint("token"),
    )
    with op.batch_alter_table("share", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_share_user_id"), ["user_id"], unique=False)
    op.create_table(
        "shared_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("thinking", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("transcript", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["share_id"], ["share.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("shared_message", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shared_message_share_id"), ["share_id"], unique=False)
    op.create_table(
        "shared_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.Integer(), nullable=False),
        sa.Column("shared_message_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["share_id"], ["share.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["shared_message_id"], ["shared_message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("shared_file", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shared_file_share_id"), ["share_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_shared_file_shared_message_id"), ["shared_message_id"], unique=False
        )


def downgrade():
    op.drop_table("shared_file")
    op.drop_table("shared_message")
    op.drop_table("share")
