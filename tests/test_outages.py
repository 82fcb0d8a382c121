"""The database or Redis goes away while answers stream: nothing a reader was shown is lost.

Real gunicorn (tests/server.py) reaches PostgreSQL and Redis through a `FaultProxy`, which
cuts them (every connection reset and new ones refused, as a stopped server does), black-holes
them (connections accepted and never answered, as a hung server or a dead link does) or delays
every query, and then brings them back. SQLite gets its file locked by another process, or a
full disk (a small tmpfs, when this machine lets the tests mount one). Each test reads the
answers' streams as a browser's EventSource does, noting when each event arrived, and at the
end compares what the readers were shown with what is stored: the same text, the same status,
nothing twice, and no answer shown `complete` that is not stored so. Speed is the benchmark's
business; the one pace checked here (case 4) is a property of the design: no stream waits on a
query.
"""

from __future__ import annotations

import codecs
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import psycopg
import pytest
from bs4 import BeautifulSoup
from gevent.pool import Pool
from sqlalchemy import create_engine, text

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .conftest import USER_HEADER, asked
from .dom import Screen, rendered
from .fault_proxy import FaultProxyProcess
from .server import AppServer, app_server
from .test_gunicorn import Browser, screen_after
from .test_resume import EventStreamParser

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith("postgresql")
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="PostgreSQL pass only")
sqlite_only = pytest.mark.skipif(ON_POSTGRESQL, reason="SQLite pass only")

# The app's CHATAPP_DATABASE_TIMEOUT here: a black-holed database is given up in 3-6 s.
DATABASE_TIMEOUT = 3
OUTAGE = 10.0  # seconds the database or Redis is away
SOCKET_TIMEOUT = 60.0  # every client wait; a request or stream that hangs fails the test
FIRST_TOKEN = (0.2, 0.5)
CHARS_PER_SECOND = 150.0  # each answer's pace; its length sets how long it streams


# -- answers ---------------------------------------------------------------------------------


def answer_text(n: int, seconds: float) -> str:
    """A distinct answer that takes about `seconds` to stream: one paragraph (so what a reader
    is shown only ever grows), with markup-like text and non-ASCII in it."""
    words = [
        f"answer{n:02d}",
        "<b>not",
        "bold</b>",
        "&amp;",
        "naïve",
        "café",
        "日本語",
        "🌍",
        "<script>x</script>",
        "stream",
        "outage",
    ]
    parts = [f"Answer {n:02d} begins."]
    i = 0
    while sum(len(p) + 1 for p in parts) < seconds * CHARS_PER_SECOND:
        parts.append(words[i % len(words)])
        i += 1
    parts.append(f"The end of answer {n:02d}.")
    return " ".join(parts)


def scenario(text: str) -> Scenario:
    pace = Pace(
        first_token_seconds=FIRST_TOKEN,
        tokens_per_second=(CHARS_PER_SECOND / 4, CHARS_PER_SECOND / 4),
        ping_seconds=1.0,
        piece_chars=(10, 25),
    )
    return Scenario(text=text, pace=pace)


def expected_texts(upstream: FakeUpstream, texts: list[str]) -> dict[str, str]:
    """prompt -> the text its answer got: the n-th request to reach the fake took texts[n]."""
    assert len(upstream.requests) == len(texts), "each answer asked Claude once"
    return {asked(request): t for t, request in zip(texts, upstream.requests, strict=True)}


# -- readers ---------------------------------------------------------------------------------


