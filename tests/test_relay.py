"""Two workers sharing one database and one Redis: any worker serves any stream.

Both apps run in this process (as two gunicorn workers would run beside each other); the
answer is written by worker A and followed, stopped and watched from worker B.
"""

from __future__ import annotations

import time

import gevent
import pytest
from flask import Flask

from chatapp.auth import accounts
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Pace, Scenario, ToolUse
from chatapp.models import Message
from chatapp.render import anchors
from chatapp.streaming import streams
from chatapp.tools.record import calls

from .conftest import (
    REDIS_URL,
    html,
    parse_events,
    read_events,
    send,
    stream_url,
)
from .dom import Screen, rendered, streamed_html
from .helpers import answer_id, stored

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

SLOW = Pace(first_token_seconds=(0.05, 0.05), tokens_per_second=(120.0, 120.0))


def test_an_answer_written_on_one_worker_streams_from_another(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    text = "".join(f"Piece {i}: naïve <b>&</b> 🌍. " for i in range(60))
    upstream.push(Scenario(text=text, pace=SLOW))
    fragment = send(a.test_client(), "Write on A")
    message_id = answer_id(fragment)
    assert message_id in streams(a).live and message_id not in streams(b).live
    gevent.sleep(0.3)  # some text has gone out before B's listener arrives

    events = read_events(b.test_client(), stream_url(fragment))
    assert streamed_html(events, message_id) == rendered(text)
    final = html(events[-1]["data"]).find("article")
    assert final["data-status"] == "complete"
    assert stored(b, message_id).content == text
    assert len(upstream.requests) == 1


def test_thinking_streams_from_another_worker_too(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    thought = "".join(f"Thought {i}. " for i in range(40))
    upstream.push(Scenario(text="The answer.", thinking=thought, pace=SLOW))
    fragment = send(a.test_client(), "Think on A")
    message_id = answer_id(fragment)
    gevent.sleep(0.3)  # B's listener arrives mid-thought

    events = read_events(b.test_client(), stream_url(fragment))
    screen = Screen(message_id, str(fragment.find("article", id=anchors.article(message_id)))).take(
        events
    )
    section = screen.document.soup.find(id=anchors.thinking(message_id))
    assert section.get_text() == "Thinking…" + thought and not section.has_attr("open")
    assert screen.html == rendered("The answer.")
    assert stored(b, message_id).thinking == thought


def test_a_tool_call_streams_from_another_worker_too(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    before = "".join(f"Before {i}. " for i in range(20))
    upstream.push(
        Scenario(text=before, tool_uses=[ToolUse("calculator", {"expression": "2**8"})], pace=SLOW),
        Scenario(text="It is 256.", pace=SLOW),
    )
    response = a.test_client().post(
        "/messages",
        data={"content": "Use a tool on A", "conversation_id": "", "tools": "calculator"},
        headers={"HX-Request": "true"},
    )
    fragment = html(response.data)
    message_id = answer_id(fragment)
    gevent.sleep(0.2)  # B's listener arrives mid-answer

    events = read_events(b.test_client(), stream_url(fragment))
    content = stored(b, message_id).content
    [call] = calls(content)
    assert call.result == "256"
    assert streamed_html(events, message_id) == rendered(content, message_id)


def test_resume_on_another_worker_has_no_gap_and_no_duplicate(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    text = "".join(f"sentence {i}. " for i in range(150))
    upstream.push(Scenario(text=text, pace=SLOW))
    fragment = send(a.test_client(), "Resume across workers")
    url = stream_url(fragment)

    # Read a few frames from A, drop, then continue from B with the last id.
    response = a.test_client().get(url, buffered=False)
    raw, frames = "", 0
    for chunk in response.response:
        raw += chunk.decode()
        frames = raw.count("event: frame")
        if frames >= 3 and raw.endswith("\n\n"):
            break
    response.close()
    first = parse_events(raw)
    last_id = [e["id"] for e in first if e.get("event") == "frame"][-1]
    rest = read_events(b.test_client(), url, headers={"Last-Event-ID": last_id})
    screen = Screen(answer_id(fragment)).take(first).take(rest)
    assert screen.finished and screen.html == rendered(text)


def test_stop_pressed_on_another_worker_stops_the_answer(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    upstream.push(Scenario(text="word " * 600, pace=SLOW))
    fragment = send(a.test_client(), "Stop me from B")
    message_id = answer_id(fragment)
    while streams(a).live[message_id].published < 20:
        gevent.sleep(0.02)
    pressed = time.monotonic()
    assert b.test_client().post(f"/messages/{message_id}/stop").status_code == 204
    deadline = time.monotonic() + 5
    while message_id in streams(a).live and time.monotonic() < deadline:
        gevent.sleep(0.02)
    message = stored(b, message_id)
    assert message.status == "cancelled" and message.content.startswith("word word")
    assert upstream.disconnects and upstream.disconnects[0] - pressed < 1.0


def test_a_new_exchange_on_one_worker_shows_on_pages_served_by_another(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    upstream.push(Scenario(text="First."), Scenario(text="Second."))
    first = send(a.test_client(), "Two workers, one conversation")
    conversation_id = int(first.select_one("#conversation-id")["value"])

    def listen() -> list[dict[str, str]]:
        response = b.test_client().get(
            f"/conversations/{conversation_id}/events?tab=b", buffered=False
        )
        raw = ""
        with gevent.Timeout(3.0, False):
            for chunk in response.response:
                raw += chunk.decode()
                if "event: exchange" in raw:
                    break
        response.close()
        return parse_events(raw)

    watcher = gevent.spawn(listen)
    gevent.sleep(0.3)
    a.test_client().post(
        "/messages",
        data={"content": "Second question", "conversation_id": conversation_id},
        headers={"HX-Request": "true", "X-Chat-Tab": "a"},
    )
    news = [e for e in watcher.get() if e.get("event") == "exchange"]
    assert len(news) == 1
    roles = [article["data-role"] for article in html(news[0]["data"]).find_all("article")]
    assert roles == ["user", "assistant"]
    assert streams(b).counts()["conversation_subscriptions"] == 0  # released when the page left


def test_listeners_of_an_answer_whose_worker_died_get_its_end(
    workers: tuple[Flask, Flask], upstream: FakeUpstream
) -> None:
    a, b = workers
    upstream.push(Scenario(text="word " * 600, pace=SLOW))
    fragment = send(a.test_client(), "A dies")
    message_id = answer_id(fragment)
    gevent.sleep(0.3)

    def listen() -> list[dict[str, str]]:
        return read_events(b.test_client(), stream_url(fragment))

    listener = gevent.spawn(listen)
    gevent.sleep(0.3)
    # Worker A vanishes without a word (as under kill -9): nothing of it runs any more.
    generation = streams(a).live.pop(message_id)
    generation._finish = lambda *args: None  # type: ignore[method-assign]
    generation._greenlet.kill(block=True)  # type: ignore[union-attr]
    if generation._frame_timer is not None:  # nor its timer for the next frame
        generation._frame_timer.kill(block=True)
    streams(a).flusher.forget(message_id)  # and its last group commit never happens
    with a.app_context():
        from datetime import timedelta

        from sqlalchemy import update

        from chatapp.models import utcnow

        db.session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(content="", updated_at=utcnow() - timedelta(minutes=5))
        )
        db.session.commit()
    assert streams(b).sweeper.sweep() == 1
    events = listener.get(timeout=5)
    final = html(events[-1]["data"]).find("article")
    assert final["data-status"] == "interrupted"
    # Every character a reader saw is kept, though the dead worker never stored the last of it.
    # (Its group commits are undone above, as if none had happened.)
    seen = Screen(message_id).take(events)
    kept = stored(b, message_id).content
    assert kept and seen.offset == len(kept) and seen.html == rendered(kept)
    # Its prompt's tokens were stored with its text; what it wrote is counted.
    assert stored(b, message_id).output_tokens == -(-len(kept) // 4)


def test_sign_in_limits_hold_across_workers(workers: tuple[Flask, Flask]) -> None:
    a, b = workers
    with a.app_context():
        accounts.create("bob", "correct horse battery")
        accounts.create("carol", "correct horse battery")

    def sign_in(app: Flask, name: str, password: str) -> int:
        client = app.test_client(user=None)
        data = {"username": name, "password": password}
        return client.post("/login", data=data).status_code

    # Five wrong guesses, spread over both workers: the sixth try waits, on either of them.
    assert [sign_in(app, "bob", "guess") for app in (a, b, a, b, a)] == [401] * 5
    assert sign_in(b, "bob", "correct horse battery") == 429
    assert sign_in(a, "bob", "correct horse battery") == 429
    assert sign_in(b, "carol", "correct horse battery") == 302  # another account is not held up


def test_a_frame_is_one_append_and_one_publish_and_lost_text_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer's frames cost Redis little: the new text and the publish (the keys' TTL is
    renewed now and then, not every frame); a key that lost its text gets all of it again."""
    from chatapp.streaming import relay as relay_module
    from chatapp.streaming.frames import AnswerView

    prefix = f"chatapp-test-{time.monotonic_ns()}"
    writer = relay_module.Relay(
        REDIS_URL, prefix, 10, on_stop=lambda _id: None, load_state=lambda _id: None
    )
    sent: list[list[str]] = []
    pipeline = writer.redis.pipeline

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def executed():  # type: ignore[no-untyped-def]
            sent.append([str(command[0][0]) for command in pipe.command_stack])
            return execute()

        pipe.execute = executed
        return pipe

    monkeypatch.setattr(writer.redis, "pipeline", counted)
    view = AnswerView(1)
    said = ""

    def frame(text: str) -> None:
        nonlocal said
        said += text
        writer.frame(1, view.add(text), lambda: ("", said))

    try:
        writer.begin(1)
        frame("Hello, ")
        frame("world.")
        assert sent[-2:] == [["APPEND", "PUBLISH"], ["APPEND", "PUBLISH"]]
        text_key = writer._text_key(1)
        assert writer.redis.get(text_key) == b"Hello, world."
        assert 0 < writer.redis.ttl(text_key) <= relay_module.TEXT_TTL

        writer.redis.delete(text_key)  # Redis lost it
        frame(" Again.")
        assert writer.redis.get(text_key) == b"Hello, world. Again."

        monkeypatch.setattr(relay_module, "TTL_RENEWAL", 0.0)  # renewal due at every frame
        writer.begin(2)
        writer.frame(2, AnswerView(2).add("Renewed."), lambda: ("", "Renewed."))
        assert sent[-1] == ["APPEND", "EXPIRE", "APPEND", "EXPIRE", "PUBLISH"]
        assert writer.redis.ttl(writer._text_key(2)) > 0
    finally:
        for answer in (1, 2):
            writer.redis.delete(writer._text_key(answer), writer._thinking_key(answer))
        writer.redis.close()
