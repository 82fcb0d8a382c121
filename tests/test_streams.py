"""An answer's event stream: a finished answer at once, exact resume by Last-Event-ID, heartbeats,
a busy worker's bigger frames, listeners who join late or run ahead, answers nobody watches."""

from __future__ import annotations

import time

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient

from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.models import Conversation, Message
from chatapp.streaming import streams

from .conftest import Configure, parse_events, read_events, send, stream_url, user_id
from .dom import Screen, rendered, streamed_html
from .helpers import answer_id, wait_finished


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


def test_every_listener_of_an_answer_gets_one_done_made_once(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three tabs follow one answer: its end (the message, the conversation's total) is
    rendered and its usage read once for all of them, and each is shown the same."""
    from chatapp.conversations import store

    reads = []
    usage = store.conversation_usage

    def counted_usage(conversation_id: int):  # type: ignore[no-untyped-def]
        reads.append(conversation_id)
        gevent.sleep(0.05)  # the others ask meanwhile
        return usage(conversation_id)

    monkeypatch.setattr(store, "conversation_usage", counted_usage)
    # The first token comes late enough for the three tabs to be following it on a busy machine.
    upstream.push(
        Scenario(text="Shown to every tab alike.", pace=Pace(first_token_seconds=(1.5, 1.5)))
    )
    url = stream_url(send(client, "Three tabs"))
    tabs = [gevent.spawn(read_events, client, url) for _ in range(3)]
    gevent.joinall(tabs, raise_error=True)
    dones = [[e for e in tab.value if e.get("event") == "done"] for tab in tabs]
    assert all(len(done) == 1 for done in dones)
    assert dones[0] == dones[1] == dones[2]
    assert "conversation-cost" in dones[0][0]["data"] and len(reads) == 1
    assert "Shown to every tab alike." in dones[0][0]["data"]  # the answer, not a failure
