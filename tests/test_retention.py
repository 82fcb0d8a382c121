"""Retention and deleting everything: CHATAPP_RETAIN_DAYS deletes conversations untouched for
longer (never one with an answer streaming), in small batches with the worker's other
greenlets running between them, safely from several workers at once, each deletion recorded;
a person deletes all their conversations after confirming, with or without JavaScript."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from chatapp import retention
from chatapp.auth import accounts
from chatapp.conversations import views as conversation_views
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.models import AuditEvent, Conversation, Message, utcnow
from chatapp.render import anchors
from chatapp.streaming import streams

from .conftest import Configure, html, read_events, send, stream_url

OLD = 31  # days untouched, with CHATAPP_RETAIN_DAYS=30


def seed(app: Flask, owner: str, *, days_old: float, messages: int = 2) -> int:
    """A conversation of `owner`'s with `messages` messages, last touched `days_old` ago."""
    with app.app_context():
        user = accounts.find(owner) or accounts.create(owner, None)
        when = utcnow() - timedelta(days=days_old)
        conversation = Conversation(
            user_id=user.id, model="claude-sonnet-4-6", created_at=when, updated_at=when
        )
        db.session.add(conversation)
        db.session.flush()
        db.session.add_all(
            Message(
                conversation_id=conversation.id,
                role=("user", "assistant")[n % 2],
                content=f"message {n} of an old talk",
            )
            for n in range(messages)
        )
        db.session.commit()
        return conversation.id


def make_old(app: Flask, conversation_id: int, days: float = OLD) -> None:
    with app.app_context():
        db.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(updated_at=utcnow() - timedelta(days=days))
        )
        db.session.commit()


def conversations(app: Flask) -> set[int]:
    with app.app_context():
        return set(db.session.scalars(select(Conversation.id)))


def messages_of(app: Flask, conversation_ids: set[int]) -> int:
    with app.app_context():
        return int(
            db.session.scalar(
                select(func.count(Message.id)).where(Message.conversation_id.in_(conversation_ids))
            )
            or 0
        )


def deletions(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.kind == "conversation_deleted")
            .order_by(AuditEvent.id)
        )
        return [
            {
                "target": e.target_id,
                "user": e.username,
                "detail": e.detail,
                "address": e.address,
            }
            for e in rows
        ]


def conversation_of(fragment: Any) -> int:
    return int(fragment.select_one("#conversation-id")["value"])


def answer_of(fragment: Any) -> int:
    return anchors.message_of(fragment.select_one('article[data-role="assistant"]')["id"])


def wait_ended(app: Flask, message_id: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while message_id in streams(app).live:
        assert time.monotonic() < deadline, "the answer never ended"
        gevent.sleep(0.01)


SLOW = Scenario(
    text="word " * 400,
    pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(40.0, 40.0)),
)


def test_retention_is_off_by_default(app: Flask) -> None:
    old = seed(app, "alice", days_old=10_000)
    assert app.config["RETAIN_DAYS"] == 0 and app.config["AUDIT_RETAIN_DAYS"] == 0
    assert retention.sweep(app) == (0, 0)
    assert conversations(app) == {old}


