"""Answers that fail: upstream errors before and during the stream, stalls, refused connections,
Redis down; the text so far is kept and the failure said."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.render import anchors

from .conftest import Configure, html, read_events, send, stream_url
from .dom import rendered, streamed_html
from .helpers import answer_id, stored, wait_finished


@pytest.mark.parametrize(
    ("scenario", "sentence"),
    [
        (Scenario(status=401), "API key"),
        (Scenario(status=429, retry_after=17), "try again in 17 seconds"),
        (Scenario(status=529), "overloaded"),
        (Scenario(status=500), "internal error"),
    ],
)
def test_upstream_error_before_the_stream_fails_the_answer_clearly(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, scenario: Scenario, sentence: str
) -> None:
    upstream.push(scenario)
    fragment = send(client, "Hello?")
    events = read_events(client, stream_url(fragment))
    final = html(events[-1]["data"]).find("article")
    assert final["data-status"] == "failed"
    assert sentence in final.select_one(".message__error").get_text()
    message = stored(app, answer_id(fragment))
    assert message.status == "failed" and sentence in (message.error or "")
    # The app keeps serving.
    upstream.push(Scenario(text="Fine now."))
    fragment = send(client, "Again?")
    assert wait_finished(app, answer_id(fragment)).content == "Fine now."


def test_connection_refused_fails_the_answer(configured: Configure, upstream: FakeUpstream) -> None:
    app = configured(ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    client = app.test_client()
    fragment = send(client, "Anyone there?")
    message = wait_finished(app, answer_id(fragment))
    assert message.status == "failed" and "Could not reach Claude" in (message.error or "")


@pytest.mark.parametrize(
    ("scenario", "sentence"),
    [
        (Scenario(text="Half an answer, then trouble.", error_after=14), "overloaded"),
        (Scenario(text="Half an answer, then a drop.", drop_after=14), "dropped"),
        (Scenario(text="Half an answer, then nothing.", cut_after=14), "cut off"),
    ],
)
def test_mid_stream_failures_keep_the_partial_text(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, scenario: Scenario, sentence: str
) -> None:
    upstream.push(scenario)
    fragment = send(client, "Go")
    events = read_events(client, stream_url(fragment))
    assert streamed_html(events, answer_id(fragment)) == rendered("Half an answer")
    final = html(events[-1]["data"]).find("article")
    assert final["data-status"] == "failed"
    assert sentence in final.select_one(".message__error").get_text()
    message = stored(app, answer_id(fragment))
    assert message.status == "failed" and message.content == "Half an answer"


def test_upstream_stall_fails_after_the_idle_timeout(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(UPSTREAM_IDLE_TIMEOUT=0.4)
    client = app.test_client()
    upstream.push(Scenario(text="Begins, then silence.", stall_after=7, stall_seconds=3.0))
    fragment = send(client, "Stall please")
    message = wait_finished(app, answer_id(fragment))
    assert message.status == "failed" and message.content == "Begins,"
    assert "sent nothing for 0.4 seconds" in (message.error or "")


def test_an_answer_the_api_never_took_shows_no_token_counts(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(status=529))
    message = wait_finished(app, answer_id(send(client, "Busy?")))
    assert message.status == "failed" and message.input_tokens is None
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert " in " not in page.select_one(f"#{anchors.article(message.id)} .usage").get_text()


def test_with_redis_down_answers_still_stream_within_the_worker(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(REDIS_URL="redis://127.0.0.1:9/0")
    client = app.test_client()
    upstream.push(Scenario(text="Redis is down, I am not."))
    fragment = send(client, "Still there?")
    events = read_events(client, stream_url(fragment))
    assert streamed_html(events, answer_id(fragment)) == rendered("Redis is down, I am not.")
    conversation_id = int(fragment.select_one("#conversation-id")["value"])
    response = client.get(f"/conversations/{conversation_id}/events?after=999", buffered=False)
    assert response.status_code == 200 and next(iter(response.response)).startswith(b"retry:")
    response.close()
