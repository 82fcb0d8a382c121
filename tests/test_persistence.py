"""Storing answers: group commit in short transactions, the sweeper, the one log line per answer."""

from __future__ import annotations

import json
import logging
import math

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient

from chatapp.conversations import forms, store
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.metrics import Meter
from chatapp.models import Conversation, Message, User, utcnow
from chatapp.streaming import persistence, streams

from .conftest import html, read_events, send, user_id
from .helpers import Waiting, answer_id, stored, wait_finished


class Receiving:
    """A live answer as the flusher sees it: `text` received, what is stored of it counted."""

    def __init__(self, message_id: int, text: str) -> None:
        self.message_id = message_id
        self.text = text
        self.stored = 0

    def unstored(self) -> persistence.Unstored:
        return persistence.Unstored(self.stored, self.text[self.stored :], 1, 0, "", 0)

    def mark_stored(self, written: persistence.Unstored) -> None:
        self.stored += len(written.text)


def test_text_is_stored_in_batches_while_it_streams(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    text = "token " * 300
    upstream.push(
        Scenario(
            text=text, pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(400.0, 400.0))
        )
    )
    fragment = send(client, "Batch it")
    message_id = answer_id(fragment)
    flusher = streams(app).flusher
    generation = streams(app).live[message_id]
    seen_partial = False
    while message_id in streams(app).live:
        gevent.sleep(0.1)
        row = stored(app, message_id)
        partial = row.content
        assert text.startswith(partial)  # appended in order, never twice
        if 0 < len(partial) < len(text) and row.status == "streaming":
            seen_partial = True
            # The prompt's tokens are stored with the text: billed, whatever happens next.
            assert row.input_tokens and row.input_tokens > 0 and row.output_tokens is None
    deltas = len(generation.reply.text_parts)
    assert seen_partial  # stored as it arrives, not only at the end
    assert flusher.writes < deltas / 10  # ... in batches, not one write per token
    assert stored(app, message_id).content == text


def test_a_group_commit_is_cut_into_short_transactions(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persistence, "BATCH_ROWS", 3)
    monkeypatch.setattr(persistence, "BATCH_CHARACTERS", 100)
    texts = ["a" * 10] * 5 + ["b" * 90, "c" * 150]  # the last is over the cap by itself
    with app.app_context():
        owner = db.session.get(User, user_id(app))
        assert owner is not None
        answers = []
        for _ in texts:
            conversation = store.create_conversation(owner, forms.Settings(model="claude-x"))
            answers.append(store.add_exchange(conversation, "Go")[1].id)
    flusher = persistence.Flusher(app, 60.0, Meter())
    for answer, text in zip(answers, texts, strict=True):
        flusher.mark(Receiving(answer, text))
    stream = Waiting(lambda: flusher.writes)
    flusher.flush()
    stream.stop()
    flusher.stop()
    # [10, 10, 10] (rows), [10, 10] (90 more would pass 100), [90], [150]
    assert flusher.writes == 4
    assert {1, 2, 3} <= set(stream.seen)  # a stream ran between the transactions
    assert [stored(app, answer).content for answer in answers] == texts


def test_finished_generation_logs_one_structured_line(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:

    upstream.push(Scenario(text="Logged."))
    with caplog.at_level(logging.INFO, logger="chatapp.streaming.generation"):
        fragment = send(client, "Log it")
        wait_finished(app, answer_id(fragment))
    records = [r for r in caplog.records if r.getMessage() == "generation finished"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    from chatapp.logs import JsonFormatter, TextFormatter

    assert json.loads(JsonFormatter().format(records[0]))["status"] == "complete"
    assert TextFormatter().format(records[0]).endswith(json.dumps(fields))
    assert fields["message_id"] == answer_id(fragment) and fields["status"] == "complete"
    assert set(fields) >= {
        "conversation_id",
        "model",
        "stop_reason",
        "ttft_ms",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
    }


def test_sweeper_interrupts_answers_whose_writer_vanished(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    from datetime import timedelta

    owner = user_id(app)
    with app.app_context():
        conversation = Conversation(user_id=owner, model="claude-sonnet-4-6", system_prompt="")
        stale = utcnow() - timedelta(minutes=5)
        orphan = Message(
            conversation=conversation,
            role="assistant",
            content="half of an answer",
            status="streaming",
            model="claude-sonnet-4-6",
            input_tokens=12,  # the API took its request
            updated_at=stale,
        )
        # Its worker died before the API took its request: nothing was billed.
        unasked = Message(
            conversation=conversation, role="assistant", content="", status="streaming"
        )
        unasked.updated_at = stale
        fresh = Message(conversation=conversation, role="assistant", content="", status="streaming")
        db.session.add_all([conversation, orphan, unasked, fresh])
        db.session.commit()
        orphan_id, unasked_id, fresh_id = orphan.id, unasked.id, fresh.id
    assert streams(app).sweeper.sweep() == 2
    assert stored(app, orphan_id).status == "interrupted"
    assert stored(app, orphan_id).content == "half of an answer"
    # What it wrote is counted (the fake counter: 4 characters a token).
    assert stored(app, orphan_id).output_tokens == math.ceil(len("half of an answer") / 4)
    assert stored(app, unasked_id).status == "interrupted"
    assert stored(app, unasked_id).output_tokens is None
    assert [r["messages"][0]["content"] for r in upstream.counted] == [".", "half of an answer"]
    assert stored(app, fresh_id).status == "streaming"
    # A listener of the orphan gets its final state instead of waiting forever.
    events = read_events(client, f"/messages/{orphan_id}/stream?from=4")
    assert html(events[-1]["data"]).find("article")["data-status"] == "interrupted"
