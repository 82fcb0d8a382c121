"""The real server: gunicorn with its gevent worker, many answers streaming at once.

Each stream is read as a browser's EventSource would: the page first (session cookie and CSRF
token), the send as HTMX posts it, then the `sse-connect` URL of the answer, whose frames are
applied to a `Screen` as htmx applies them. This checks that every character arrives, in order,
exactly once: the page ends up showing what a reload shows. Speed is the benchmark's business,
not this one's.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gevent
import pytest
from bs4 import BeautifulSoup
from gevent.event import Event

from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.render import anchors

from .conftest import USER_HEADER, asked, parse_events
from .dom import Screen, fragment, rendered
from .server import USER, AppServer, app_server

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

STREAMS = 50
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# About 1-3 s per answer, so that all of them are streaming at the same time.
PACE = Pace(first_token_seconds=(0.3, 0.8), tokens_per_second=(40.0, 80.0), ping_seconds=1.0)
# Every I/O wait of a client; a stream that stalls this long fails the test instead of hanging it.
SOCKET_TIMEOUT = 30.0
# Tags the answers' text holds: they must reach the page as text, never as elements.
MODEL_TAGS = ["b", "script", "tag"]


def answer_text(n: int) -> str:
    """A distinct answer for stream `n`: markup-like text, non-ASCII and line ends included."""
    lines = [
        f"Answer {n:02d}: the quick brown fox jumps over the lazy dog.",
        f"<b>not bold</b> & &amp; \"quoted\" 'single' <script>alert({n})</script>",
        "Unicode: naïve café — 日本語 🌍👍🏽 Ω≈ç√",
        "  indented line, trailing spaces  ",
        "",
        " ".join(f"word{n}-{i}" for i in range(25)),
        f"windows line end\r\nand a lone CR\rin answer {n}.",
        f"The end of answer {n:02d}.",
    ]
    return "\n".join(lines)


class Browser:
    """One visitor: a cookie jar, the CSRF token of its session, and who it is signed in as
    (a trusted proxy's header, sent with every request)."""

    def __init__(self, base_url: str, user: str = USER) -> None:
        self.base_url = base_url
        self.user = user
        self.csrf_token = ""
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.opener.addheaders.append((USER_HEADER, user))

    def open_page(self) -> None:
        with self.opener.open(self.base_url + "/", timeout=SOCKET_TIMEOUT) as response:
            page = BeautifulSoup(response.read(), "html.parser")
        body = page.select_one("body")
        assert body is not None and body.has_attr("hx-headers")
        self.csrf_token = json.loads(str(body["hx-headers"]))["X-CSRFToken"]
        assert self.csrf_token

    def send(self, prompt: str) -> tuple[int, str]:
        """Post a prompt in a new conversation as HTMX does; return (answer id, stream URL)."""
        request = urllib.request.Request(
            self.base_url + "/messages",
            data=urllib.parse.urlencode({"content": prompt, "conversation_id": ""}).encode(),
            headers={"HX-Request": "true", "X-CSRFToken": self.csrf_token},
            method="POST",
        )
        with self.opener.open(request, timeout=SOCKET_TIMEOUT) as response:
            assert response.status == 200
            sent = BeautifulSoup(response.read(), "html.parser")
        assistant = sent.select_one('article[data-role="assistant"]')
        assert assistant is not None and assistant["data-status"] == "streaming"
        answer_id = anchors.message_of(str(assistant["id"]))
        return answer_id, str(assistant["sse-connect"])

    def read_stream(self, url: str) -> str:
        """The whole event stream, read until the server ends it."""
        request = urllib.request.Request(
            urllib.parse.urljoin(self.base_url, url), headers={"Accept": "text/event-stream"}
        )
        with self.opener.open(request, timeout=SOCKET_TIMEOUT) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return response.read().decode("utf-8")


@dataclass
class Outcome:
    prompt: str
    user: str = USER
    answer_id: int = 0
    raw: str = ""
    error: BaseException | None = None


def event_offset(answer_id: int, event_id: str) -> int | None:
    """The character offset an event id gives, if it is an id of this answer."""
    owner, _, offset = event_id.partition(":")
    return int(offset) if owner == str(answer_id) and offset.isdigit() else None


def event_problems(answer_id: int, event: dict[str, str], shown: int) -> list[str]:
    """What is wrong with a `frame` or `done` event for a page that has `shown` characters.

    Its id must say this answer and not go back; its swaps may only touch this answer's
    elements and the announcer (and, at `done`, the conversation's total cost and its context
    meter); the model's text must arrive escaped.
    """
    problems = []
    offset = event_offset(answer_id, event.get("id", ""))
    if offset is None:
        problems.append(f"unexpected event id {event.get('id')!r}")
    elif offset < shown:
        problems.append(f"event id {event['id']} goes back from {shown}")
    swaps = fragment(event.get("data", ""))
    for element in swaps.find_all(recursive=False):
        spec = str(element.get("hx-swap-oob", ""))
        target = str(element.get("id")) if spec == "true" else spec.partition(":#")[2]
        mine = target == anchors.article(answer_id) or target.startswith(
            anchors.article(answer_id) + "-"
        )
        shared = target == "announcer" or (
            event.get("event") == "done" and target in ("conversation-cost", "context-meter")
        )
        if not mine and not shared:
            problems.append(f"{event.get('event')} swaps {spec!r} of #{target}")
    if swaps.find(MODEL_TAGS):
        problems.append(f"model text arrived as markup: {event.get('data')!r}")
    return problems


def screen_after(answer_id: int, events: list[dict[str, str]]) -> Screen:
    """What a fresh page shows after one stream's events, checking each on the way."""
    screen = Screen(answer_id)
    for event in events:
        if event.get("event") in ("frame", "done"):
            problems = event_problems(answer_id, event, screen.offset)
            assert not problems, problems
            screen.take([event])
    return screen


def read_answer(answer_id: int, raw: str) -> tuple[Screen, Screen, list[dict[str, str]]]:
    """Read one whole stream that ends at `done`: the page just before `done`, after, events."""
    events = parse_events(raw)
    done = [event for event in events if event.get("event") == "done"]
    assert len(done) == 1 and events[-1] is done[0], "not one done event, last"
    return screen_after(answer_id, events[:-1]), screen_after(answer_id, events), events


def assert_shown_is_kept(answer_id: int, raw: str, content: str) -> int:
    """Check a stream of an answer that ended early: it ends showing the stored `content`, which
    holds all its reader was shown before. Return how many characters the reader had then.

    For an answer of plain text in one paragraph, whose text on screen only ever grows.
    """
    before, after, events = read_answer(answer_id, raw)
    assert before.offset <= len(content)
    assert after.text.startswith(before.text.rstrip())  # the paragraph's end is trimmed
    assert after.html == rendered(content) and events[-1]["id"] == f"{answer_id}:{len(content)}"
    return before.offset


def stored_messages(server: AppServer) -> dict[int, tuple[str, str, str]]:
    """id -> (role, status, content) of every stored message."""
    rows = server.rows("SELECT id, role, status, content FROM message")
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def message_owners(server: AppServer) -> dict[int, str]:
    """id -> username of the owner of its conversation, for every stored message."""
    rows = server.rows(
        "SELECT message.id, user_account.username FROM message"
        " JOIN conversation ON conversation.id = message.conversation_id"
        " JOIN user_account ON user_account.id = conversation.user_id"
    )
    return {row[0]: row[1] for row in rows}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(PACE, seed=7)
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.parametrize(
    "workers",
    [1, 2],
    ids=["one-worker", "two-workers-redis"],
)
def test_fifty_concurrent_streams_each_deliver_every_character(
    tmp_path: Path, upstream: FakeUpstream, workers: int
) -> None:
    """With two workers, a send and its stream often land on different workers (via Redis).

    Each visitor is signed in as someone else: every answer is its asker's, and no one else's.
    """
    texts = [answer_text(n) for n in range(STREAMS)]
    # The fake hands scenarios out in the order requests reach it, which need not be the order
    # of the sends; `upstream.requests` keeps that order, so each prompt's text is known after.
    upstream.push(*(Scenario(text=text) for text in texts))
    prompts = [f"Prompt number {n:02d}" for n in range(STREAMS)]
    outcomes = [Outcome(prompt, user=f"visitor-{n:02d}") for n, prompt in enumerate(prompts)]
    all_sent = Event()
    sent = 0

    env = {"WEB_CONCURRENCY": str(workers)}
    if workers > 1:
        env.update(REDIS_URL=REDIS_URL, CHATAPP_REDIS_PREFIX=f"chatapp-test-{uuid.uuid4().hex[:8]}")
    with app_server(tmp_path, upstream=upstream, env=env) as server:

        def visit(outcome: Outcome) -> None:
            nonlocal sent
            try:
                browser = Browser(server.url, outcome.user)
                browser.open_page()
                outcome.answer_id, url = browser.send(outcome.prompt)
            except BaseException as exc:  # reported with its prompt below
                outcome.error = exc
                return
            finally:
                sent += 1
                if sent == STREAMS:
                    all_sent.set()
            # Open every stream together, once all the answers have been asked for.
            all_sent.wait()
            try:
                outcome.raw = browser.read_stream(url)
            except BaseException as exc:
                outcome.error = exc

        visitors = [gevent.spawn(visit, outcome) for outcome in outcomes]
        gevent.joinall(visitors, timeout=SOCKET_TIMEOUT * 2)
        unfinished = [v for v in visitors if not v.dead]
        gevent.killall(unfinished)
        assert not unfinished, f"{len(unfinished)} visitors never finished"
        failures = [f"{o.prompt}: {o.error!r}" for o in outcomes if o.error is not None]
        assert not failures, "\n".join(failures)

        # Which scenario each prompt got: the n-th request to reach the fake took texts[n].
        assert len(upstream.requests) == STREAMS
        expected = {}
        for text, request in zip(texts, upstream.requests, strict=True):
            last = request["messages"][-1]
            assert last["role"] == "user"
            expected[asked(request)] = text
        assert sorted(expected) == sorted(prompts)

        for outcome in outcomes:
            text = expected[outcome.prompt]
            _, screen, events = read_answer(outcome.answer_id, outcome.raw)
            assert screen.finished and screen.html == rendered(text), outcome.prompt
            assert events[-1]["id"] == f"{outcome.answer_id}:{len(text)}", outcome.prompt
            final = screen.document.element(anchors.article(outcome.answer_id))
            assert final["data-status"] == "complete", outcome.prompt

        stored = stored_messages(server)
        owners = message_owners(server)
        for outcome in outcomes:
            assert stored[outcome.answer_id] == ("assistant", "complete", expected[outcome.prompt])
            assert owners[outcome.answer_id] == outcome.user, outcome.prompt
        assert sorted(c for role, _, c in stored.values() if role == "user") == sorted(prompts)
        # A prompt and its answer each: nothing anyone asked landed elsewhere.
        assert sorted(owners.values()) == sorted([o.user for o in outcomes] * 2)
        # Another visitor's answer is not there for them.
        stranger = Browser(server.url, outcomes[1].user)
        with pytest.raises(urllib.error.HTTPError) as refused:
            stranger.read_stream(f"/messages/{outcomes[0].answer_id}/stream")
        refused.value.close()
        assert refused.value.code == 404
        assert not upstream.disconnects  # no upstream request was dropped on the way
        assert "Traceback" not in server.output()
