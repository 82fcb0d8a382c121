"""What naming a conversation used: the title model's request is billed like an answer

Revision ID: c3e8b6d2a5f1
Revises: 9a1d5f3e7c20
Create Date: 2026-11-24 15:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "c3e8b6d2a5f1"
down_revision = "9a1d5f3e7c20"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("naming_model", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("naming_input_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("naming_output_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("named_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("named_at")
        batch_op.drop_column("naming_output_tokens")
        batch_op.drop_column("naming_input_tokens")
        batch_op.drop_column("naming_model")
