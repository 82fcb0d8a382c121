"""Models from the Models API: the last good list, and each conversation's effort level

Revision ID: e41b7a9c2d58
Revises: c3e8b6d2a5f1
Create Date: 2026-12-03 04:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "e41b7a9c2d58"
down_revision = "c3e8b6d2a5f1"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "listed_model",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("effort", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("effort")
    op.drop_table("listed_model")