@dataclass
class Reading:
    """One reader of an answer's stream, as a browser's EventSource reads it (complete events
    only), with the time each event arrived."""

    answer_id: int
    url: str
    events: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def read(self, base_url: str, user: str) -> None:
        """Read the stream until the server ends it; keep any failure for the test to report."""
        parsed = urllib.parse.urlsplit(base_url)
        connection = http.client.HTTPConnection(
            str(parsed.hostname), parsed.port, timeout=SOCKET_TIMEOUT
        )
        try:
            connection.request(
                "GET", self.url, headers={USER_HEADER: user, "Accept": "text/event-stream"}
            )
            response = connection.getresponse()
            if response.status != 200:
                raise AssertionError(f"the stream answered {response.status}")
            decoder = codecs.getincrementaldecoder("utf-8")()
            parser = EventStreamParser("")
            while chunk := response.read1(65536):
                now = time.monotonic()
                for event in parser.feed(decoder.decode(chunk)):
                    self.events.append(
                        {"event": event.type, "id": event.last_event_id, "data": event.data}
                    )
                    self.times.append(now)
        except BaseException as exc:  # reported by the test, with the answer
            self.error = exc
        finally:
            connection.close()

    @property
    def done_at(self) -> float | None:
        found = [t for e, t in zip(self.events, self.times, strict=True) if e["event"] == "done"]
        return found[0] if found else None

    def frame_times(self) -> list[float]:
        return [t for e, t in zip(self.events, self.times, strict=True) if e["event"] == "frame"]

    @property
    def offset(self) -> int:
        """How many characters the reader has been shown, by its last event id."""
        return int(self.events[-1]["id"].rpartition(":")[2]) if self.events else 0

    def screens(self) -> tuple[Screen, Screen]:
        """What the page showed before `done`, and after it (which must be the last event),
        each event checked on the way (ids never go back, no foreign swaps)."""
        assert self.error is None, f"answer {self.answer_id}: {self.error!r}"
        done = [e for e in self.events if e["event"] == "done"]
        assert len(done) == 1 and self.events[-1] is done[0], f"answer {self.answer_id}: no done"
        return (
            screen_after(self.answer_id, self.events[:-1]),
            screen_after(self.answer_id, self.events),
        )

    def status(self) -> str:
        """The status the page shows at the end."""
        return str(self.screens()[1].document.element(f"m-{self.answer_id}")["data-status"])


def start_reading(reading: Reading, base_url: str, user: str) -> gevent.Greenlet:
    return gevent.spawn(reading.read, base_url, user)


def wait_streaming(readings: list[Reading], timeout: float = 20.0) -> None:
    """Until every reader has been shown some text."""
    deadline = time.monotonic() + timeout
    while any(r.offset == 0 and r.error is None for r in readings):
        assert time.monotonic() < deadline, "not every answer began streaming"
        gevent.sleep(0.05)
    assert not [r.error for r in readings if r.error is not None]


def join(greenlets: list[gevent.Greenlet], timeout: float = SOCKET_TIMEOUT) -> None:
    gevent.joinall(greenlets, timeout=timeout)
    unfinished = [g for g in greenlets if not g.dead]
    gevent.killall(unfinished)
    assert not unfinished, f"{len(unfinished)} streams never ended"


def assert_stored_as_shown(reading: Reading, stored: tuple[str, str], text: str) -> str:
    """The reader ends showing exactly the stored answer, with its stored status; the stored
    text is the upstream's (cut short for an answer that did not complete), once. Returns the
    status."""
    status, content = stored
    before, after = reading.screens()
    shown_status = reading.status()
    assert shown_status == status, (
        f"answer {reading.answer_id}: shown {shown_status}, stored {status}"
    )
    if status == "complete":
        assert content == text, f"answer {reading.answer_id}: stored text differs"
    else:
        assert text.startswith(content) and before.offset <= len(content)
    assert after.html == rendered(content), f"answer {reading.answer_id}: shown text differs"
    assert reading.events[-1]["id"] == f"{reading.answer_id}:{len(content)}"
    return status


# -- the server and its database ---------------------------------------------------------------


@contextmanager
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """A database of its own: a new PostgreSQL database on the PostgreSQL pass, else SQLite."""
    if not ON_POSTGRESQL:
        yield f"sqlite:///{tmp_path / 'outage.sqlite'}"
        return
    base = os.environ["DATABASE_URL"]
    name = f"chatapp_outage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def through(proxy: FaultProxyProcess, url: str) -> str:
    """`url` (a database's or Redis's) reached through `proxy`."""
    parts = urllib.parse.urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (credentials + "@" if credentials else "") + f"127.0.0.1:{proxy.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def proxy_to(url: str, default_port: int) -> FaultProxyProcess:
    """A fault proxy (in a process of its own) to the server of `url`."""
    parts = urllib.parse.urlsplit(url)
    target = f"tcp://{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"
    proxy = FaultProxyProcess(target)
    proxy.start()
    return proxy


