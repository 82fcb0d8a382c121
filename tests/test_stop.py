"""Stop, and what answers cut short cost: the text stays, the upstream request closes, the tokens
shown are counted."""

from __future__ import annotations

import math
import time

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.llm.tokens import estimate_tokens

from .conftest import send
from .helpers import answer_id, answer_under_way, stored, wait_finished


def test_stop_keeps_the_text_and_closes_the_upstream(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    message_id, _ = answer_under_way(app, client, upstream, shown=20)
    pressed = time.monotonic()
    assert client.post(f"/messages/{message_id}/stop").status_code == 204
    message = wait_finished(app, message_id)
    assert message.status == "cancelled" and message.content.startswith("word word")
    assert len(message.content) < len("word " * 500)
    deadline = time.monotonic() + 2
    while not upstream.disconnects and time.monotonic() < deadline:
        gevent.sleep(0.02)
    assert upstream.disconnects and upstream.disconnects[0] - pressed < 1.0
    # Stop on a finished answer does no harm.
    assert client.post(f"/messages/{message_id}/stop").status_code == 204
    assert stored(app, message_id).status == "cancelled"


def test_a_stopped_answer_costs_the_tokens_it_showed(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    message_id, _ = answer_under_way(app, client, upstream, shown=200)
    assert client.post(f"/messages/{message_id}/stop").status_code == 204
    message = wait_finished(app, message_id)
    assert message.status == "cancelled"
    # What it showed, counted by the API's token counter (the fake's: 4 characters a token),
    # not the 1 token message_start announced.
    # First, once for this worker, what the counter adds around a text of one token.
    counted = [request["messages"] for request in upstream.counted]
    assert counted == [[{"role": "user", "content": t}] for t in (".", message.content)]
    assert message.output_tokens == math.ceil(len(message.content) / 4) >= 50


def test_an_answer_the_worker_leaves_behind_estimates_its_tokens_at_once(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    message_id, generation = answer_under_way(app, client, upstream, shown=100)
    generation.interrupt()  # as the worker does when it is stopped
    message = wait_finished(app, message_id)
    # No time to ask the counter before gunicorn kills the worker: an estimate, stored at once.
    assert message.status == "interrupted" and upstream.counted == []
    assert message.output_tokens == estimate_tokens(message.content)


@pytest.mark.parametrize(
    "fault", [{"cut_after": 300}, {"error_after": 300}, {"drop_after": 300}], ids=str
)
def test_an_answer_cut_by_the_upstream_costs_the_tokens_it_showed(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, fault: dict[str, int]
) -> None:
    upstream.push(Scenario(text="word " * 200, **fault))
    message = wait_finished(app, answer_id(send(client, "Go on")))
    assert message.status == "failed" and len(message.content) == 300
    assert message.output_tokens == 300 // 4


def test_a_whole_answer_needs_no_count(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="word " * 40))
    message = wait_finished(app, answer_id(send(client, "Short")))
    assert message.status == "complete" and message.output_tokens == 50
    assert upstream.counted == []
