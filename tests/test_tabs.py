"""Other open pages of a conversation: they see new exchanges live, and catch up on what they
missed."""

from __future__ import annotations

import gevent
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.render import anchors
from chatapp.streaming import streams

from .conftest import html, parse_events, send
from .helpers import answer_id, wait_finished


def test_other_open_pages_of_the_conversation_see_a_new_exchange(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="First."), Scenario(text="Second, seen everywhere."))
    first = send(client, "Open this in two tabs")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(first))

    def listen(tab: str) -> list[dict[str, str]]:

        response = client.get(
            f"/conversations/{conversation_id}/events?tab={tab}&after={answer_id(first)}",
            buffered=False,
        )
        raw = ""
        with gevent.Timeout(2.0, False):
            for chunk in response.response:
                raw += chunk.decode()
                if "event: exchange" in raw:
                    break
        response.close()
        return parse_events(raw)

    other, same = gevent.spawn(listen, "tab-b"), gevent.spawn(listen, "tab-a")
    gevent.sleep(0.2)
    response = client.post(
        "/messages",
        data={"content": "Second question", "conversation_id": conversation_id},
        headers={"HX-Request": "true", "X-Chat-Tab": "tab-a"},
    )
    second_id = answer_id(html(response.data))
    news = [e for e in other.get() if e.get("event") == "exchange"]
    assert len(news) == 1
    wrapper = html(news[0]["data"]).find("div")
    assert wrapper["hx-swap-oob"] == "beforeend:#messages"
    articles = wrapper.find_all("article")
    assert [a["data-role"] for a in articles] == ["user", "assistant"]
    assert articles[1]["id"] == anchors.article(second_id) and articles[1].has_attr("sse-connect")
    assert news[0]["id"] == str(second_id)
    # The tab that sent it shows it already and is not told again.
    assert not [e for e in same.get() if e.get("event") == "exchange"]
    assert streams(app).counts()["conversation_subscriptions"] == 0  # released when pages go away


def test_a_page_that_was_away_catches_up_with_what_it_missed(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="One."), Scenario(text="Two."))
    first = send(client, "First")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(first))
    second = send(client, "Second", conversation_id)  # sent while the other page was away
    wait_finished(app, answer_id(second))

    response = client.get(
        f"/conversations/{conversation_id}/events",
        headers={"Last-Event-ID": str(answer_id(first))},
        buffered=False,
    )
    raw = ""
    for chunk in response.response:
        raw += chunk.decode()
        if "event: exchange" in raw and raw.endswith("\n\n"):
            break
    response.close()
    news = [e for e in parse_events(raw) if e.get("event") == "exchange"]
    articles = html(news[0]["data"]).find_all("article")
    assert [a.select_one("[data-content]").get_text().strip() for a in articles] == [
        "Second",
        "Two.",
    ]
    assert news[0]["id"] == str(answer_id(second))
