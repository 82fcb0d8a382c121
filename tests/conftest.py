"""Fixtures: a per-test app on its own database, talking to a fake upstream on loopback.

The suite runs under `python -m gevent.monkey --module pytest` (tests/run.sh), as the app
runs under gunicorn's gevent worker: generations are greenlets and the fake serves in the
same hub.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from chatapp import create_app
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace
from chatapp.streaming import streams

FAST = Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(2000.0, 2000.0), ping_seconds=1.0)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """The fake Anthropic API, fast-paced; tests push scenarios onto it."""
    fake = FakeUpstream(FAST)
    fake.start()
    yield fake
    fake.stop()


def database_url(tmp_path: Path) -> str:
    """PostgreSQL when DATABASE_URL says so, else a fresh SQLite file for this test."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'test.sqlite'}"


def app_config(tmp_path: Path, upstream: FakeUpstream, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "TESTING": True,
        "SECRET_KEY": "test",
        "WTF_CSRF_ENABLED": False,
        "SQLALCHEMY_DATABASE_URI": database_url(tmp_path),
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": upstream.url,
        "UPSTREAM_MAX_RETRIES": 0,
        "HEARTBEAT_SECONDS": 5.0,
        "TITLE_MODEL": "",  # no title requests unless a test asks: they would use its scenarios
        # The fake lists newer models (the default would be its newest Sonnet); the tests that
        # do not choose one use this, with its price and both kinds of thinking.
        "MODEL": "claude-sonnet-4-6",
        # Test clients are signed in by a trusted proxy's header (see SignedInClient).
        "TRUSTED_USER_HEADER": USER_HEADER,
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    config.update(overrides)
    return config


USER_HEADER = "X-Remote-User"


class SignedInClient(FlaskClient):
    """A test client signed in as `alice` (or `user=` someone else, or `user=None`: nobody)."""

    def __init__(self, *args: Any, user: str | None = "alice", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if user is not None:
            self.environ_base["HTTP_X_REMOTE_USER"] = user


def make_app(config: dict[str, Any]) -> Flask:
    app = create_app(config)
    app.test_client_class = SignedInClient
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade()
    return app


Configure = Callable[..., Flask]


@pytest.fixture
def configured(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Configure]:
    """Make apps with config overrides; each is shut down and its engine disposed afterwards."""
    made: list[Flask] = []

    def configure(**overrides: Any) -> Flask:
        app = make_app(app_config(tmp_path, upstream, **overrides))
        made.append(app)
        return app

    yield configure
    for app in made:
        streams(app).shutdown()
        with app.app_context():
            db.engine.dispose()


# Tests that need Redis use this one (each with a key prefix of its own).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def workers(tmp_path: Path, upstream: FakeUpstream) -> Iterator[tuple[Flask, Flask]]:
    """Two workers (apps) on one database and one Redis, as two gunicorn workers are."""
    prefix = f"chatapp-test-{uuid.uuid4().hex[:8]}"
    config = app_config(tmp_path, upstream, REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix)
    first = make_app(config)
    second = create_app(config)  # the same database, already migrated
    second.test_client_class = SignedInClient
    yield first, second
    for worker in (first, second):
        streams(worker).shutdown()
        with worker.app_context():
            db.engine.dispose()


@pytest.fixture
def app(configured: Configure) -> Flask:
    return configured()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def user_id(app: Flask, username: str = "alice") -> int:
    """The id of the account `username` (made without a password if there is none yet)."""
    from chatapp.auth import accounts

    with app.app_context():
        user = accounts.find(username) or accounts.create(username, None)
        return user.id


def html(body: bytes | str) -> BeautifulSoup:
    return BeautifulSoup(body, "html.parser")


def send(client: FlaskClient, content: str, conversation_id: int | None = None) -> BeautifulSoup:
    """Post a prompt as the composer does; return the parsed answer (the two messages)."""
    response = client.post(
        "/messages",
        data={"content": content, "conversation_id": conversation_id or ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.data
    return html(response.data)


def asked(request: dict[str, Any]) -> str:
    """The text of the newest user turn of a request the fake upstream received."""
    content = request["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


def stream_url(fragment: BeautifulSoup) -> str:
    article = fragment.select_one('article[data-role="assistant"]')
    assert article is not None
    return str(article["sse-connect"])


def read_events(
    client: FlaskClient, url: str, headers: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """Read a whole event stream into events: {"event", "id", "data", "comment"}."""
    response = client.get(url, headers=headers or {}, buffered=False)
    assert response.status_code == 200
    return parse_events(b"".join(response.response).decode())


def parse_events(raw: str) -> list[dict[str, str]]:
    events = []
    for block in re.split(r"\n\n", raw):
        if not block:
            continue
        event: dict[str, str] = {}
        data = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                event["comment"] = value
            elif field == "data":
                data.append(value)
            else:
                event[field] = value
        if data:
            event["data"] = "\n".join(data)
        events.append(event)
    return events
