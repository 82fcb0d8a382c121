"""The pages: the sidebar, the contract's labels, demo mode, and failures told in the page's
notice."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from chatapp.conversations import forms, store
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream
from chatapp.models import Conversation, Message, User

from .conftest import Configure, html, read_events, send, stream_url, user_id
from .dom import rendered, streamed_html
from .helpers import Waiting, answer_id, stored, wait_finished


def test_sidebar_lists_newest_first(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    for prompt in ("older", "newer"):
        wait_finished(app, answer_id(send(client, prompt)))
    titles = [a.get_text() for a in html(client.get("/").data).select(".sidebar__list a")]
    assert titles == ["newer", "older"]


def test_sidebar_pages_hold_fifty_conversations(app: Flask, client: FlaskClient) -> None:
    owner = user_id(app)
    with app.app_context():
        db.session.add_all(
            Conversation(user_id=owner, title=f"Chat {n}", model="claude-sonnet-4-6")
            for n in range(51)
        )
        db.session.commit()
    first = html(client.get("/").data)
    links = first.select(".sidebar__list a")
    assert len(links) == 50 and links[0].get_text() == "Chat 50"
    assert [a.get_text() for a in first.select(".sidebar__pages a")] == ["Older"]
    assert first.select_one(".sidebar__pages a")["href"] == "?page=2"
    second = html(client.get("/?page=2").data)
    assert [a.get_text() for a in second.select(".sidebar__list a")] == ["Chat 0"]
    assert [a.get_text() for a in second.select(".sidebar__pages a")] == ["Newer"]
    assert second.select_one(".sidebar__pages a")["href"] == "?page=1"
    assert second.select_one(".sidebar__list a")["href"].endswith("/conversations/1")


def test_page_contract_labels(client: FlaskClient) -> None:
    page = html(client.get("/").data)
    textarea = page.select_one("textarea#message-input")
    assert page.select_one(f'label[for="{textarea["id"]}"]').get_text() == "Message"
    assert page.find("button", string="Send") is not None
    assert page.find("a", string="New chat") is not None
    assert page.select_one("body")["hx-headers"]
    assert page.find(string=lambda s: s and "Demo mode" in s) is None  # a key is configured


def test_demo_mode_is_announced_on_every_page(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(ANTHROPIC_API_KEY=None)
    client = app.test_client()
    for url in ("/", "/conversations/999"):
        page = html(client.get(url).data)
        notice = page.select_one(".demo-notice")
        assert notice is not None and "not by Claude" in notice.get_text()


def test_demo_mode_streams_markdown_from_the_builtin_upstream(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(
        ANTHROPIC_API_KEY=None, DEMO_FIRST_TOKEN_SECONDS=0.01, DEMO_TOKENS_PER_SECOND=3000
    )
    client = app.test_client()
    fragment = send(client, "How do I learn Rust?")
    events = read_events(client, stream_url(fragment))
    text = stored(app, answer_id(fragment)).content
    assert "#" in text and "```" in text and ("\n- " in text or "\n1. " in text)
    shown = streamed_html(events, answer_id(fragment))
    assert shown == rendered(text)
    assert "<h" in shown and '<div class="code">' in shown and ("<ul>" in shown or "<ol>" in shown)
    assert not upstream.requests  # the configured fake was not used


def test_a_failed_action_is_explained_in_the_page_notice(app: Flask, client: FlaskClient) -> None:
    response = client.post("/messages/999/stop", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "#notice"
    assert "no longer exists" in html(response.data).select_one("#notice").get_text()
    # Without htmx the same failure is a page.
    assert "There is nothing here" in html(client.post("/messages/999/stop").data).get_text()


def test_a_post_without_the_csrf_token_is_refused_with_a_clear_notice(
    configured: Configure,
) -> None:
    app = configured(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    page = html(client.get("/").data)
    token = json.loads(page.select_one("body")["hx-headers"])["X-CSRFToken"]
    refused = client.post("/messages", data={"content": "hi"}, headers={"HX-Request": "true"})
    assert refused.status_code == 400 and "expired" in html(refused.data).get_text()
    accepted = client.post(
        "/messages", data={"content": "hi"}, headers={"HX-Request": "true", "X-CSRFToken": token}
    )
    assert accepted.status_code == 200


def test_a_page_of_many_answers_lets_the_streams_run_between_them(
    app: Flask, client: FlaskClient
) -> None:
    """Rendering markdown holds the worker; a page renders its answers one at a time."""
    answers = [f"## Answer {n}\n\nSome *markdown* text, {n}.\n" for n in range(4)]
    with app.app_context():
        owner = db.session.get(User, user_id(app))
        assert owner is not None
        conversation = store.create_conversation(owner, forms.Settings(model="claude-x"))
        for answer in answers:
            db.session.add(Message(conversation=conversation, role="user", content="Go on"))
            db.session.add(Message(conversation=conversation, role="assistant", content=answer))
        db.session.commit()
        conversation_id = conversation.id
    stream = Waiting()
    before = stream.turns
    page = html(client.get(f"/conversations/{conversation_id}").data)
    assert stream.turns - before >= len(answers) - 1
    stream.stop()
    shown = [h.get_text() for h in page.select("article[data-role=assistant] h2")]
    assert shown == [f"Answer {n}" for n in range(4)]
