"""What answers cost: the prompt cache, each answer's cost and the total, unknown prices, and the
daily limits."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.models import Conversation
from chatapp.render import anchors

from .conftest import Configure, html, read_events, send, stream_url
from .helpers import answer_id, stored, wait_finished


def test_the_second_turn_reads_the_prompt_cache_and_says_so(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.cache_minimum_tokens = 1  # the fake caches even short prompts, for the test
    upstream.push(Scenario(text="First answer."), Scenario(text="Second answer."))
    first = send(client, "First question, long enough to be worth caching.")
    wait_finished(app, answer_id(first))
    conversation_id = int(first.select_one("#conversation-id")["value"])
    second = send(client, "Second question", conversation_id)
    message = wait_finished(app, answer_id(second))

    assert stored(app, answer_id(first)).cache_creation_tokens
    assert message.cache_read_tokens and message.cache_read_tokens > 0
    page = html(client.get(f"/conversations/{conversation_id}").data)
    usage = page.select_one(f"#{anchors.article(answer_id(second))} .usage").get_text(
        " ", strip=True
    )
    assert f"cache {message.cache_read_tokens:,} read" in usage


def test_each_answer_shows_its_cost_and_the_conversation_its_total(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    from decimal import Decimal

    from chatapp import costs as costs_module

    pace = Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(30.0, 30.0))
    upstream.push(
        Scenario(text="One answer, long enough to take a moment to write.", pace=pace),
        Scenario(text="Two answers, and this one is a little longer than the first.", pace=pace),
    )
    first = send(client, "First")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(first))
    second = send(client, "Second", conversation_id)
    events = read_events(client, stream_url(second))
    costs = []
    for fragment in (first, second):
        message = stored(app, answer_id(fragment))
        # Sonnet 4.6 by default: $3 in, $15 out, $3.75 cache writes, $0.30 reads per million.
        costs.append(
            (
                message.input_tokens * Decimal(3)
                + message.output_tokens * Decimal(15)
                + (message.cache_creation_tokens or 0) * Decimal("3.75")
                + (message.cache_read_tokens or 0) * Decimal("0.30")
            )
            / 1_000_000
        )
    page = html(client.get(f"/conversations/{conversation_id}").data)
    for fragment, cost in zip((first, second), costs, strict=True):
        usage = page.select_one(f"#{anchors.article(answer_id(fragment))} .usage")
        assert usage.select_one(".usage__cost").get_text() == costs_module.dollars(cost)
        assert "tokens/s" in usage.get_text()
    total = costs_module.dollars(sum(costs))
    assert page.select_one("#conversation-cost").get_text() == f"Total {total}"
    # The answer's last frame brings the total on every open page up to date.
    done = html(events[-1]["data"]).select_one("#conversation-cost")
    assert done["hx-swap-oob"] == "true" and done.get_text() == f"Total {total}"


def test_a_model_without_a_price_shows_its_tokens_and_price_unknown(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(PRICES={})
    client = app.test_client()
    upstream.push(Scenario(text="Free?"))
    fragment = send(client, "Price")
    wait_finished(app, answer_id(fragment))
    page = html(
        client.get(f"/conversations/{stored(app, answer_id(fragment)).conversation_id}").data
    )
    assert page.select_one(".usage__cost").get_text() == "price unknown"
    assert "in" in page.select_one(".usage").get_text()  # its tokens are shown
    assert page.select_one("#conversation-cost").get_text() == "Total: price unknown"


def test_dollars_read_well_at_every_size() -> None:
    from decimal import Decimal

    from chatapp.costs import dollars

    assert dollars(None) == ""
    assert dollars(Decimal(0)) == "$0.0000"
    assert dollars(Decimal("0.00001")) == "<$0.0001"
    assert dollars(Decimal("0.0042")) == "$0.0042"
    assert dollars(Decimal("1234.567")) == "$1,234.57"


def test_a_daily_token_limit_says_so_next_to_the_composer(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(DAILY_TOKEN_LIMIT=10)
    client = app.test_client()
    upstream.push(Scenario(text="A first answer that uses more than ten tokens, surely."))
    first = send(client, "First")
    assert wait_finished(app, answer_id(first)).output_tokens > 10
    conversation_id = int(first.select_one("#conversation-id")["value"])
    refused = client.post(
        "/messages",
        data={"conversation_id": str(conversation_id), "content": "Second"},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 429
    assert refused.headers["HX-Retarget"] == "#composer-error"
    assert "today's 10 tokens" in html(refused.data).get_text()
    assert len(upstream.requests) == 1  # nothing was asked, nothing stored
    with app.app_context():
        assert len(db.session.get(Conversation, conversation_id).messages) == 2
    # Someone else has their own allowance.
    upstream.push(Scenario(text="Bob's answer."))
    assert app.test_client(user="bob").post("/messages", data={"content": "Hi"}).status_code == 303


def test_a_daily_cost_limit_and_a_rate_limit(configured: Configure, upstream: FakeUpstream) -> None:
    app = configured(DAILY_COST_LIMIT=0.000001)
    client = app.test_client()
    upstream.push(Scenario(text="Costs something."))
    wait_finished(app, answer_id(send(client, "First")))
    refused = client.post("/messages", data={"content": "Again"}, headers={"HX-Request": "true"})
    assert refused.status_code == 429 and "today's" in html(refused.data).get_text()

    limited = configured(REQUESTS_PER_MINUTE=1)
    client = limited.test_client(user="carol")
    upstream.push(Scenario(text="One."))
    send(client, "One")
    refused = client.post("/messages", data={"content": "Two"}, headers={"HX-Request": "true"})
    assert refused.status_code == 429 and "1 answer a minute" in html(refused.data).get_text()
