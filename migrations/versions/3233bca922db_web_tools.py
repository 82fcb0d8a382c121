"""Web search and web fetch: a conversation's server tools, and each answer's searches

Revision ID: 3233bca922db
Revises: 0eb6b7b3c923
Create Date: 2026-12-04 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "3233bca922db"
down_revision = "0eb6b7b3c923"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("server_tools", sa.String(length=100), server_default="", nullable=False)
        )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("web_search_requests", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("web_search_requests")
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_column("server_tools")
