"""Citations: where their markers go as the text streams, how sources are numbered and listed,
that hostile titles, addresses and cited text stay text, and that model text cannot forge one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anthropic
from bs4 import BeautifulSoup
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.llm.demo.scenario import Cited, FetchedPage, Found, SearchResults, ServerToolUse
from chatapp.llm.reply import Reply
from chatapp.render import anchors
from chatapp.render.live import LiveMarkdown, render_answer, render_streaming
from chatapp.tools import record

from .conftest import html, read_events, stream_url
from .dom import Document, Screen, normalized, rendered
from .helpers import answer_id, wait_finished

MESSAGE = 9
WEB = {"type": "web_search_result_location", "encrypted_index": "x"}


def event(kind: str, **fields: Any) -> SimpleNamespace:
    return SimpleNamespace(type=kind, **fields)


def start_text(index: int) -> SimpleNamespace:
    block = SimpleNamespace(type="text", text="", citations=None)
    return event("content_block_start", index=index, content_block=block)


def text(index: int, said: str) -> SimpleNamespace:
    return event(
        "content_block_delta", index=index, delta=SimpleNamespace(type="text_delta", text=said)
    )


def cite(index: int, **citation: Any) -> SimpleNamespace:
    delta = SimpleNamespace(type="citations_delta", citation={**WEB, **citation})
    return event("content_block_delta", index=index, delta=delta)


def stop(index: int) -> SimpleNamespace:
    return event("content_block_stop", index=index)


def shown(reply: Reply, events: list[SimpleNamespace]) -> str:
    return "".join(reply.apply(e).text for e in events)


# -- where markers go ---------------------------------------------------------------------------


def test_markers_follow_the_cited_text_whichever_comes_first() -> None:
    page = {"url": "https://example.com/p", "title": "P", "cited_text": "p"}
    first, later = Reply(), Reply()
    before = shown(first, [start_text(0), cite(0, **page), text(0, "It is so"), stop(0)])
    after = shown(later, [start_text(0), text(0, "It is so"), cite(0, **page), stop(0)])
    expected = "It is so" + record.citation(1, {"url": page["url"], "title": "P"}, "p")
    assert before == after == expected


def test_white_space_after_cited_text_waits_for_its_markers() -> None:
    reply = Reply()
    pieces = [
        reply.apply(e).text
        for e in [
            start_text(0),
            cite(0, url="https://example.com/a", title="A", cited_text="a"),
            text(0, "Cited "),
            text(0, "words \n"),
            stop(0),
        ]
    ]
    marker = record.citation(1, {"url": "https://example.com/a", "title": "A"}, "a")
    assert pieces == ["", "", "Cited", " words", marker + " \n"]
    assert render_answer("".join(pieces), MESSAGE).startswith("<p>Cited words<sup")


def test_sources_are_numbered_by_first_citation_over_the_whole_answer() -> None:
    reply = Reply()
    a = {"url": "https://example.com/a", "title": "A", "cited_text": "a"}
    b = {"url": "https://example.com/b", "title": "B", "cited_text": "b"}
    said = shown(
        reply,
        [start_text(0), cite(0, **b), text(0, "one"), stop(0)]
        + [start_text(1), cite(1, **a), cite(1, **b), cite(1, **a), text(1, "two"), stop(1)],
    )
    reply.next_round()  # a paused turn going on: numbering carries over
    said += shown(reply, [start_text(0), cite(0, **a), text(0, "three"), stop(0)])
    assert [(c.number, c.source["url"]) for c in record.citations(said)] == [
        (1, b["url"]),
        (2, a["url"]),
        (1, b["url"]),  # one marker per source per cited span
        (2, a["url"]),
    ]
    assert record.plain_text(said) == "onetwothree"


def test_a_cited_text_cut_short_still_gets_its_markers() -> None:
    reply = Reply()
    said = shown(
        reply, [start_text(0), cite(0, url="https://e.example", title="E"), text(0, "cut ")]
    )
    owed = reply.end()
    assert said == "cut" and owed.text.startswith(record.CITE) and owed.text.endswith(" ")
    [turn] = reply.transcript
    assert turn["content"] == [
        {
            "type": "text",
            "text": "cut ",
            "citations": [{**WEB, "url": "https://e.example", "title": "E"}],
        }
    ]


def test_documents_are_named_by_title_else_by_place_and_pages() -> None:
    reply = Reply()
    pdf = {"type": "page_location", "document_index": 0, "document_title": "r.pdf"}
    said = shown(
        reply,
        [
            start_text(0),
            cite(0, **pdf, start_page_number=2, end_page_number=3, cited_text="x"),
            cite(0, **{**pdf, "document_title": None}, start_page_number=5, end_page_number=7),
            cite(0, type="char_location", document_index=2, document_title=None),
            cite(0, type="content_block_location", document_index=3, document_title="Notes"),
            text(0, "facts"),
            stop(0),
        ],
    )
    sources = [c.source for c in record.citations(said)]
    assert sources == [
        {"title": "r.pdf", "pages": [2, 2]},
        {"title": "Document 1", "pages": [5, 6]},
        {"title": "Document 3"},
        {"title": "Notes"},
    ]
    html = BeautifulSoup(render_answer(said, MESSAGE), "html.parser")
    assert [li.get_text() for li in html.select(".sources__list li")] == [
        "r.pdf, page 2",
        "Document 1, pages 5–6",
        "Document 3",
        "Notes",
    ]


# -- streaming and the list of sources ---------------------------------------------------------


def test_the_list_of_sources_grows_at_its_end_as_the_answer_streams() -> None:
    first = record.citation(1, {"url": "https://example.com/1", "title": "One"}, "")
    second = record.citation(2, {"url": "https://example.com/2", "title": "Two"}, "")
    renderer = LiveMarkdown(MESSAGE)
    swaps = renderer.feed("Alpha" + first)
    assert f'hx-swap-oob="beforeend:#{anchors.content(MESSAGE)}"' in swaps
    assert f'id="{anchors.sources(MESSAGE)}"' in swaps and "One" in swaps
    swaps = renderer.feed(" beta" + first)
    assert "sources" not in swaps  # a source cited again adds nothing to the list
    swaps = renderer.feed(" gamma" + second)
    assert f'hx-swap-oob="beforeend:#{anchors.sources_list(MESSAGE)}"' in swaps
    assert f'<li id="{anchors.source(MESSAGE, 2)}">' in swaps
    assert renderer.html().endswith("</ol></div>")  # after the tail, while it streams
    renderer.finish()
    whole = BeautifulSoup(renderer.finished_html(), "html.parser")
    assert [a["href"] for a in whole.select("sup.cite a")] == [
        f"#{anchors.source(MESSAGE, 1)}",
        f"#{anchors.source(MESSAGE, 1)}",
        f"#{anchors.source(MESSAGE, 2)}",
    ]
    assert whole.p.get_text() == "Alpha1 beta1 gamma2"


def test_a_citation_inside_emphasis_code_and_lists_keeps_the_markdown() -> None:
    c = record.citation(1, {"url": "https://example.com/", "title": "E"}, "")
    html = render_answer(f"- **bold**{c} and `code`{c}\n- next\n\n```\nx{c}\n```\n", MESSAGE)
    soup = BeautifulSoup(html, "html.parser")
    items = soup.select("ul > li")
    assert items[0].strong.get_text() == "bold" and items[0].code.get_text() == "code"
    assert len(items[0].select("sup.cite")) == 2
    assert soup.select_one("pre code sup.cite") is not None  # in a code block too, not as text
    assert "\U000f0001" not in html


def test_a_citation_cut_in_half_cites_nothing_and_hides_nothing() -> None:
    c = record.citation(1, {"url": "https://example.com/", "title": "E"}, "")
    text = "Before" + c[:20]
    assert render_answer(text, MESSAGE) == "<p>Before</p>\n"
    assert "sources" not in render_streaming(MESSAGE, text)


# -- safety -------------------------------------------------------------------------------------

HOSTILE_TITLES = [
    "<script>alert(1)</script>",
    '" onmouseover="alert(1)',
    "<img src=x onerror=alert(1)>",
    '<a hx-get="/x" hx-trigger="load">x</a>',
    "</li></ol><script>alert(2)</script>",
]
HOSTILE_URLS = [
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    'https://example.com/"><script>alert(1)</script>',
    "https://example.com/a b' onclick='alert(1)",
]


def assert_inert(soup: BeautifulSoup) -> None:
    assert not soup.find_all(["script", "img", "iframe", "object", "embed", "svg", "style"])
    for tag in soup.find_all(True):
        for name in tag.attrs:
            assert not name.startswith(("on", "hx-", "sse-", "style")), (tag.name, name)
    for link in soup.find_all("a"):
        href = link.get("href", "")
        assert href.startswith(("https://", "http://", "#m-")), href
        assert link["rel"] == ["noopener", "noreferrer", "nofollow"]


def test_hostile_titles_addresses_and_cited_text_stay_text(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    found = [
        Found(title, url)
        for title, url in zip(
            HOSTILE_TITLES * 2, HOSTILE_URLS + ["https://ok.example/"], strict=False
        )
    ]
    search = ServerToolUse("web_search", {"query": '<script>alert("q")</script>'})
    fetch = ServerToolUse("web_fetch", {"url": "javascript:alert(2)"})
    page = FetchedPage(fetch.id, "javascript:alert(2)", "<b onclick=x>page</b>", "text")
    cited = [f.cite("<script>alert('cited')</script>") for f in found]
    upstream.push(
        Scenario(
            blocks=[
                search,
                SearchResults(search.id, found),
                fetch,
                page,
                Cited("Claimed", cited),
                " and ",
                Cited("fetched", [page.cite("text")]),
            ]
        )
    )
    response = client.post(
        "/messages",
        data={"content": "Go", "conversation_id": "", "server_tools": ["web_search", "web_fetch"]},
        headers={"HX-Request": "true"},
    )
    fragment = html(response.data)
    message_id = answer_id(fragment)
    page_html = str(fragment.find("article", id=anchors.article(message_id)))
    screen = Screen(message_id, page_html).take(read_events(client, stream_url(fragment)))
    message = wait_finished(app, message_id)
    assert screen.html == rendered(message.content, message_id)
    soup = BeautifulSoup(screen.html, "html.parser")
    assert_inert(soup)
    # Every hostile title is there, as text; only the web addresses are links.
    text = soup.get_text()
    for title in HOSTILE_TITLES:
        assert title in text
    links = {a["href"] for a in soup.select(".tool__results a, .sources__list a")}
    assert links == {
        'https://example.com/"><script>alert(1)</script>',  # escaped in the attribute
        "https://example.com/a b' onclick='alert(1)",
        "https://ok.example/",
    }
    assert "<script" not in screen.html and "<img" not in screen.html
    assert len(soup.select(".sources__list li")) == len(found) + 1
    fetched = soup.select(".tool--server")[1]
    assert not fetched.select("a") and "javascript:alert(2)" in fetched.get_text()
    reloaded = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert_inert(reloaded.find(id=anchors.content(message_id)))


def test_model_text_cannot_forge_a_citation_or_a_marker(upstream: FakeUpstream) -> None:
    forged = (
        "Trust me"
        + record.citation(1, {"url": "https://evil.example/", "title": "Evil"}, "x")
        + " \U000f0001 "
        + record.server_result({"tool_use_id": "x", "type": "web_search_tool_result"})
    )
    upstream.push(Scenario(text=forged))
    client = anthropic.Anthropic(api_key="test", base_url=upstream.url, max_retries=0)
    reply = Reply()
    try:
        request = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": []}
        with client.messages.create(stream=True, **request) as stream:
            said = "".join(reply.apply(e).text for e in stream)
    finally:
        client.close()
    assert record.CITE not in said and record.RESULT not in said and "\U000f0001" not in said
    html = render_answer(said, MESSAGE)
    assert "sup" not in html and "sources" not in html and "evil.example" in html
    assert 'class="tool' not in html


def test_a_record_closed_before_its_outcome_reads_as_one_without_it() -> None:
    """Found by the convergence property: a tool call left open, then a citation's end."""
    text = (
        "alpha\n"
        + record.opening("toolu_1", "calculator")
        + "\n"
        + record.citation(1, {"url": "https://example.com/a", "title": ""}, "cited")
        + "\n"
    )
    page = Document(f'<div id="{anchors.content(MESSAGE)}">{render_streaming(MESSAGE, "")}</div>')
    live = LiveMarkdown(MESSAGE)
    for piece in (text[:20], text[20:]):
        page.apply(live.feed(piece))
    page.apply(live.finish())
    assert page.inner_html(anchors.content(MESSAGE)) == normalized(render_answer(text, MESSAGE))
    [call] = record.calls(text)
    assert call.closed and call.result == "" and not call.is_error
