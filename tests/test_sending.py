"""Sending a question: both messages at once, the exact text streamed and stored, the history and
system prompt upstream, and what a send refuses."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.models import Conversation, Message
from chatapp.streaming import streams

from .conftest import Configure, html, read_events, send, stream_url
from .dom import Screen, rendered
from .helpers import TRICKY, answer_id, stored, wait_finished


def test_send_answers_with_both_partials_at_once(
    client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Hi there.", pace=Pace(first_token_seconds=(5.0, 5.0))))
    started = time.monotonic()
    fragment = send(client, "Hello")
    # It does not wait for the model's first token (a first page also compiles its templates).
    assert time.monotonic() - started < 2.5
    user, assistant = fragment.select("article")
    assert user["data-role"] == "user" and user["data-status"] == "complete"
    assert user.select_one("[data-content]").get_text() == "Hello"
    assert assistant["data-role"] == "assistant" and assistant["data-status"] == "streaming"
    assert assistant["hx-ext"] == "sse" and assistant["sse-close"] == "done"
    assert assistant["sse-connect"].startswith(f"/messages/{answer_id(fragment)}/stream")
    assert assistant.select_one("[data-content]").has_attr("hx-disable")
    assert fragment.find(string="Stop") is not None


def test_frames_carry_the_exact_text_and_it_is_stored(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(
        Scenario(
            text=TRICKY,
            pace=Pace(first_token_seconds=(0.05, 0.05), tokens_per_second=(200.0, 200.0)),
        )
    )
    fragment = send(client, "Say tricky things")
    events = read_events(client, stream_url(fragment))

    assert events[0].get("retry") == "1000"
    frames = [e for e in events if e.get("event") == "frame"]
    assert len(frames) >= 2
    assert all(e.get("id") for e in events if "event" in e)
    screen = Screen(answer_id(fragment)).take(events)
    assert screen.html == rendered(TRICKY)
    assert (
        "日本語 🌍👍🏽" in screen.html and "&lt;script&gt;alert('x')&lt;/script&gt;" in screen.html
    )
    # No frame carries markup from the model: the script tag is text.
    assert all("<script>" not in e["data"] for e in frames)

    done = events[-1]
    assert done["event"] == "done" and done["id"] == f"{answer_id(fragment)}:{len(TRICKY)}"
    final = html(done["data"]).find("article")
    assert final["hx-swap-oob"] == "true" and final["data-status"] == "complete"
    # The finished message keeps the content the page streamed.
    assert final.select_one("[data-content]").has_attr("data-keep")
    assert not final.has_attr("sse-connect")

    message = stored(app, answer_id(fragment))
    assert message.content == TRICKY
    assert message.status == "complete" and message.stop_reason == "end_turn"
    assert message.input_tokens and message.output_tokens
    assert message.cache_read_tokens == 0 and message.cache_creation_tokens == 0
    assert message.ttft_ms is not None and message.duration_ms is not None
    assert message.model == "claude-sonnet-4-6"


def test_first_frame_arrives_while_the_upstream_is_still_writing(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(
        Scenario(
            text="word " * 200,
            pace=Pace(first_token_seconds=(0.05, 0.05), tokens_per_second=(100.0, 100.0)),
        )
    )
    fragment = send(client, "A long one")
    response = client.get(stream_url(fragment), buffered=False)
    chunks = iter(response.response)
    while b"event: frame" not in next(chunks):
        pass
    generation = streams(app).live[answer_id(fragment)]
    assert not generation.reply.finished  # the stream is not buffered anywhere on the way
    response.close()


def test_history_and_system_prompt_go_upstream_and_the_page_keeps_them(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="First answer."), Scenario(text="Second answer."))
    response = client.post(
        "/messages",
        data={
            "content": "First question",
            "conversation_id": "",
            "system_prompt": "Be brief.",
            "model": "claude-sonnet-4-6",
        },
        headers={"HX-Request": "true"},
    )
    assert response.headers["HX-Push-Url"].startswith("/conversations/")
    conversation_id = int(response.headers["HX-Push-Url"].rsplit("/", 1)[1])
    first = html(response.data)
    wait_finished(app, answer_id(first))
    second = send(client, "Second question", conversation_id)
    wait_finished(app, answer_id(second))

    request = upstream.requests[-1]
    # Prompt caching: breakpoints on the system prompt and on the newest user turn.
    cached = {"type": "ephemeral"}
    assert request["system"] == [{"type": "text", "text": "Be brief.", "cache_control": cached}]
    assert request["messages"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Second question", "cache_control": cached}],
        },
    ]
    assert request["stream"] is True

    page = html(client.get(f"/conversations/{conversation_id}").data)
    articles = page.select("article[data-role][data-status]")
    assert [
        (a["data-role"], a.select_one("[data-content]").get_text().strip()) for a in articles
    ] == [
        ("user", "First question"),
        ("assistant", "First answer."),
        ("user", "Second question"),
        ("assistant", "Second answer."),
    ]
    sidebar = page.select(".sidebar__list a")
    assert sidebar[0].get_text() == "First question"


@pytest.mark.parametrize("content", ["", "   \n\t  "])
def test_empty_prompt_gets_an_inline_error_and_stores_nothing(
    app: Flask, client: FlaskClient, content: str
) -> None:
    response = client.post("/messages", data={"content": content}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#composer-error"
    assert "Type a message" in html(response.data).get_text()
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id))) == 0
        assert db.session.scalar(select(func.count(Conversation.id))) == 0


def test_oversized_prompt_gets_a_clear_error(configured: Configure, upstream: FakeUpstream) -> None:
    app = configured(MAX_PROMPT_CHARS=50)
    client = app.test_client()
    response = client.post("/messages", data={"content": "x" * 51}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert "limit is 50" in html(response.data).get_text()
    assert not upstream.requests
    # Without htmx, the page comes back with the text still in the composer.
    response = client.post("/messages", data={"content": "y" * 51})
    assert response.status_code == 422
    assert html(response.data).select_one("textarea#message-input").get_text() == "y" * 51


def test_unknown_conversation_and_message_are_404(client: FlaskClient) -> None:
    response = client.get("/conversations/12345")
    assert response.status_code == 404 and "There is nothing here" in html(response.data).get_text()
    assert client.get("/messages/12345/stream").status_code == 404
    assert client.post("/messages/12345/stop").status_code == 404
    assert (
        client.post("/messages", data={"content": "hi", "conversation_id": "12345"}).status_code
        == 404
    )
    assert (
        client.post("/messages", data={"content": "hi", "conversation_id": "abc"}).status_code
        == 400
    )


def test_plain_form_post_redirects_to_the_conversation(app: Flask, client: FlaskClient) -> None:
    response = client.post("/messages", data={"content": "no javascript here"})
    assert response.status_code == 303 and response.headers["Location"].startswith(
        "/conversations/"
    )


def test_sending_while_an_answer_streams_is_refused_politely(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="slow " * 100, pace=Pace(first_token_seconds=(0.5, 0.5))))
    first = send(client, "One")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    response = client.post(
        "/messages",
        data={"content": "Two", "conversation_id": conversation_id},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409 and "still answering" in html(response.data).get_text()