def test_untouched_conversations_go_with_their_messages_but_never_while_an_answer_streams(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(RETAIN_DAYS=30)
    client = app.test_client()
    upstream.push(Scenario(text="Finished long ago."), SLOW)
    finished = send(client, "An old question")
    read_events(client, stream_url(finished))
    old_alice = conversation_of(finished)
    make_old(app, old_alice)
    old_bob = seed(app, "bob", days_old=OLD, messages=4)
    recent = seed(app, "alice", days_old=29)
    # Taken up again after a month: its answer is streaming now.
    streaming_fragment = send(client, "Back after a month")
    streaming, answer = conversation_of(streaming_fragment), answer_of(streaming_fragment)
    make_old(app, streaming)

    assert retention.sweep(app) == (2, 0)
    assert conversations(app) == {recent, streaming}
    assert messages_of(app, {old_alice, old_bob}) == 0
    assert answer in streams(app).live  # untouched by the sweep
    assert sorted(deletions(app), key=lambda row: row["target"]) == [
        {
            "target": old_alice,
            "user": None,
            "detail": "retention: untouched for over 30 days; owner alice",
            "address": None,
        },
        {
            "target": old_bob,
            "user": None,
            "detail": "retention: untouched for over 30 days; owner bob",
            "address": None,
        },
    ]

    # Once its answer has ended, a conversation untouched for as long goes too.
    client.post(f"/messages/{answer}/stop")
    wait_ended(app, answer)
    assert retention.sweep(app) == (1, 0)
    assert conversations(app) == {recent}


def test_a_sweep_deletes_small_batches_and_lets_the_worker_run_between_them(
    configured: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = configured(RETAIN_DAYS=30)
    old = {seed(app, "alice", days_old=OLD + n, messages=3) for n in range(23)}
    huge = seed(app, "alice", days_old=OLD + 100, messages=40)  # the oldest
    monkeypatch.setattr(retention, "CONVERSATIONS_PER_BATCH", 5)
    monkeypatch.setattr(retention, "MESSAGES_PER_BATCH", 12)
    monkeypatch.setattr(retention, "BATCHES_PER_SWEEP", 3)
    turns = []
    monkeypatch.setattr(retention, "let_streams_run", lambda: turns.append(len(conversations(app))))

    # The conversation with more messages than a batch holds goes alone; then 4 at a time.
    assert retention.sweep(app) == (9, 0)
    assert huge not in conversations(app) and len(conversations(app)) == 24 - 9
    assert turns == [23, 19]  # between the batches, with each batch's deletions committed
    swept = [retention.sweep(app)[0] for _ in range(3)]
    assert swept == [12, 3, 0]
    assert conversations(app) == set() and len(deletions(app)) == len(old) + 1


def test_workers_sweeping_at_once_delete_each_conversation_once(
    configured: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = [configured(RETAIN_DAYS=30) for _ in range(3)]  # each with its own pool
    app = workers[0]
    old = {seed(app, f"person-{n % 4}", days_old=OLD + n % 5) for n in range(60)}
    kept = seed(app, "person-0", days_old=1)
    monkeypatch.setattr(retention, "CONVERSATIONS_PER_BATCH", 4)
    for _ in range(20):
        sweeps = [gevent.spawn(retention.sweep, worker) for worker in workers]
        gevent.joinall(sweeps, raise_error=True)
        if conversations(app) == {kept}:
            break
    assert conversations(app) == {kept}
    targets = [row["target"] for row in deletions(app)]
    assert sorted(targets) == sorted(old)  # each recorded exactly once


def test_the_sweeper_applies_retention(configured: Configure) -> None:
    app = configured(RETAIN_DAYS=30, AUDIT_RETAIN_DAYS=1, SWEEP_INTERVAL=0.05)
    old = seed(app, "alice", days_old=OLD)
    kept = seed(app, "alice", days_old=2)
    with app.app_context():
        db.session.add(
            AuditEvent(kind="sign_in", username="old", created_at=utcnow() - timedelta(days=2))
        )
        db.session.commit()
    assert app.test_client().get("/").status_code == 200  # the worker's sweeper starts
    deadline = time.monotonic() + 10
    while old in conversations(app):
        assert time.monotonic() < deadline, "the sweeper never deleted the old conversation"
        gevent.sleep(0.05)
    assert conversations(app) == {kept}
    with app.app_context():
        names = set(db.session.scalars(select(AuditEvent.username)))
    assert "old" not in names


# -- deleting all of one's conversations ------------------------------------------------------


def test_a_person_deletes_all_their_conversations_after_confirming(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="One."), Scenario(text="Two."), SLOW)
    mine = set()
    for prompt in ("First", "Second"):
        fragment = send(client, prompt)
        read_events(client, stream_url(fragment))
        mine.add(conversation_of(fragment))
    streaming_fragment = send(client, "Still answering")
    mine.add(conversation_of(streaming_fragment))
    answer = answer_of(streaming_fragment)
    while streams(app).live[answer].published == 0:  # well under way
        gevent.sleep(0.01)
    bobs = seed(app, "bob", days_old=0)

    link = html(client.get("/").data).select_one(
        '.sidebar__footer a[href="/conversations/delete-all"]'
    )
    assert link is not None and link.get_text() == "Delete all conversations"
    page = html(client.get("/conversations/delete-all").data)
    assert "your 3 conversations" in page.get_text()
    form = page.select_one('form[method="post"][action="/conversations/delete-all"]')
    assert form.select_one('input[name="confirm"]')["value"] == "yes"
    assert form.select_one('input[name="csrf_token"]') is not None
    assert form.select_one("button").get_text() == "Delete all 3 conversations"
    assert page.find("a", string="Cancel")["href"] == "/"

    unconfirmed = client.post("/conversations/delete-all")
    assert unconfirmed.status_code == 200 and conversations(app) == mine | {bobs}

    done = client.post("/conversations/delete-all", data={"confirm": "yes"})
    assert done.status_code == 303 and done.location == "/"
    assert conversations(app) == {bobs}
    assert messages_of(app, mine) == 0
    wait_ended(app, answer)  # stopped first, as a single delete stops it
    assert upstream.disconnects
    rows = deletions(app)
    assert sorted(row["target"] for row in rows) == sorted(mine)
    assert {(row["user"], row["detail"]) for row in rows} == {("alice", "all of theirs at once")}

    empty = html(client.get("/conversations/delete-all").data)
    assert "You have no conversations." in empty.get_text() and empty.select_one("form") is None
    # From htmx, the page is loaded anew.
    again = client.post(
        "/conversations/delete-all", data={"confirm": "yes"}, headers={"HX-Request": "true"}
    )
    assert again.status_code == 204 and again.headers["HX-Redirect"] == "/"
    assert conversations(app) == {bobs}


def test_deleting_hundreds_of_conversations_lets_the_worker_run_between_batches(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = {seed(app, "alice", days_old=0, messages=2) for _ in range(120)}
    turns = []
    monkeypatch.setattr(
        conversation_views, "let_streams_run", lambda: turns.append(len(conversations(app)))
    )
    page = html(client.get("/conversations/delete-all").data)
    assert page.select_one("form button").get_text() == "Delete all 120 conversations"
    assert client.post("/conversations/delete-all", data={"confirm": "yes"}).status_code == 303
    assert conversations(app) == set() and messages_of(app, many) == 0
    assert turns == [70, 20, 0]
    assert len(deletions(app)) == 120
