"""A whole answer through the real WSGI app, the real SDK and the fake upstream on loopback."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from chatapp.conversations import quotas, store
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.llm.tokens import estimate_tokens
from chatapp.metrics import Meter
from chatapp.models import Conversation, Message, Naming, User, utcnow
from chatapp.streaming import persistence, streams
from chatapp.streaming.generation import Generation

from .conftest import Configure, asked, html, parse_events, read_events, send, stream_url, user_id
from .dom import Screen, rendered, streamed_html

TRICKY = (
    "Unicode: naïve café — 日本語 🌍👍🏽\n<script>alert('x')</script> & &amp; \"quotes\"\r\nend"
)


def answer_id(fragment) -> int:  # type: ignore[no-untyped-def]
    return int(fragment.select_one('article[data-role="assistant"]')["id"].removeprefix("m-"))


def stored(app: Flask, message_id: int) -> Message:
    with app.app_context():
        message = db.session.get(Message, message_id)
        assert message is not None
        db.session.expunge(message)
        return message


def wait_finished(app: Flask, message_id: int, timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while message_id in streams(app).live:
        assert time.monotonic() < deadline, "the answer never finished"
        gevent.sleep(0.01)
    return stored(app, message_id)


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


def test_stream_of_a_finished_answer_returns_its_final_state_at_once(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="All done."))
    fragment = send(client, "Quick")
    wait_finished(app, answer_id(fragment))
    started = time.monotonic()
    events = read_events(client, stream_url(fragment))
    assert time.monotonic() - started < 1
    assert [e.get("event") for e in events[1:]] == ["done"]
    # A listener that arrives after the end is shown the finished content whole.
    assert streamed_html(events, answer_id(fragment)) == rendered("All done.")


def test_resume_from_last_event_id_has_no_gap_and_no_duplicate(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    text = "".join(
        f"Sentence {i}, *some* of it.\n\n"
        if i % 7
        else f"- item {i}\n- more\n\n```\ncode {i}\n```\n"
        for i in range(80)
    )
    upstream.push(
        Scenario(
            text=text, pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(300.0, 300.0))
        )
    )
    fragment = send(client, "Long")
    url = stream_url(fragment)

    screen, last_id = Screen(answer_id(fragment)), None
    for _ in range(4):  # connect, take two frames, drop, reconnect with the last id
        response = client.get(
            url, headers={"Last-Event-ID": last_id} if last_id else {}, buffered=False
        )
        frames = 0
        buffer = ""
        finished = False
        for chunk in response.response:
            buffer += chunk.decode()
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                for event in parse_events(block + "\n\n"):
                    screen.take([event])
                    if event.get("event") == "frame":
                        last_id, frames = event["id"], frames + 1
                    if event.get("event") == "done":
                        finished = True
            if frames >= 2 or finished:
                break
        response.close()
        if finished:
            break
    rest = read_events(client, url, headers={"Last-Event-ID": last_id} if last_id else {})
    screen.take(rest)
    assert screen.finished and screen.html == rendered(text)
    assert wait_finished(app, answer_id(fragment)).content == text
    assert len(upstream.requests) == 1  # Claude was asked once


def test_heartbeat_comment_while_waiting_for_the_first_token(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(HEARTBEAT_SECONDS=0.1)
    client = app.test_client()
    upstream.push(Scenario(text="Slow start.", pace=Pace(first_token_seconds=(0.6, 0.6))))
    events = read_events(client, stream_url(send(client, "Take your time")))
    before_text = []
    for event in events:
        if event.get("event") == "frame":
            break
        before_text.append(event)
    assert sum(1 for e in before_text if "comment" in e) >= 3


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


def test_a_busy_worker_sends_fewer_bigger_frames_and_every_character(
    configured: Configure, upstream: FakeUpstream
) -> None:
    # Four answers at once against a budget of 10 frames a second: 0.4 s between frames.
    app = configured(WORKER_FRAMES_PER_SECOND=10)
    client = app.test_client()
    pace = Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(150.0, 150.0))
    texts = [f"Answer {n}: " + "word " * 120 for n in range(4)]
    upstream.push(*(Scenario(text=text, pace=pace) for text in texts))
    fragments = [send(client, f"Question {n}") for n in range(4)]
    assert streams(app).frame_interval == pytest.approx(0.4)
    readers = [gevent.spawn(read_events, client, stream_url(f)) for f in fragments]
    for fragment, text, reader in zip(fragments, texts, readers, strict=True):
        events = reader.get(timeout=20)
        frames = [e for e in events if e.get("event") == "frame"]
        # ~600 characters at ~600 a second: about a second, so a few frames, not dozens.
        assert 1 <= len(frames) <= 6
        assert Screen(answer_id(fragment)).take(events).html == rendered(text)
    assert streams(app).frame_interval == app.config["FRAME_INTERVAL"]  # all done: no load


def test_text_is_stored_in_batches_while_it_streams(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    text = "token " * 300
    upstream.push(
        Scenario(
            text=text, pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(400.0, 400.0))
        )
    )
    fragment = send(client, "Batch it")
    message_id = answer_id(fragment)
    flusher = streams(app).flusher
    generation = streams(app).live[message_id]
    seen_partial = False
    while message_id in streams(app).live:
        gevent.sleep(0.1)
        row = stored(app, message_id)
        partial = row.content
        assert text.startswith(partial)  # appended in order, never twice
        if 0 < len(partial) < len(text) and row.status == "streaming":
            seen_partial = True
            # The prompt's tokens are stored with the text: billed, whatever happens next.
            assert row.input_tokens and row.input_tokens > 0 and row.output_tokens is None
    deltas = len(generation.reply.text_parts)
    assert seen_partial  # stored as it arrives, not only at the end
    assert flusher.writes < deltas / 10  # ... in batches, not one write per token
    assert stored(app, message_id).content == text


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


class Receiving:
    """A live answer as the flusher sees it: `text` received, what is stored of it counted."""

    def __init__(self, message_id: int, text: str) -> None:
        self.message_id = message_id
        self.text = text
        self.stored = 0

    def unstored(self) -> persistence.Unstored:
        return persistence.Unstored(self.stored, self.text[self.stored :], 1, 0, "", 0)

    def mark_stored(self, written: persistence.Unstored) -> None:
        self.stored += len(written.text)


def test_a_group_commit_is_cut_into_short_transactions(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(persistence, "BATCH_ROWS", 3)
    monkeypatch.setattr(persistence, "BATCH_CHARACTERS", 100)
    texts = ["a" * 10] * 5 + ["b" * 90, "c" * 150]  # the last is over the cap by itself
    with app.app_context():
        owner = db.session.get(User, user_id(app))
        assert owner is not None
        answers = []
        for _ in texts:
            conversation = store.create_conversation(owner, store.Settings(model="claude-x"))
            answers.append(store.add_exchange(conversation, "Go")[1].id)
    flusher = persistence.Flusher(app, 60.0, Meter())
    for answer, text in zip(answers, texts, strict=True):
        flusher.mark(Receiving(answer, text))
    stream = Waiting(lambda: flusher.writes)
    flusher.flush()
    stream.stop()
    flusher.stop()
    # [10, 10, 10] (rows), [10, 10] (90 more would pass 100), [90], [150]
    assert flusher.writes == 4
    assert {1, 2, 3} <= set(stream.seen)  # a stream ran between the transactions
    assert [stored(app, answer).content for answer in answers] == texts


def test_a_page_of_many_answers_lets_the_streams_run_between_them(
    app: Flask, client: FlaskClient
) -> None:
    """Rendering markdown holds the worker; a page renders its answers one at a time."""
    answers = [f"## Answer {n}\n\nSome *markdown* text, {n}.\n" for n in range(4)]
    with app.app_context():
        owner = db.session.get(User, user_id(app))
        assert owner is not None
        conversation = store.create_conversation(owner, store.Settings(model="claude-x"))
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


def test_finished_generation_logs_one_structured_line(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:

    upstream.push(Scenario(text="Logged."))
    with caplog.at_level(logging.INFO, logger="chatapp.streaming.generation"):
        fragment = send(client, "Log it")
        wait_finished(app, answer_id(fragment))
    records = [r for r in caplog.records if r.getMessage() == "generation finished"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    from chatapp.logs import JsonFormatter, TextFormatter

    assert json.loads(JsonFormatter().format(records[0]))["status"] == "complete"
    assert TextFormatter().format(records[0]).endswith(json.dumps(fields))
    assert fields["message_id"] == answer_id(fragment) and fields["status"] == "complete"
    assert set(fields) >= {
        "conversation_id",
        "model",
        "stop_reason",
        "ttft_ms",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
    }


def test_sweeper_interrupts_answers_whose_writer_vanished(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    from datetime import timedelta

    from chatapp.models import utcnow

    owner = user_id(app)
    with app.app_context():
        conversation = Conversation(user_id=owner, model="claude-sonnet-4-6", system_prompt="")
        stale = utcnow() - timedelta(minutes=5)
        orphan = Message(
            conversation=conversation,
            role="assistant",
            content="half of an answer",
            status="streaming",
            model="claude-sonnet-4-6",
            input_tokens=12,  # the API took its request
            updated_at=stale,
        )
        # Its worker died before the API took its request: nothing was billed.
        unasked = Message(
            conversation=conversation, role="assistant", content="", status="streaming"
        )
        unasked.updated_at = stale
        fresh = Message(conversation=conversation, role="assistant", content="", status="streaming")
        db.session.add_all([conversation, orphan, unasked, fresh])
        db.session.commit()
        orphan_id, unasked_id, fresh_id = orphan.id, unasked.id, fresh.id
    assert streams(app).sweeper.sweep() == 2
    assert stored(app, orphan_id).status == "interrupted"
    assert stored(app, orphan_id).content == "half of an answer"
    # What it wrote is counted (the fake counter: 4 characters a token).
    assert stored(app, orphan_id).output_tokens == math.ceil(len("half of an answer") / 4)
    assert stored(app, unasked_id).status == "interrupted"
    assert stored(app, unasked_id).output_tokens is None
    assert [r["messages"][0]["content"] for r in upstream.counted] == [".", "half of an answer"]
    assert stored(app, fresh_id).status == "streaming"
    # A listener of the orphan gets its final state instead of waiting forever.
    events = read_events(client, f"/messages/{orphan_id}/stream?from=4")
    assert html(events[-1]["data"]).find("article")["data-status"] == "interrupted"


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


def test_retry_replaces_a_failed_answer_in_place(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(status=529), Scenario(text="Better now."))
    fragment = send(client, "Try me")
    message_id = answer_id(fragment)
    assert wait_finished(app, message_id).status == "failed"
    page = html(client.get(f"/conversations/{stored(app, message_id).conversation_id}").data)
    assert page.select_one(f"#m-{message_id}").find("button", string="Retry") is not None

    response = client.post(f"/messages/{message_id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 200
    article = html(response.data).find("article")
    assert article["id"] == f"m-{message_id}" and article["data-status"] == "streaming"
    message = wait_finished(app, message_id)
    assert (
        message.status == "complete" and message.content == "Better now." and message.error is None
    )
    # The failed attempt is not part of the history Claude sees.
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == ["user"]


def test_continue_asks_for_the_rest_in_a_new_turn(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="The first half", cut_after=8), Scenario(text=" and the rest."))
    fragment = send(client, "Tell me")
    message_id = answer_id(fragment)
    assert wait_finished(app, message_id).status == "failed"
    response = client.post(f"/messages/{message_id}/continue", headers={"HX-Request": "true"})
    assert response.status_code == 200
    new_id = answer_id(html(response.data))
    assert wait_finished(app, new_id).content == " and the rest."
    sent = upstream.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": "The firs"}
    assert sent[2]["role"] == "user" and "continue" in sent[2]["content"][0]["text"]
    # Only the last answer can be retried or continued, and only once it has ended.
    response = client.post(f"/messages/{message_id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 409 and "last answer" in html(response.data).get_text()


def test_other_open_pages_of_the_conversation_see_a_new_exchange(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="First."), Scenario(text="Second, seen everywhere."))
    first = send(client, "Open this in two tabs")
    conversation_id = int(first.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(first))

    def listen(tab: str) -> list[dict[str, str]]:
        from .conftest import parse_events

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
    assert articles[1]["id"] == f"m-{second_id}" and articles[1].has_attr("sse-connect")
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

    from .conftest import parse_events

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


def test_abandon_after_stops_an_answer_nobody_watches(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(ABANDON_AFTER=0.4)
    client = app.test_client()
    upstream.push(
        Scenario(
            text="word " * 400,
            pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(40.0, 40.0)),
        )
    )
    fragment = send(client, "Nobody will read this")
    message = wait_finished(app, answer_id(fragment))
    assert message.status == "cancelled" and 0 < len(message.content) < len("word " * 400)


def test_by_default_an_answer_nobody_watches_still_finishes(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Finished in the background."))
    fragment = send(client, "Leave right away")
    assert wait_finished(app, answer_id(fragment)).status == "complete"


def test_health_and_metrics(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok", "database": "ok"}
    body = client.get("/metrics").data.decode()
    import re

    assert "# TYPE chatapp_answers_live gauge" in body
    assert re.search(r"^chatapp_db_connections_in_use \d+$", body, flags=re.MULTILINE)


def test_health_says_when_redis_is_unreachable(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(REDIS_URL="redis://127.0.0.1:9/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["redis"] == "ConnectionError"


def test_metrics_count_frames_answers_errors_and_first_tokens(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Counted."), Scenario(status=529))
    counted = wait_finished(app, answer_id(send(client, "One")))
    wait_finished(app, answer_id(send(client, "Two")))
    body = client.get("/metrics").data.decode()
    # Only the answer the API took is billed: its tokens, by model and kind.
    for kind, count in [
        ("input", counted.input_tokens),
        ("output", counted.output_tokens),
        ("cache_read", 0),
    ]:
        assert f'chatapp_tokens_total{{model="{counted.model}",kind="{kind}"}} {count}\n' in body
    assert counted.output_tokens and counted.output_tokens > 0
    assert 'chatapp_answers_total{status="complete"} 1' in body
    assert 'chatapp_answers_total{status="failed"} 1' in body
    assert 'chatapp_upstream_errors_total{kind="overloaded_error"} 1' in body
    assert "chatapp_characters_total 8" in body
    assert 'chatapp_first_token_seconds_bucket{le="+Inf"} 1' in body
    assert "chatapp_frames_total " in body and "chatapp_db_flush_seconds_count " in body


def test_connection_check_streams_timed_events(client: FlaskClient) -> None:
    page = html(client.get("/connection-check").data)
    assert page.find("button", string=lambda s: s and "Quick check" in s) is not None
    response = client.get("/connection-check/stream?ticks=3&interval=0.05&quiet=0.1")
    assert response.headers["X-Accel-Buffering"] == "no"
    events = parse_events(response.data.decode())
    names = [e.get("event") for e in events if "event" in e]
    assert names == ["hello", "tick", "tick", "tick", "done"]
    assert [e["id"] for e in events if e.get("event") == "tick"] == ["0", "1", "2"]


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


def test_an_answer_the_api_never_took_shows_no_token_counts(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(status=529))
    message = wait_finished(app, answer_id(send(client, "Busy?")))
    assert message.status == "failed" and message.input_tokens is None
    page = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert " in " not in page.select_one(f"#m-{message.id} .usage").get_text()


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


THOUGHT = "The user wants <tricky> things & more.\nFirst, list them; then answer briefly."


def test_thinking_streams_in_its_own_section_then_folds_away(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    text = "Here is the **answer**."
    upstream.push(
        Scenario(
            text=text,
            thinking=THOUGHT,
            pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(200.0, 200.0)),
        )
    )
    fragment = send(client, "Think first")
    message_id = answer_id(fragment)
    section = fragment.select_one(f"#m-{message_id}-thinking")
    assert section is not None and section.has_attr("hidden")  # nothing to show yet
    events = read_events(client, stream_url(fragment))

    screen = Screen(message_id, str(fragment.find("article", id=f"m-{message_id}")))
    opened = []
    for event in events:
        screen.take([event])
        shown = screen.document.soup.find(id=f"m-{message_id}-thinking")
        if shown is not None and not shown.has_attr("hidden"):
            opened.append(shown.has_attr("open"))
    # Open while the model thinks, folded once the answer begins, and so it stays.
    assert opened[0] is True and opened[-1] is False
    assert opened == sorted(opened, reverse=True)
    final = screen.document.soup.find(id=f"m-{message_id}-thinking")
    assert final.get_text() == "Thinking…" + THOUGHT
    assert screen.html == rendered(text)
    assert events[-1]["id"] == f"{message_id}:{len(THOUGHT) + len(text)}"

    message = stored(app, message_id)
    assert (message.thinking, message.content) == (THOUGHT, text)
    reloaded = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert str(reloaded.find(id=f"m-{message_id}-thinking")) == str(final)


def test_a_listener_joining_mid_thought_sees_the_thinking_so_far(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    thought = "".join(f"Step {i}: consider it. " for i in range(60))
    upstream.push(
        Scenario(
            text="Done.",
            thinking=thought,
            pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(150.0, 150.0)),
        )
    )
    fragment = send(client, "Think long")
    message_id = answer_id(fragment)
    generation = streams(app).live[message_id]
    while generation.published < 40:
        gevent.sleep(0.02)
    page = html(client.get(f"/conversations/{generation.conversation_id}").data)
    section = page.find(id=f"m-{message_id}-thinking")
    assert section.has_attr("open") and section.get_text().startswith("Thinking…Step 0")
    events = read_events(client, stream_url(page))
    screen = Screen(message_id, str(page.find("article", id=f"m-{message_id}"))).take(events)
    final = screen.document.soup.find(id=f"m-{message_id}-thinking")
    assert final.get_text() == "Thinking…" + thought and not final.has_attr("open")
    assert screen.html == rendered("Done.")
    assert stored(app, message_id).thinking == thought


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
    usage = page.select_one(f"#m-{answer_id(second)} .usage").get_text(" ", strip=True)
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
        usage = page.select_one(f"#m-{answer_id(fragment)} .usage")
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


def test_rename_export_and_delete_a_conversation(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="An *answer* with\n\n- a list"))
    fragment = send(client, "A question")
    conversation_id = int(fragment.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(fragment))
    base = f"/conversations/{conversation_id}"

    field = html(client.get(f"{base}/title", headers={"HX-Request": "true"}).data)
    assert field.select_one("input#title-input")["value"] == "A question"
    empty = client.post(f"{base}/title", data={"title": "  "}, headers={"HX-Request": "true"})
    assert empty.status_code == 422 and "can't be empty" in html(empty.data).get_text()
    renamed = html(
        client.post(
            f"{base}/title", data={"title": " Renamed  chat "}, headers={"HX-Request": "true"}
        ).data
    )
    assert renamed.select_one("#chat-title").get_text() == "Renamed chat"
    assert [a.get_text() for a in renamed.select("#sidebar .sidebar__list a")] == ["Renamed chat"]

    markdown = client.get(f"{base}/export.md")
    assert markdown.headers["Content-Disposition"].startswith("attachment;")
    assert markdown.get_data(as_text=True) == (
        "# Renamed chat\n\nModel: claude-sonnet-4-6\n\n## You\n\nA question\n\n"
        "## Claude\n\nAn *answer* with\n\n- a list\n"
    )
    exported = client.get(f"{base}/export.json").get_json()
    assert exported["title"] == "Renamed chat"
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [
        ("user", "A question"),
        ("assistant", "An *answer* with\n\n- a list"),
    ]
    assert exported["messages"][1]["usage"]["output_tokens"] > 0
    assert exported["messages"][1]["cost_usd"] is not None

    deleted = client.post(f"{base}/delete", headers={"HX-Request": "true"})
    assert deleted.status_code == 204 and deleted.headers["HX-Redirect"] == "/"
    assert client.get(base).status_code == 404
    with app.app_context():
        assert db.session.get(Message, answer_id(fragment)) is None


def test_regenerate_writes_the_last_complete_answer_again(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="First try."), Scenario(text="Second try."))
    fragment = send(client, "Once more")
    message_id = answer_id(fragment)
    wait_finished(app, message_id)
    conversation_id = stored(app, message_id).conversation_id
    page = html(client.get(f"/conversations/{conversation_id}").data)
    assert page.select_one(f"#m-{message_id}").find("button", string="Regenerate") is not None
    response = client.post(f"/messages/{message_id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert wait_finished(app, message_id).content == "Second try."
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == ["user"]


def test_a_listener_ahead_of_the_database_is_never_shown_less(
    app: Flask, client: FlaskClient
) -> None:
    """A reconnect served from the database (its writer gone, or just finished) waits until
    the stored answer has what the listener showed, instead of resetting it to less."""
    owner = user_id(app)
    with app.app_context():
        conversation = Conversation(user_id=owner, model="claude-sonnet-4-6", system_prompt="")
        answer = Message(
            conversation=conversation, role="assistant", content="Half", status="streaming"
        )
        db.session.add_all([conversation, answer])
        db.session.commit()
        message_id = answer.id

    def store_the_rest() -> None:
        gevent.sleep(0.6)
        with app.app_context():
            stored_answer = db.session.get(Message, message_id)
            stored_answer.content, stored_answer.status = "Half and the rest.", "complete"
            db.session.commit()

    writer = gevent.spawn(store_the_rest)
    events = read_events(
        client, f"/messages/{message_id}/stream", headers={"Last-Event-ID": f"{message_id}:10"}
    )
    writer.join()
    offsets = [int(e["id"].split(":")[1]) for e in events if e.get("event") in ("frame", "done")]
    assert offsets and min(offsets) >= 10, events
    assert streamed_html(events, message_id) == rendered("Half and the rest.")


def test_edit_the_last_question_and_send_it_again(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="About cats."), Scenario(text="About dogs."))
    fragment = send(client, "Tell me about cats")
    question = int(fragment.select_one('article[data-role="user"]')["id"].removeprefix("m-"))
    answer = answer_id(fragment)
    assert fragment.select_one(f"#m-{question}").find("button", string="Edit") is not None
    wait_finished(app, answer)

    form = html(client.get(f"/messages/{question}/edit", headers={"HX-Request": "true"}).data)
    assert form.select_one("textarea").get_text() == "Tell me about cats"
    empty = client.post(f"/messages/{question}/edit", data={"content": " "})
    assert empty.status_code == 422 and "Type a message first" in html(empty.data).get_text()

    response = client.post(
        f"/messages/{question}/edit",
        data={"content": "Tell me about dogs"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    page = html(response.data)
    assert page.select_one(f"#m-{question} [data-content]").get_text() == "Tell me about dogs"
    assert page.select_one(f"#m-{answer}")["data-status"] == "streaming"
    assert wait_finished(app, answer).content == "About dogs."
    assert stored(app, question).content == "Tell me about dogs"
    assert asked(upstream.requests[-1]) == "Tell me about dogs"
    with app.app_context():
        assert (
            db.session.get(Conversation, stored(app, answer).conversation_id).messages[-1].id
            == answer
        )

    # Only the last question can be edited.
    upstream.push(Scenario(text="More."))
    conversation_id = stored(app, answer).conversation_id
    wait_finished(app, answer_id(send(client, "Another", conversation_id)))
    refused = client.post(f"/messages/{question}/edit", data={"content": "Cats again"})
    assert refused.status_code == 422 and "Only the last question" in html(refused.data).get_text()


def test_search_finds_your_conversations_by_title_and_text(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(
        Scenario(text="The zebra has stripes."),
        Scenario(text="Nothing to see."),
        Scenario(text="Another zebra, someone else's."),
    )
    first = send(client, "Striped animals")
    wait_finished(app, answer_id(first))
    second = send(client, "Zebra crossings")
    wait_finished(app, answer_id(second))
    bob = app.test_client(user="bob")
    wait_finished(app, answer_id(send(bob, "Bob asks about a zebra")))

    found = html(client.get("/search?q=zebra", headers={"HX-Request": "true"}).data)
    # Both of Alice's (one by its answer's text, one by its title), newest first; not Bob's.
    assert [a.get_text() for a in found.select("#sidebar-results a")] == [
        "Zebra crossings",
        "Striped animals",
    ]
    none = html(client.get("/search?q=giraffe", headers={"HX-Request": "true"}).data)
    assert "No conversation matches “giraffe”" in none.get_text()
    # Without htmx, a page with the results in its sidebar.
    page = html(client.get("/search?q=stripes").data)
    assert [a.get_text() for a in page.select("#sidebar-results a")] == ["Striped animals"]
    assert page.select_one("#search-input")["value"] == "stripes"
    # An empty search gives the recent list back.
    recent = html(client.get("/search?q=", headers={"HX-Request": "true"}).data)
    assert len(recent.select("#sidebar-results a")) == 2


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
    metrics = client.get("/metrics").data.decode()
    assert (
        f'chatapp_tokens_total{{model="claude-haiku-4-5",kind="output"}} {naming.output_tokens}\n'
        in metrics
    )
    prices = app.config["PRICES"]
    # Billed like an answer: in the conversation's total...
    total = costs.cost(answer, prices) + costs.cost(naming, prices)
    assert costs.cost(naming, prices) > Decimal(0)
    page = html(client.get(f"/conversations/{conversation_id}").data)
    assert page.select_one("#conversation-cost").get_text() == f"Total {costs.dollars(total)}"
    # ... on the admins' usage page, as tokens of its model but not as an answer ...
    with app.app_context():
        rows = {row.model: row for row in store.usage_by_person_and_model()}
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