def query(database_url: str, sql: str, **params: object) -> list[tuple[Any, ...]]:
    """Rows of `sql`, read straight from the database (not through any proxy)."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def stored(database_url: str) -> dict[int, tuple[str, str]]:
    """answer id -> (status, content), for every answer."""
    rows = query(database_url, "SELECT id, status, content FROM message WHERE role = 'assistant'")
    return {row[0]: (row[1], row[2]) for row in rows}


def server_env(**more: str) -> dict[str, str]:
    return {
        "CHATAPP_DATABASE_TIMEOUT": str(DATABASE_TIMEOUT),
        "CHATAPP_HEARTBEAT_SECONDS": "2",
        "CHATAPP_SWEEP_INTERVAL": "1",
        **more,
    }


def redis_env(url: str = REDIS_URL) -> dict[str, str]:
    return {"REDIS_URL": url, "CHATAPP_REDIS_PREFIX": f"chatapp-test-{uuid.uuid4().hex[:8]}"}


@dataclass
class Answer:
    """A page that asked a question, and the reader of its answer's stream."""

    prompt: str
    browser: Browser
    reading: Reading
    reader: gevent.Greenlet | None = None


def ask(server: AppServer, prompts: list[str], user: str = "visitor") -> list[Answer]:
    """Each prompt sent in a new conversation from one page, ten at a time, and the reading of
    each answer begun as soon as it is sent (`Answer.reader`)."""
    browser = Browser(server.url, user)
    browser.open_page()

    def one(prompt: str) -> Answer:
        answer_id, url = browser.send(prompt)
        answer = Answer(prompt, browser, Reading(answer_id, url))
        answer.reader = start_reading(answer.reading, server.url, user)
        return answer

    sends = Pool(10)
    asked_ = [sends.spawn(one, prompt) for prompt in prompts]
    gevent.joinall(asked_, timeout=SOCKET_TIMEOUT, raise_error=True)
    return [send.get() for send in asked_]


# -- requests during an outage -----------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def request(
    opener: urllib.request.OpenerDirector | None,
    url: str,
    *,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; an HTTP error status is an answer too (only a hang or a refusal fails)."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    prepared = urllib.request.Request(url, data=body, headers=headers or {})
    opener = opener or urllib.request.build_opener()
    try:
        with opener.open(prepared, timeout=SOCKET_TIMEOUT) as response:
            return Reply(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, dict(exc.headers), exc.read().decode())


def send_htmx(browser: Browser, prompt: str) -> Reply:
    """Post a prompt in a new conversation as the composer does."""
    return request(
        browser.opener,
        browser.base_url + "/messages",
        data={"content": prompt, "conversation_id": ""},
        headers={"HX-Request": "true", "X-CSRFToken": browser.csrf_token},
    )


def assert_database_notice(reply: Reply, *, htmx: bool) -> None:
    """A 503 that says the database is not reachable, with Retry-After, and no traceback."""
    assert reply.status == 503, reply
    assert int(reply.headers["Retry-After"]) > 0
    page = BeautifulSoup(reply.body, "html.parser")
    assert "The database is not reachable" in page.get_text(), reply.body
    assert "Traceback" not in reply.body
    if htmx:
        assert reply.headers.get("HX-Retarget") == "#notice"
        notice = page.select_one("#notice")
        assert notice is not None and notice["role"] == "alert"


def metrics(server: AppServer) -> dict[str, float]:
    """The /metrics of whichever worker answers."""
    body = request(None, server.url + "/metrics").body
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def most(server: AppServer, name: str, tries: int) -> float:
    """The largest value of a metric over `tries` scrapes (each may reach another worker)."""
    return max(metrics(server).get(name, 0.0) for _ in range(tries))


