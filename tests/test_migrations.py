"""The migrations build the schema the models describe, and can be undone."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

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
