"""accounts: people who sign in, and whose each conversation is

Revision ID: 7c4e2d8a1f90
Revises: 3b1f6c2a9d47
Create Date: 2026-11-24 05:55:00

"""

import sqlalchemy as sa
from alembic import op

revision = "7c4e2d8a1f90"
down_revision = "3b1f6c2a9d47"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_conversation_user_id"), ["user_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_conversation_user_id", "user_account", ["user_id"], ["id"], ondelete="CASCADE"
        )


def downgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_constraint("fk_conversation_user_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_conversation_user_id"))
        batch_op.drop_column("user_id")
    op.drop_table("user_account")