def healthy_again(server: AppServer, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = request(None, server.url + "/healthz")
        if reply.status == 200:
            return reply.json()
        assert time.monotonic() < deadline, f"/healthz still says {reply.body}"
        gevent.sleep(0.5)


def log_lines(server: AppServer, pattern: str) -> list[str]:
    return [line for line in server.output().splitlines() if re.search(pattern, line)]


def assert_quiet_log(server: AppServer, what: str, workers: int) -> None:
    """The log says that `what` went away and came back, a few times at most per worker (not
    once per tick), and holds no traceback."""
    away = log_lines(server, rf"{what} is not reachable")
    back = log_lines(server, rf"{what} answers again")
    assert away and back, server.output()[-3000:]
    assert len(away) <= 3 * workers, away
    assert "Traceback" not in server.output()


def assert_no_leaked_connections(server: AppServer, database_url: str, workers: int) -> None:
    """Idle again: no pooled connection is checked out in any worker, and the database holds
    no more of the app's sessions than its pools may (none of them in a transaction)."""
    deadline = time.monotonic() + 15
    while most(server, "chatapp_db_connections_in_use", 3 * workers) > 0:
        assert time.monotonic() < deadline, "a database connection stayed checked out"
        gevent.sleep(0.5)
    name = database_url.rsplit("/", 1)[1]
    sessions = query(
        database_url,
        "SELECT state FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()",
        name=name,
    )
    assert len(sessions) <= 15 * workers, sessions  # SQLAlchemy's pool: 5, and 10 more at most
    assert not [s for s in sessions if s[0] and s[0].startswith("idle in transaction")], sessions


# -- 1. the database gone for 10 s while fifty answers stream (PostgreSQL) --------------------

ANSWERS = 50


@pytest.mark.slow
@postgresql_only
@pytest.mark.parametrize(
    ("workers", "fault"),
    [(1, "black_hole"), (2, "cut")],
    ids=["one-worker-black-hole", "two-workers-cut"],
)
def test_the_database_gone_for_ten_seconds_while_fifty_answers_stream(
    tmp_path: Path, workers: int, fault: str
) -> None:
    # Answers of 3 to 22 s: a few end before the outage, many during it, the rest after.
    texts = [answer_text(n, 3 + 19 * n / (ANSWERS - 1)) for n in range(ANSWERS)]
    upstream = FakeUpstream(seed=3)
    upstream.start()
    upstream.push(*(scenario(t) for t in texts))
    prompts = [f"Question {n:02d}" for n in range(ANSWERS)]
    with fresh_database(tmp_path) as direct_url:
        proxy = proxy_to(direct_url, 5432)
        env = server_env(WEB_CONCURRENCY=str(workers))
        if workers > 1:
            env.update(redis_env())
        try:
            with app_server(
                tmp_path, upstream=upstream, database_url=through(proxy, direct_url), env=env
            ) as server:
                answers = ask(server, prompts)
                readers = [a.reader for a in answers if a.reader is not None]
                wait_streaming([a.reading for a in answers])
                probe = Browser(server.url, "prober")
                probe.open_page()

                gevent.sleep(2.0)
                went = time.monotonic()
                getattr(proxy, fault)()
                gevent.sleep(1.5)
                # Pages, sends and the health check while the database is away, all at once.
                page = gevent.spawn(request, probe.opener, server.url + "/")
                sent = gevent.spawn(send_htmx, probe, "Sent while the database is away")
                health = gevent.spawn(request, None, server.url + "/healthz")
                gevent.joinall([page, sent, health], raise_error=True)
                gevent.sleep(max(0.0, went + OUTAGE - time.monotonic()))
                back = time.monotonic()
                proxy.restore()
                join(readers)

                assert_database_notice(page.get(), htmx=False)
                assert_database_notice(sent.get(), htmx=True)
                report = health.get()
                assert report.status == 503 and report.json()["status"] == "unhealthy"
                assert report.json()["database"] != "ok" and report.json()["database_error"]

                expected = expected_texts(upstream, texts)
                rows = stored(direct_url)
                ended_while_away = 0
                for answer in answers:
                    reading = answer.reading
                    text_ = expected[answer.prompt]
                    status = assert_stored_as_shown(reading, rows[reading.answer_id], text_)
                    assert status == "complete", answer.prompt
                    frames, done_at = reading.frame_times(), reading.done_at
                    assert done_at is not None
                    # No end is shown while the database cannot store it.
                    assert not went + 1.0 < done_at < back, answer.prompt
                    if frames and went + 1.0 < frames[-1] < back:
                        ended_while_away += 1  # its end waited for the database
                    if frames and frames[-1] > back:
                        # It streamed on, all through the outage.
                        assert any(went + 1.0 < t < back - 1.0 for t in frames), answer.prompt
                assert ended_while_away >= 5
                assert len(upstream.requests) == ANSWERS  # nothing was asked twice

                assert most(server, "chatapp_db_flush_failures_total", 4 * workers) > 0
                assert healthy_again(server)["database"] == "ok"
                # The pool found its feet by itself: a new answer is stored as streamed.
                upstream.push(scenario("After the outage."))
                answer_id, url = probe.send("And now?")
                after = Reading(answer_id, url)
                after.read(server.url, probe.user)
                assert_stored_as_shown(after, stored(direct_url)[answer_id], "After the outage.")
                assert_no_leaked_connections(server, direct_url, workers)
                assert_quiet_log(server, "the database", workers)
        finally:
            proxy.stop()
            upstream.stop()
