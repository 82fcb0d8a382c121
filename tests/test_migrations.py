"""The migrations build the schema the models describe, and can be undone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from chatapp.extensions import db


def differences(app: Flask) -> list[object]:
    with app.app_context(), db.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), db.metadata)


def test_the_migrated_schema_is_the_models_schema(app: Flask) -> None:
    assert differences(app) == []


def test_the_sidebar_reads_one_index(app: Flask) -> None:
    with app.app_context():
        indexes = {
            i["name"]: i["column_names"] for i in inspect(db.engine).get_indexes("conversation")
        }
    # The sidebar's, and retention's (the conversations untouched the longest).
    assert indexes == {
        "ix_conversation_user_recent": ["user_id", "updated_at", "id"],
        "ix_conversation_updated_at": ["updated_at", "id"],
    }


def test_every_migration_can_be_undone_and_done_again(app: Flask) -> None:
    with app.app_context():
        downgrade(revision="base")
        upgrade()
    assert differences(app) == []


def test_upgrading_keeps_every_row(app: Flask) -> None:
    """A migration that rebuilds a parent table (SQLite's batch mode copies it and drops the
    old one) must not take its children's rows with it by their ON DELETE CASCADE."""
    with app.app_context():
        downgrade(revision="c3e8b6d2a5f1")  # the schema of the last release before these
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO user_account (id, username, password_hash, is_admin, disabled,"
                    " created_at) VALUES (7, 'ann', '!', true, false, '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO conversation (id, user_id, title, model, system_prompt, tools,"
                    " thinking, thinking_budget, created_at, updated_at) VALUES (8, 7, 'Kept',"
                    " 'claude-sonnet-4-6', '', '', false, 4096, '2026-01-01 00:00:00',"
                    " '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO message (id, conversation_id, role, content, thinking, status,"
                    " created_at, updated_at) VALUES (9, 8, 'user', 'Still here?', '',"
                    " 'complete', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
        upgrade()
        with db.engine.connect() as connection:
            kept = connection.execute(
                text(
                    "SELECT u.username, c.title, m.content FROM message m"
                    " JOIN conversation c ON c.id = m.conversation_id"
                    " JOIN user_account u ON u.id = c.user_id"
                )
            ).all()
    assert [tuple(row) for row in kept] == [("ann", "Kept", "Still here?")]
    assert differences(app) == []
