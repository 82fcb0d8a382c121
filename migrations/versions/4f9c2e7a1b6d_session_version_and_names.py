"""Accounts: a session version that ends old sessions, and names unique whatever their case

Revision ID: 4f9c2e7a1b6d
Revises: a7c3e9f1b264
Create Date: 2026-12-03 10:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

revision = "4f9c2e7a1b6d"
down_revision = "a7c3e9f1b264"
branch_labels = None
depends_on = None


def upgrade():
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT lower(username) FROM user_account GROUP BY lower(username) "
                "HAVING count(*) > 1"
            )
        )
        .scalars()
        .all()
    )
    if clashes:
        raise RuntimeError(
            "Some accounts' names differ only in case ("
            + ", ".join(sorted(clashes))
            + "); usernames are now unique regardless of case. Rename or delete one of each "
            "pair in the user_account table, then upgrade again."
        )
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("username_lower", sa.String(length=80), nullable=True))
    op.execute("UPDATE user_account SET username_lower = lower(username)")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.alter_column("username_lower", existing_type=sa.String(length=80), nullable=False)
        batch_op.create_unique_constraint("uq_user_account_username_lower", ["username_lower"])


def downgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_constraint("uq_user_account_username_lower", type_="unique")
        batch_op.drop_column("username_lower")
        batch_op.drop_column("session_version")
