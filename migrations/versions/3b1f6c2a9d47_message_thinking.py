"""an answer's thinking, shown in its collapsed Thinking section

Revision ID: 3b1f6c2a9d47
Revises: d8e905c9fc39
Create Date: 2026-11-24 05:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "3b1f6c2a9d47"
down_revision = "d8e905c9fc39"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thinking", sa.Text(), nullable=False, server_default=""))


def downgrade():
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("thinking")
