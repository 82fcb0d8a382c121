"""What the tests of whole answers share: finding an answer in a send's fragment, reading it
back once it has ended, and an answer caught mid-way."""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import undefer

from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.models import Message
from chatapp.render import anchors
from chatapp.streaming import streams
from chatapp.streaming.generation import Generation

from .conftest import send

# Text that must arrive exactly as written: non-ASCII, markup that stays text, every line end.
TRICKY = (
    "Unicode: naïve café — 日本語 🌍👍🏽\n<script>alert('x')</script> & &amp; \"quotes\"\r\nend"
)


def metric_values(body: str) -> dict[str, float]:
    """The samples of a /metrics body: `name{labels}` -> value."""
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def answer_id(fragment) -> int:  # type: ignore[no-untyped-def]
    """The id of the answer in a send's (or a page's) fragment."""
    return anchors.message_of(fragment.select_one('article[data-role="assistant"]')["id"])


def stored(app: Flask, message_id: int) -> Message:
    """The message as stored, its transcript loaded, detached from any session."""
    with app.app_context():
        message = db.session.get(Message, message_id, options=[undefer(Message.transcript)])
        assert message is not None
        db.session.expunge(message)
        return message


def wait_finished(app: Flask, message_id: int, timeout: float = 10.0) -> Message:
    """The answer as stored once this worker has stopped writing it."""
    deadline = time.monotonic() + timeout
    while message_id in streams(app).live:
        assert time.monotonic() < deadline, "the answer never finished"
        gevent.sleep(0.01)
    return stored(app, message_id)


def answer_under_way(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, shown: int
) -> tuple[int, Generation]:
    """A long answer ("word " * 500 at 60 tokens a second), once `shown` characters are out."""
    upstream.push(
        Scenario(
            text="word " * 500,
            pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(60.0, 60.0)),
        )
    )
    message_id = answer_id(send(client, "Go on and on"))
    generation = streams(app).live[message_id]
    while generation.published < shown:
        gevent.sleep(0.01)
    return message_id, generation


class Waiting:
    """A greenlet that, like a stream, runs only when the loop polls: here for a timer.
    `seen` holds what `look` said each time it ran."""

    def __init__(self, look: Callable[[], int] = lambda: 0) -> None:
        self.turns = 0
        self.seen: list[int] = []
        self._look = look
        self._greenlet = gevent.spawn(self._run)
        gevent.sleep(0.001)

    def _run(self) -> None:
        while True:
            self.turns += 1
            self.seen.append(self._look())
            gevent.sleep(0.00001)

    def stop(self) -> None:
        self._greenlet.kill()
