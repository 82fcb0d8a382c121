"""Web search and web fetch (Anthropic's server tools) through the app and the demo upstream:
switching them on, their blocks as they stream, pause_turn, errors, what later turns send back,
resuming mid-search, what they cost, and demo mode."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import gevent
import pytest
from bs4 import BeautifulSoup
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import undefer

from chatapp import costs
from chatapp.extensions import db
from chatapp.llm.catalogue import catalogue
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.llm.demo.scenario import (
    Cited,
    FetchedPage,
    Found,
    SearchResults,
    ServerToolUse,
    page_citation,
)
from chatapp.models import Conversation, Message
from chatapp.render import anchors
from chatapp.tools import record

from .conftest import (
    Configure,
    html,
    parse_events,
    read_events,
    send,
    stream_url,
)
from .dom import Screen, rendered
from .helpers import answer_id, wait_finished

SLOW_TEXT = Pace(first_token_seconds=(0.05, 0.05), tokens_per_second=(120.0, 120.0))

FOUND = [
    Found("Python 3.14 released", "https://example.com/python-3-14", "2 days ago"),
    Found("What's new in 3.14", "https://docs.example.com/whatsnew/3.14"),
]


def searched(query: str = "python 3.14 release", seconds: float = 0.0) -> list[Any]:
    """A search and an answer that cites its results."""
    use = ServerToolUse("web_search", {"query": query})
    return [
        "Let me look that up.",
        use,
        SearchResults(use.id, FOUND, seconds=seconds),
        "According to the release notes, ",
        Cited("Python 3.14 came out in October 2025", [FOUND[0].cite("Python 3.14 is out")]),
        " and ",
        Cited("it brings template strings", [FOUND[1].cite("t-strings"), FOUND[0].cite("t")]),
        ".",
    ]


def start(
    client: FlaskClient,
    prompt: str,
    *,
    server: tuple[str, ...] = ("web_search",),
    model: str | None = None,
) -> BeautifulSoup:
    """Start a conversation with these server tools on; return the answer's fragment."""
    data: dict[str, Any] = {"content": prompt, "conversation_id": "", "server_tools": list(server)}
    if model:
        data["model"] = model
    response = client.post("/messages", data=data, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.data
    return html(response.data)


def follow(client: FlaskClient, fragment: BeautifulSoup) -> Screen:
    message_id = answer_id(fragment)
    page = str(fragment.find("article", id=anchors.article(message_id)))
    return Screen(message_id, page).take(read_events(client, stream_url(fragment)))


def with_transcript(app: Flask, message_id: int) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id, options=[undefer(Message.transcript)])
        assert message is not None
        db.session.expunge(message)
        return message


def conversation_of(fragment: BeautifulSoup) -> int:
    return int(fragment.select_one("#conversation-id")["value"])


# -- a search, streamed ------------------------------------------------------------------------


