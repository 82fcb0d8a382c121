"""The pieces that carry answers through an outage, each in one app in this process.

The database refuses writes because another connection holds the lock they need (SQLite's
write lock; on PostgreSQL an exclusive lock on the messages, which the app's round trips give
up on after CHATAPP_DATABASE_TIMEOUT). Redis loses an answer's text as a restart without
persistence would. The whole outages, through real gunicorn and a fault proxy, are in
tests/test_outages.py.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import gevent
import psycopg
import pytest
from flask import Flask

from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.models import Message
from chatapp.outage import Outage
from chatapp.streaming import streams

from .conftest import (
    Configure,
    html,
    read_events,
    send,
    stream_url,
)
from .dom import Screen, rendered
from .helpers import answer_id, metric_values

STEADY = Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(100.0, 100.0))


def stored(app: Flask, message_id: int) -> tuple[str, str]:
    with app.app_context():
        message = db.session.get(Message, message_id)
        assert message is not None
        return message.status, message.content


@contextmanager
def writes_refused(app: Flask) -> Iterator[None]:
    """Hold the lock every write of the app's answers needs, from another connection."""
    url = str(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as holder:
        holder.execute("LOCK TABLE message IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            holder.rollback()


class Said(logging.Handler):
    """The lines one logger says (the migrations' logging set-up replaces the root's handlers,
    caplog's among them, so this one sits on the logger itself)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def listening(name: str) -> Iterator[Said]:
    said = Said()
    logger = logging.getLogger(name)
    logger.addHandler(said)
    try:
        yield said
    finally:
        logger.removeHandler(said)


def test_an_outage_is_said_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("the database", consequence="text is kept")
    with caplog.at_level(logging.WARNING, logger="chatapp.outage"):
        outage.succeeded()  # it answers: nothing to say
        for _ in range(20):
            outage.failed(OSError("connection refused"))
        assert outage.down and outage.failures == 20
        outage.succeeded()
        outage.succeeded()
    assert [r.getMessage() for r in caplog.records] == [
        "the database is not reachable (OSError: connection refused); text is kept",
        caplog.records[1].getMessage(),
    ]
    assert caplog.records[1].getMessage().startswith("the database answers again after ")
    assert "(20 failed tries meanwhile)" in caplog.records[1].getMessage()
    assert not outage.down


def test_text_and_an_end_the_database_refuses_are_kept_and_stored_when_it_takes_them(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(DATABASE_TIMEOUT=1, FLUSH_INTERVAL=0.05)
    client = app.test_client()
    text = "".join(
        f"Word {i} of an answer written while the database is locked. " for i in range(12)
    )
    upstream.push(Scenario(text=text, pace=STEADY))  # about 2 s
    fragment = send(client, "Keep it all")
    message_id = answer_id(fragment)
    reader = gevent.spawn(read_events, client, stream_url(fragment))
    gevent.sleep(0.5)
    registry = streams(app)

    def failures(name: str) -> float:
        return metric_values(client.get("/metrics").data.decode())[name]

    with listening("chatapp.outage") as said:
        with writes_refused(app):
            deadline = time.monotonic() + 10
            while not (registry.ends_waiting and failures("chatapp_db_flush_failures_total")):
                # Until Claude has written it all, and a group commit and the end have failed.
                assert time.monotonic() < deadline, "no write failed"
                gevent.sleep(0.05)
            gevent.sleep(0.5)
            # Written, shown, and waiting: the end is not shown before it is stored.
            assert registry.ends_waiting == 1 and message_id in registry.live
            assert not reader.dead and failures("chatapp_final_write_failures_total") > 0
            assert client.get("/healthz").json["answer_ends_waiting"] == 1
        events = reader.get(timeout=15)

    assert stored(app, message_id) == ("complete", text)
    screen = Screen(message_id).take(events)
    assert screen.finished and screen.html == rendered(text)
    final = html(events[-1]["data"]).find("article")
    assert final["data-status"] == "complete"
    assert len([m for m in said.lines if m.startswith("the database is not")]) == 1, said.lines
    assert len([m for m in said.lines if m.startswith("the database answers")]) == 1, said.lines
    values = metric_values(client.get("/metrics").data.decode())
    assert values["chatapp_db_flush_failures_total"] >= 1
    assert values["chatapp_database_reachable"] == 1 and values["chatapp_answer_ends_waiting"] == 0


def test_redis_that_lost_an_answers_text_gets_all_of_it_back(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    """As after a restart of Redis without persistence: the writer's next frame finds Redis
    short of what it sent, and puts the whole text back, so other workers' listeners (late
    ones too) get every character."""
    a, b = workers
    text = "".join(f"Piece {i}: naïve <b>&</b> 🌍. " for i in range(50))
    upstream.push(Scenario(text=text, pace=STEADY))
    fragment = send(a.test_client(), "Write on A")
    message_id = answer_id(fragment)
    gevent.sleep(0.5)
    relay = streams(a).relay
    assert relay is not None
    prefix = a.config["REDIS_PREFIX"]
    lost = relay.redis.delete(
        f"{prefix}:answer:{message_id}:text", f"{prefix}:answer:{message_id}:thinking"
    )
    assert lost == 2
    gevent.sleep(0.3)  # a few frames later
    thinking, delivered = streams(b).relay.delivered(message_id)  # type: ignore[union-attr]
    assert thinking == "" and len(delivered) > 100 and text.startswith(delivered)

    events = read_events(b.test_client(), stream_url(fragment))  # a listener on B, late
    assert Screen(message_id).take(events).html == rendered(text)
    assert stored(b, message_id) == ("complete", text)
