"""Tools and extended thinking per conversation; an answer's transcript for the next request

Revision ID: 5e2a9c7b4d13
Revises: 7c4e2d8a1f90
Create Date: 2026-11-24 08:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "5e2a9c7b4d13"
down_revision = "7c4e2d8a1f90"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tools", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("thinking", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("thinking_budget", sa.Integer(), nullable=False, server_default="4096")
        )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transcript", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("transcript")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("thinking_budget")
        batch_op.drop_column("thinking")
        batch_op.drop_column("tools")