def test_a_search_streams_its_block_then_the_cited_answer(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(blocks=searched()))
    fragment = start(client, "What is new in Python?")
    message_id = answer_id(fragment)
    screen = follow(client, fragment)
    message = with_transcript(app, message_id)

    assert message.status == "complete" and message.web_search_requests == 1
    assert screen.finished and screen.html == rendered(message.content, message_id)
    shown = screen.document.soup
    block = shown.find(id=anchors.tool(message_id, 0))
    assert block["class"] == ["tool", "tool--server", "tool--done"]
    assert block.select_one(".tool__what").get_text() == (
        "Searched the web for “python 3.14 release”"
    )
    assert block.select_one(".tool__status").get_text() == "2 results"
    links = [(a.get_text(), a["href"]) for a in block.select(".tool__results a")]
    assert links == [
        ("Python 3.14 released", "https://example.com/python-3-14"),
        ("What's new in 3.14", "https://docs.example.com/whatsnew/3.14"),
    ]
    rel = ["noopener", "noreferrer", "nofollow"]
    assert all(a["rel"] == rel for a in block.select(".tool__results a"))
    assert [s.get_text() for s in block.select(".tool__site")] == [
        "example.com",
        "docs.example.com",
    ]
    # The cited text reads on, with a numbered marker after each cited span.
    paragraph = shown.find(id=anchors.content(message_id)).find_all("p")[1]
    assert paragraph.get_text() == (
        "According to the release notes, Python 3.14 came out in October 20251 and it brings "
        "template strings21."
    )
    markers = [(a.get_text(), a["href"]) for a in paragraph.select("sup.cite a")]
    assert markers == [
        ("1", f"#{anchors.source(message_id, 1)}"),
        ("2", f"#{anchors.source(message_id, 2)}"),
        ("1", f"#{anchors.source(message_id, 1)}"),
    ]
    sources = shown.find(id=anchors.sources_list(message_id)).find_all("li")
    assert [li["id"] for li in sources] == [
        anchors.source(message_id, 1),
        anchors.source(message_id, 2),
    ]
    assert [li.a["href"] for li in sources] == [FOUND[0].url, FOUND[1].url]
    assert sources[0].a.get_text() == "Python 3.14 released"

    # Stored as the text shows it; everything the API needs later is in the transcript.
    assert record.plain_text(message.content) == (
        "Let me look that up.\n\nAccording to the release notes, Python 3.14 came out in "
        "October 2025 and it brings template strings."
    )
    [turn] = message.transcript
    kinds = [block["type"] for block in turn["content"]]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text", "text"] + [
        "text",
        "text",
        "text",
    ]
    use, result = turn["content"][1], turn["content"][2]
    assert use["input"] == {"query": "python 3.14 release"} and use["name"] == "web_search"
    assert result["tool_use_id"] == use["id"]
    assert all(found["encrypted_content"] for found in result["content"])
    cited = turn["content"][4]
    assert cited["text"] == "Python 3.14 came out in October 2025"
    assert cited["citations"][0]["encrypted_index"]

    # The request named the tool as the API takes it, and the page reloads the same.
    [request] = upstream.requests
    assert {"type": "web_search_20250305", "name": "web_search"} in request["tools"]
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert str(page.find(id=anchors.content(message_id)).decode_contents()) == screen.html


