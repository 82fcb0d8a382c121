"""A small model names a conversation after its first answer, and what that costs."""

from __future__ import annotations

import time

import gevent
from flask import Flask

from chatapp.auth import usage
from chatapp.conversations import quotas
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import Conversation, Naming, User, utcnow

from .conftest import Configure, html, parse_events, send, user_id
from .helpers import answer_id, metric_values, stored, wait_finished


def test_a_small_model_names_the_conversation_after_its_first_answer(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(TITLE_MODEL="claude-haiku-4-5")
    client = app.test_client()
    upstream.push(Scenario(text="Start with the book."), Scenario(text='"Learning Rust Fast."\n'))
    first = send(client, "How do I learn Rust quickly?")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    response = client.get(
        f"/conversations/{conversation_id}/events?after={answer_id(first)}", buffered=False
    )
    raw = ""
    for chunk in response.response:
        raw += chunk.decode()
        if "event: title" in raw and raw.endswith("\n\n"):
            break
    response.close()
    title = [e for e in parse_events(raw) if e.get("event") == "title"][0]
    assert html(title["data"]).select_one("#chat-title").get_text() == "Learning Rust Fast"
    # Naming was billed: the total the page shows includes it as soon as the title does.
    from chatapp import costs

    naming, answer = _naming(app, conversation_id), stored(app, answer_id(first))
    assert naming is not None
    total = costs.cost(answer, app.config["PRICES"]) + costs.cost(naming, app.config["PRICES"])
    shown = html(title["data"]).select_one("#conversation-cost")
    assert shown["hx-swap-oob"] == "true"
    assert shown.get_text().strip() == f"Total {costs.dollars(total)}"
    with app.app_context():
        assert db.session.get(Conversation, conversation_id).title == "Learning Rust Fast"
    asked_for_title = upstream.requests[1]
    assert asked_for_title["model"] == "claude-haiku-4-5" and not asked_for_title.get("stream")
    assert asked_for_title["max_tokens"] <= 32

    # Only the first answer names it, and a name someone gave is kept.
    client.post(f"/conversations/{conversation_id}/title", data={"title": "Mine"})
    upstream.push(Scenario(text="More."))
    wait_finished(app, answer_id(send(client, "And then?", conversation_id)))
    gevent.sleep(0.2)
    assert len(upstream.requests) == 3
    with app.app_context():
        assert db.session.get(Conversation, conversation_id).title == "Mine"


def test_naming_a_conversation_costs_what_it_used(
    configured: Configure, upstream: FakeUpstream
) -> None:
    from decimal import Decimal

    from chatapp import costs

    app = configured(TITLE_MODEL="claude-haiku-4-5", DAILY_TOKEN_LIMIT=10_000)
    client = app.test_client()
    upstream.push(Scenario(text="Start with the book."), Scenario(text="Learning Rust Fast"))
    first = send(client, "How do I learn Rust quickly?")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    answer = wait_finished(app, answer_id(first))
    deadline = time.monotonic() + 5
    while (naming := _naming(app, conversation_id)) is None:
        assert time.monotonic() < deadline, "the naming's usage was never stored"
        gevent.sleep(0.05)
    assert naming.model == "claude-haiku-4-5"
    assert naming.input_tokens and naming.input_tokens > 0 and naming.output_tokens
    metrics = metric_values(client.get("/metrics").data.decode())
    output = metrics['chatapp_tokens_total{kind="output",model="claude-haiku-4-5"}']
    assert output == naming.output_tokens
    prices = app.config["PRICES"]
    # Billed like an answer: in the conversation's total...
    total = costs.cost(answer, prices) + costs.cost(naming, prices)
    assert costs.cost(naming, prices) > Decimal(0)
    page = html(client.get(f"/conversations/{conversation_id}").data)
    assert page.select_one("#conversation-cost").get_text() == f"Total {costs.dollars(total)}"
    # ... on the admins' usage page, as tokens of its model but not as an answer ...
    with app.app_context():
        rows = {row.model: row for row in usage.usage_by_person_and_model()}
    assert rows["claude-haiku-4-5"].answers == 0
    assert rows["claude-haiku-4-5"].input_tokens == naming.input_tokens
    assert rows["claude-sonnet-4-6"].answers == 1
    # ... and in today's allowance.
    with app.app_context():
        today = quotas._today_usage(db.session.get(User, user_id(app)), utcnow())
    assert naming in today and len(today) == 2
    # Writing the first answer again asks for a name again: both requests are billed.
    upstream.push(Scenario(text="Start with the book, again."), Scenario(text="Rust Fast"))
    client.post(f"/messages/{answer.id}/retry", headers={"HX-Request": "true"})
    deadline = time.monotonic() + 5
    while (again := _naming(app, conversation_id)) == naming:
        assert time.monotonic() < deadline, "the second naming's usage was never added"
        gevent.sleep(0.05)
    assert again is not None and again.input_tokens > naming.input_tokens
    assert again.output_tokens > naming.output_tokens


def _naming(app: Flask, conversation_id: int) -> Naming | None:
    with app.app_context():
        return db.session.get(Conversation, conversation_id).naming


def test_demo_mode_names_conversations_too(configured: Configure) -> None:
    app = configured(
        ANTHROPIC_API_KEY=None,
        TITLE_MODEL="claude-haiku-4-5",
        DEMO_FIRST_TOKEN_SECONDS=0.01,
        DEMO_TOKENS_PER_SECOND=3000,
    )
    client = app.test_client()
    fragment = send(client, "Why is the sky blue at noon and red at dusk")
    conversation_id = int(fragment.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(fragment))
    deadline = time.monotonic() + 5
    title = ""
    while time.monotonic() < deadline:
        with app.app_context():
            title = db.session.get(Conversation, conversation_id).title
        if title == "Why is the sky blue at":
            break
        gevent.sleep(0.1)
    assert title == "Why is the sky blue at"