def test_the_later_turn_sends_the_search_and_citations_back_as_they_came(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(blocks=searched()), Scenario(text="You are welcome."))
    fragment = start(client, "What is new in Python?")
    first = wait_finished(app, answer_id(fragment))
    conversation_id = first.conversation_id
    send(client, "Thanks", conversation_id)
    gevent.sleep(0.3)
    messages = upstream.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    content = messages[1]["content"]
    result = next(b for b in content if b["type"] == "web_search_tool_result")
    assert [r["encrypted_content"] for r in result["content"]] == [
        r["encrypted_content"] for r in SearchResults("x", FOUND).block()["content"]
    ]
    cited = [b for b in content if b.get("citations")]
    assert [c["encrypted_index"] for b in cited for c in b["citations"]] == [
        FOUND[0].cite("")["encrypted_index"],
        FOUND[1].cite("")["encrypted_index"],
        FOUND[0].cite("")["encrypted_index"],
    ]
    assert not any("\ue004" in b.get("text", "") for b in content)  # no record goes to Claude

    # With web search switched off, the earlier search stays out and its text goes alone.
    response = client.post(
        f"/conversations/{conversation_id}/settings",
        data={"model": "claude-sonnet-4-6", "system_prompt": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    upstream.push(Scenario(text="Fine."))
    send(client, "Again", conversation_id)
    gevent.sleep(0.3)
    request = upstream.requests[-1]
    assert "tools" not in request
    earlier = request["messages"][1]["content"]
    assert {b["type"] for b in earlier} == {"text"}
    assert not any("citations" in b for b in earlier)


def test_a_fetched_page_shows_and_its_citations_link_to_it(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    use = ServerToolUse("web_fetch", {"url": "https://example.com/guide"})
    page = FetchedPage(use.id, "https://example.com/guide", "The Guide", "Step one is to read.")
    upstream.push(
        Scenario(
            blocks=[use, page, "The guide says ", Cited("read first", [page.cite("Step one")])]
        )
    )
    fragment = start(client, "Read https://example.com/guide", server=("web_fetch",))
    message_id = answer_id(fragment)
    screen = follow(client, fragment)
    message = with_transcript(app, message_id)
    assert screen.html == rendered(message.content, message_id)
    block = screen.document.soup.find(id=anchors.tool(message_id, 0))
    assert block.select_one(".tool__what").get_text() == "Fetched https://example.com/guide"
    assert block.select_one(".tool__status").get_text() == "Done"
    link = block.select_one(".tool__page a")
    assert (link.get_text(), link["href"]) == ("The Guide", "https://example.com/guide")
    [source] = screen.document.soup.select(".sources__list li")
    assert (source.a.get_text(), source.a["href"]) == ("The Guide", "https://example.com/guide")
    fetch = next(b for b in upstream.requests[0]["tools"] if b["name"] == "web_fetch")
    assert fetch == {
        "type": "web_fetch_20250910",
        "name": "web_fetch",
        "citations": {"enabled": True},
    }
    assert message.web_search_requests is None  # fetches cost only their tokens
    kinds = [b["type"] for b in message.transcript[0]["content"]]
    assert kinds == ["server_tool_use", "web_fetch_tool_result", "text", "text"]


def test_tool_errors_are_said_in_words(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    search = ServerToolUse("web_search", {"query": "anything"})
    fetch = ServerToolUse("web_fetch", {"url": "https://intranet.example/x"})
    upstream.push(
        Scenario(
            blocks=[
                search,
                SearchResults(search.id, error="max_uses_exceeded"),
                fetch,
                FetchedPage(fetch.id, error="url_not_accessible"),
                "Neither worked.",
            ]
        )
    )
    fragment = start(client, "Try both", server=("web_search", "web_fetch"))
    message_id = answer_id(fragment)
    screen = follow(client, fragment)
    message = wait_finished(app, message_id)
    assert message.status == "complete"
    assert screen.html == rendered(message.content, message_id)
    blocks = screen.document.soup.select(".tool--server")
    assert [b["class"][-1] for b in blocks] == ["tool--error", "tool--error"]
    assert [b.select_one(".tool__status").get_text() for b in blocks] == ["Failed", "Failed"]
    said = [b.select_one(".tool__error").get_text() for b in blocks]
    assert "as often as one request may" in said[0]
    assert said[1] == "The page could not be reached."


def test_pause_turn_mid_search_goes_on_in_the_same_answer(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    use = ServerToolUse("web_search", {"query": "long research"})
    upstream.push(
        Scenario(blocks=["Researching.", use], stop_reason="pause_turn"),
        Scenario(
            blocks=[
                SearchResults(use.id, FOUND),
                "Found it: ",
                Cited("the answer", [FOUND[0].cite("answer")]),
            ]
        ),
    )
    fragment = start(client, "Research this")
    message_id = answer_id(fragment)
    screen = follow(client, fragment)
    message = with_transcript(app, message_id)
    assert message.status == "complete" and message.stop_reason == "end_turn"
    assert screen.html == rendered(message.content, message_id)
    # One block: the call from the first request, its results from the second.
    [block] = screen.document.soup.select(".tool--server")
    assert block.select_one(".tool__status").get_text() == "2 results"
    assert block.select_one(".tool__what").get_text() == "Searched the web for “long research”"
    # The second request sent the paused turn back as it was, and nothing else new.
    first, second = upstream.requests
    paused = second["messages"][-1]
    assert paused["role"] == "assistant"
    assert [b["type"] for b in paused["content"]] == ["text", "server_tool_use"]
    assert paused["content"][1]["id"] == use.id
    # One assistant turn in the transcript; both requests' searches counted.
    [turn] = message.transcript
    assert [b["type"] for b in turn["content"]][:3] == [
        "text",
        "server_tool_use",
        "web_search_tool_result",
    ]
    assert message.web_search_requests == 1


def test_a_citation_of_a_pdf_page_names_the_document_and_page(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(
        Scenario(
            blocks=[
                "The report says ",
                Cited("revenue grew", [page_citation(0, "report.pdf", 3, 3, "Revenue grew 4%")]),
                " while ",
                Cited("costs fell", [page_citation(1, None, 4, 5, "Costs fell")]),
                ".",
            ]
        )
    )
    fragment = send(client, "Summarise the report")
    message_id = answer_id(fragment)
    screen = follow(client, fragment)
    message = with_transcript(app, message_id)
    assert screen.html == rendered(message.content, message_id)
    sources = screen.document.soup.select(".sources__list li")
    assert [li.get_text() for li in sources] == ["report.pdf, page 3", "Document 2, pages 4–5"]
    assert not screen.document.soup.select(".sources__list a")  # documents have no link
    marker = screen.document.soup.select_one("sup.cite a")
    assert marker["title"] == "report.pdf, page 3"
    # Document citations go back with their text (no server tool involved).
    upstream.push(Scenario(text="Sure."))
    send(client, "And?", message.conversation_id)
    gevent.sleep(0.3)
    earlier = upstream.requests[-1]["messages"][1]["content"]
    assert [c["start_page_number"] for b in earlier for c in b.get("citations", [])] == [3, 4]


def test_resume_mid_search_has_no_gap_and_no_duplicate(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    pace = Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(300.0, 300.0))
    upstream.push(Scenario(blocks=searched(seconds=1.0), pace=pace))
    fragment = start(client, "What is new?")
    message_id = answer_id(fragment)
    url = stream_url(fragment)
    screen = Screen(message_id)
    # Read until the search block shows (its results not in yet), then leave mid-search.
    response = client.get(url, buffered=False)
    buffer, last_id = "", None
    for chunk in response.response:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event in parse_events(block + "\n\n"):
                screen.take([event])
                last_id = event.get("id", last_id)
        if screen.document.soup.select_one(".tool--running"):
            break
    response.close()
    assert last_id is not None
    assert screen.document.soup.select_one(".tool--running .tool__what").get_text() == (
        "Searching the web for “python 3.14 release”"
    )
    rest = read_events(client, url, headers={"Last-Event-ID": last_id})
    screen.take(rest)
    message = wait_finished(app, message_id)
    assert screen.finished and screen.html == rendered(message.content, message_id)
    assert screen.text.count("Python 3.14 came out") == 1
    assert len(upstream.requests) == 1  # Claude was asked once


def test_stop_after_a_search_keeps_it_and_bills_it(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    slow = Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(20.0, 20.0))
    use = ServerToolUse("web_search", {"query": "q"})
    upstream.push(
        Scenario(
            blocks=[use, SearchResults(use.id, FOUND), Cited("word " * 200, [FOUND[0].cite("w")])],
            pace=slow,
        )
    )
    fragment = start(client, "Search, then write at length")
    message_id = answer_id(fragment)
    response = client.get(stream_url(fragment), buffered=False)
    screen, buffer = Screen(message_id), ""
    for chunk in response.response:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            screen.take(parse_events(block + "\n\n"))
        if "word word" in screen.text:
            break
    response.close()
    assert client.post(f"/messages/{message_id}/stop").status_code == 204
    wait_finished(app, message_id)
    message = with_transcript(app, message_id)
    assert message.status == "cancelled"
    assert message.web_search_requests == 1  # never reported by the API: its result came
    [turn] = message.transcript
    assert [b["type"] for b in turn["content"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    # The cut cited text still got its marker, and the reload shows it.
    assert [c.number for c in record.citations(message.content)] == [1]
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert page.find(id=anchors.source(message_id, 1)) is not None


@pytest.mark.slow  # Redis
def test_a_search_streams_from_another_worker_too(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    upstream.push(Scenario(blocks=searched(seconds=0.6), pace=SLOW_TEXT))
    fragment = start(a.test_client(), "Search on A")
    message_id = answer_id(fragment)
    gevent.sleep(0.3)  # B's listener arrives mid-search
    page = str(fragment.find("article", id=anchors.article(message_id)))
    screen = Screen(message_id, page).take(read_events(b.test_client(), stream_url(fragment)))
    message = wait_finished(a, message_id)
    assert screen.finished and screen.html == rendered(message.content, message_id)
    assert len(screen.document.soup.select(".sources__list li")) == 2
    assert len(upstream.requests) == 1


# -- switching them on -------------------------------------------------------------------------


def test_settings_offer_web_search_and_fetch_only_for_models_that_support_them(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    assert catalogue(app).refresh()  # the fake's list, with an old model without web search
    page = html(client.get("/").data)
    boxes = page.select("#new-server-tools input[name=server_tools]")
    assert [(b["value"], b.has_attr("checked")) for b in boxes] == [
        ("web_search", False),
        ("web_fetch", False),
    ]  # off by default
    labels = [b.parent.get_text().strip() for b in boxes]
    assert labels == ["Web search", "Web fetch"]
    assert page.select_one("#new-server-tools").find_parent("fieldset").legend.get_text() == (
        "Tools Claude may use"
    )

    # Choosing a model brings its server tools out of band, as they were ticked.
    body = client.get(
        "/settings/thinking?prefix=new&model=claude-haiku-4-5&server_tools=web_fetch",
        headers={"HX-Request": "true"},
    ).data
    swapped = html(body).select_one("#new-server-tools")
    assert swapped["hx-swap-oob"] == "true"
    assert [b["value"] for b in swapped.select("input[checked]")] == ["web_fetch"]
    old = html(
        client.get("/settings/thinking?prefix=new&model=claude-3-haiku-20240307").data
    ).select_one("#new-server-tools")
    assert not old.select("input") and "cannot search or read the web" in old.get_text()

    # Saved with the conversation; a model that cannot use them drops them, saying so.
    fragment = start(client, "Hi", server=("web_search", "web_fetch"))
    conversation_id = conversation_of(fragment)
    wait_finished(app, answer_id(fragment))
    with app.app_context():
        assert db.session.get(Conversation, conversation_id).server_tools == "web_search web_fetch"
    response = client.post(
        f"/conversations/{conversation_id}/settings",
        data={"model": "claude-3-haiku-20240307", "server_tools": ["web_search"]},
        headers={"HX-Request": "true"},
    )
    saved = html(response.data)
    assert "Claude Haiku 3 cannot use Web search, so it is off." in saved.get_text()
    with app.app_context():
        assert db.session.get(Conversation, conversation_id).server_tools == ""
    bad = client.post(
        f"/conversations/{conversation_id}/settings",
        data={"model": "claude-sonnet-4-6", "server_tools": ["web_crawl"]},
        headers={"HX-Request": "true"},
    )
    assert bad.status_code == 422
    assert "no tool called 'web_crawl'" in html(bad.data).get_text()


def test_an_admin_can_switch_them_off_and_shape_what_is_sent(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(
        WEB_BLOCKED_DOMAINS="ads.example,spam.example",
        WEB_SEARCH_MAX_USES=3,
        WEB_FETCH_MAX_USES=2,
        WEB_SEARCH_USER_LOCATION='{"city": "Leeds", "country": "GB"}',
    )
    client = app.test_client()
    upstream.push(Scenario(text="Fine."))
    fragment = start(client, "Hi", server=("web_search", "web_fetch"))
    wait_finished(app, answer_id(fragment))
    search, fetch = upstream.requests[0]["tools"]
    assert search == {
        "type": "web_search_20250305",
        "name": "web_search",
        "blocked_domains": ["ads.example", "spam.example"],
        "max_uses": 3,
        "user_location": {"type": "approximate", "city": "Leeds", "country": "GB"},
    }
    assert fetch["max_uses"] == 2 and fetch["blocked_domains"] == ["ads.example", "spam.example"]
    assert "user_location" not in fetch

    # Off for everyone: not offered, dropped (saying so) when a form asks for them, and not
    # sent for a conversation that had them on. (A new app: on PostgreSQL, a new database.)
    off = configured(SERVER_TOOLS=False)
    off_client = off.test_client()
    assert not html(off_client.get("/").data).select("input[name=server_tools]")
    upstream.push(Scenario(text="Fine."), Scenario(text="Still fine."))
    fragment = start(off_client, "Hi", server=("web_search",))
    conversation_id = conversation_of(fragment)
    wait_finished(off, answer_id(fragment))
    assert "tools" not in upstream.requests[-1]
    saved = off_client.post(
        f"/conversations/{conversation_id}/settings",
        data={"model": "claude-sonnet-4-6", "server_tools": ["web_search"]},
        headers={"HX-Request": "true"},
    )
    assert "Web search is switched off on this server, so it stays off." in html(
        saved.data
    ).get_text(" ")
    with off.app_context():
        conversation = db.session.get(Conversation, conversation_id)
        conversation.server_tools = "web_search web_fetch"  # chosen before it was switched off
        db.session.commit()
    send(off_client, "Again", conversation_id)
    gevent.sleep(0.3)
    assert "tools" not in upstream.requests[-1]

    for wrong, sentence in (
        ({"SERVER_TOOLS": "web_crawl"}, "CHATAPP_SERVER_TOOLS names 'web_crawl'"),
        ({"WEB_ALLOWED_DOMAINS": "a.example", "WEB_BLOCKED_DOMAINS": "b.example"}, "not both"),
        ({"WEB_SEARCH_USER_LOCATION": '{"planet": "Mars"}'}, "takes city, region"),
        ({"WEB_SEARCH_MAX_USES": -1}, "whole number above 0"),
    ):
        with pytest.raises(ValueError, match=sentence):
            configured(**wrong)


def test_an_organisation_without_web_search_gets_a_sentence_and_retry(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(
        Scenario(
            status=400,
            error_message="Web search is not enabled for your organization. "
            "An administrator can enable it in the Console.",
        )
    )
    fragment = start(client, "Search for it")
    message = wait_finished(app, answer_id(fragment))
    assert message.status == "failed"
    assert message.error.startswith(
        "Web search is switched off for this server's Anthropic organisation."
    )
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    article = page.find(id=anchors.article(message.id))
    assert article.select_one(".message__error").get_text() == message.error
    assert article.find("button", string="Retry") is not None


# -- what it costs -----------------------------------------------------------------------------


def test_searches_are_priced_under_the_answer_in_the_total_the_limits_and_admin_usage(
    configured: Configure, upstream: FakeUpstream
) -> None:
    from chatapp.auth import accounts

    app = configured(WEB_SEARCH_PRICE=25)
    client = app.test_client()
    first, second = (
        ServerToolUse("web_search", {"query": "a"}),
        ServerToolUse("web_search", {"query": "b"}),
    )
    upstream.push(
        Scenario(
            blocks=[
                first,
                SearchResults(first.id, FOUND),
                second,
                SearchResults(second.id, FOUND),
                "Done.",
            ]
        )
    )
    fragment = start(client, "Search twice")
    message = wait_finished(app, answer_id(fragment))
    assert message.web_search_requests == 2
    tokens = (message.input_tokens * Decimal(3) + message.output_tokens * Decimal(15)) / 1_000_000
    tokens += (message.cache_creation_tokens or 0) * Decimal("3.75") / 1_000_000
    expected = tokens + 2 * Decimal(25) / 1000
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    usage = page.select_one(f"#{anchors.article(message.id)} .usage")
    assert "· 2 web searches" in " ".join(usage.get_text().split())
    assert usage.select_one(".usage__cost").get_text() == costs.dollars(expected)
    assert page.select_one("#conversation-cost").get_text() == f"Total {costs.dollars(expected)}"

    # The daily cost limit counts the searches: $0.05 of them is over a limit of $0.04.
    app.config["DAILY_COST_LIMIT"] = 0.04
    refused = client.post(
        "/messages", data={"content": "More", "conversation_id": ""}, headers={"HX-Request": "true"}
    )
    assert refused.status_code == 429
    assert "today's $0.04" in html(refused.data).get_text()
    app.config["DAILY_COST_LIMIT"] = 0

    with app.app_context():
        accounts.create("root", "a long enough password", admin=True)
    admin = app.test_client(user="root")
    table = html(admin.get("/admin/usage").data).select_one("table")
    headers = [th.get_text() for th in table.select("thead th")]
    row = [td.get_text() for td in table.select("tbody tr")[0].select("td")]
    assert row[headers.index("Web searches")] == "2"
    assert row[headers.index("Cost")] == costs.dollars(expected)


# -- exports -----------------------------------------------------------------------------------


def test_exports_write_citations_as_footnotes_and_keep_them_structured(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(blocks=searched()))
    fragment = start(client, "What is new in Python?")
    message = wait_finished(app, answer_id(fragment))
    conversation_id = message.conversation_id
    mid = message.id

    markdown = client.get(f"/conversations/{conversation_id}/export.md").get_data(as_text=True)
    assert (
        f"According to the release notes, Python 3.14 came out in October 2025[^{mid}-1] and "
        f"it brings template strings[^{mid}-2][^{mid}-1]."
    ) in markdown
    assert f"[^{mid}-1]: Python 3.14 released, <https://example.com/python-3-14>" in markdown
    assert f"[^{mid}-2]: What's new in 3.14, <https://docs.example.com/whatsnew/3.14>" in markdown
    assert '> Web search: {"query": "python 3.14 release"}' in markdown
    assert "\ue004" not in markdown and "\ue003" not in markdown

    exported = client.get(f"/conversations/{conversation_id}/export.json").get_json()
    answer = exported["messages"][1]
    assert exported["server_tools"] == ["web_search"]
    assert answer["sources"] == [
        {"number": 1, "url": FOUND[0].url, "title": FOUND[0].title},
        {"number": 2, "url": FOUND[1].url, "title": FOUND[1].title},
    ]
    content = answer["content"]
    at = [(c["source"], content[: c["at"]].rsplit(" ", 1)[-1]) for c in answer["citations"]]
    assert at == [(1, "2025"), (2, "strings"), (1, "strings")]
    assert answer["citations"][0]["cited_text"] == "Python 3.14 is out"
    [search] = answer["server_tools"]
    assert search["tool"] == "web_search" and search["error"] is None
    assert [r["url"] for r in search["results"]] == [FOUND[0].url, FOUND[1].url]
    assert answer["tool_calls"] == []
    assert answer["usage"]["web_search_requests"] == 1


# -- demo mode ---------------------------------------------------------------------------------


def test_demo_mode_searches_example_com_and_cites_it(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(
        ANTHROPIC_API_KEY=None, DEMO_FIRST_TOKEN_SECONDS=0.01, DEMO_TOKENS_PER_SECOND=3000
    )
    client = app.test_client()
    fragment = start(client, "What is new in Rust?", server=("web_search", "web_fetch"))
    message_id = answer_id(fragment)
    screen = follow(client, fragment)
    message = wait_finished(app, message_id)
    assert screen.html == rendered(message.content, message_id)
    soup = screen.document.soup
    links = [a["href"] for a in soup.select(".tool__results a")]
    assert len(links) == 3 and all(".example.com/" in u or "//example.com/" in u for u in links)
    assert len(soup.select(".sources__list li")) == 3 and soup.select("sup.cite")
    assert "made these results up" in screen.text
    assert message.web_search_requests == 1

    # With an address and Web fetch on, the demo reads example.com pages, and no others.
    fragment = start(client, "Read https://example.com/page please", server=("web_fetch",))
    screen = follow(client, fragment)
    assert "Fetched https://example.com/page" in screen.text and screen.document.soup.select(
        "sup.cite"
    )
    fragment = start(client, "Read https://www.python.org/ please", server=("web_fetch",))
    screen = follow(client, fragment)
    assert "The page could not be reached." in screen.text
    assert not upstream.requests  # all of it came from the built-in demo upstream
