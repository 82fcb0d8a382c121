"""Severed connections: answers survive a flaky network with no gap, no duplicate, no new call.

Real gunicorn (tests/server.py) talks to the fake upstream; every visitor reaches it through a
`FaultProxy` that resets the visitor's stream connection 3-5 times at random moments of the
answer: some cuts at once, some halfway through a piece the server is sending, and one storm
that cuts every open connection together. Each visitor listens as a browser's EventSource
does: it dispatches only complete events, and after a drop it reconnects to the same URL with
`Last-Event-ID` (the browser's own reconnect) or, now and then, opens a new source whose URL
carries `last_event_id` (what htmx-ext-sse does with a closed source, through our app.js).
Each visitor applies the events it gets to one `Screen`, as htmx applies their out-of-band swaps.
Then, for every answer, the visitor must show what a reload shows of the stored text, which
must be the text the upstream sent; every connection that finds the visitor showing text must
begin by resetting it to where the server is, no event id may go back, `done` must arrive once
(at the stored text's length), and Claude must have been asked once per answer. Speed is the
benchmark's business, not this test's.
"""

from __future__ import annotations

import codecs
import http.client
import os
import random
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import pytest
from gevent.event import Event

from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.render import anchors

from .conftest import USER_HEADER, asked
from .dom import Screen, rendered
from .fault_proxy import FaultProxy
from .server import AppServer, app_server
from .test_gunicorn import Browser, event_offset, event_problems, stored_messages

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

ANSWERS = 200
# About 1,000 characters at 240-320 characters a second: each answer streams for 3-5 s.
PACE = Pace(
    first_token_seconds=(0.3, 0.8),
    tokens_per_second=(60.0, 80.0),
    ping_seconds=1.0,
    piece_chars=(12, 28),  # ~12 deltas a second, like the reference load, not ~80
)
ANSWER_CHARS = 1000
START_SPREAD = 1.0  # visitors arrive over this many seconds
SEVERS_PER_ANSWER = (3, 5)
STORM_DELAY = (0.3, 1.5)  # after the last stream opened, every connection is cut at once
SEVER_WINDOW = (0.1, 3.2)  # when, after its stream first opens, an answer's severs are due
RECONNECT_DELAY = (0.01, 0.25)
QUERY_RESUME_SHARE = 0.3  # reconnects that open a new source with `last_event_id` in the URL
ANY_STATE_SHARE = 0.2  # severs that do not wait for the connection to be streaming
MID_WRITE_SHARE = 0.5  # of the others: cut the server's next piece in half, not at once
SOCKET_TIMEOUT = 30.0  # every I/O wait; a stalled stream fails the test instead of hanging it
RUN_TIMEOUT = 150.0


def answer_text(n: int, rng: random.Random) -> str:
    """A distinct answer of about ANSWER_CHARS: markup, entities, non-ASCII and line ends."""
    parts = [
        f"Answer {n:03d} begins.",
        f"<b>not bold</b> & &amp; &#13; \"double\" 'single' <script>alert({n})</script>",
        "Unicode: naïve café — 日本語 🌍👍🏽 Ω≈ç√ \u2028 (a line separator that is not a line end)",
        "windows line end\r\nand a lone CR\rand LF\n",
        "  indented, trailing spaces  \n\n",
        "data: not a field\nid: 0:0\nevent: done\n\n: not a comment",
    ]
    words = ["stream", "frame", "résumé", "offset", "<tag>", "&", "gap", "🙂", "line\n", "x\r\ny"]
    while sum(len(p) + 1 for p in parts) < ANSWER_CHARS - 30:
        parts.insert(rng.randrange(1, len(parts) + 1), " ".join(rng.choices(words, k=12)))
    parts.append(f"The end of answer {n:03d}.")
    return "\n".join(parts)


@dataclass(frozen=True)
class ServerEvent:
    type: str
    data: str
    last_event_id: str


class EventStreamParser:
    """The HTML standard's event-stream interpretation, for one connection of an EventSource.

    Only complete events are dispatched: a connection that drops mid-event loses that event,
    as in a browser. Each connection gets a new parser whose id buffer starts from the source's
    last event id, as in Chromium.
    """

    def __init__(self, last_event_id: str) -> None:
        self.last_event_id = last_event_id  # the source's "last event ID string"
        self.retry_ms: int | None = None
        self._id_buffer = last_event_id
        self._type = ""
        self._data: list[str] = []
        self._partial = ""
        self._skip_lf = False  # the previous chunk ended with CR: a following LF ends nothing

    @property
    def holds_partial_event(self) -> bool:
        return bool(self._partial or self._data or self._type)

    def feed(self, text: str) -> list[ServerEvent]:
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        *lines, self._partial = re.split(r"\r\n|\r|\n", self._partial + text)
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id_buffer = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerEvent | None:
        self.last_event_id = self._id_buffer
        data, kind = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return ServerEvent(kind or "message", "\n".join(data), self.last_event_id)


class StreamRefused(AssertionError):
    """The stream answered with something an EventSource would fail on."""


class Listener:
    """The answer's EventSource, as htmx-ext-sse and our app.js drive it, reconnects included."""

    def __init__(
        self, proxy_url: str, sse_connect: str, answer_id: int, rng: random.Random, user: str
    ) -> None:
        parsed = urllib.parse.urlsplit(proxy_url)
        self.host, self.port = str(parsed.hostname), int(parsed.port or 80)
        self.answer_id = answer_id
        self.user = user  # signed in as the page that asked, like the browser's own requests
        self.rng = rng
        # app.js: createEventSource adds the tab, and the last id once there is one.
        self.connect_url = sse_connect
        self.tab = f"tab-{answer_id}"
        self.url = self._source_url("")
        self.source_last_id = ""  # the current EventSource's last event ID string
        self.last_id = ""  # app.js's lastIds entry: the id of the last frame or done
        self.offset = 0  # characters shown, as the server counts them (by the last id)
        # Every frame and done, in order: what the page applies. Applied after the run (see
        # `page`), so that the hub the fake upstream and the proxy share stays free meanwhile.
        self.taken: list[dict[str, str]] = []
        self.frames = 0
        self.not_reset: list[int] = []  # offsets at which a connection began without a reset
        self.problems: list[str] = []
        self.done: list[ServerEvent] = []
        self.done_offset = -1  # where the listener was when `done` came
        self.after_done: list[str] = []
        self.connections = 0
        self.header_resumes = 0
        self.query_resumes = 0
        self.drops = 0
        self.ends_without_done = 0  # the server ended a stream before `done`
        self.half_events = 0  # drops that left part of an event undispatched
        self.client_port: int | None = None  # local port of the open connection, if any
        self.events_on_connection = 0
        self.opened = Event()
        self.finished = Event()  # `done` arrived

    def _source_url(self, last_id: str) -> str:
        separator = "&" if "?" in self.connect_url else "?"
        url = f"{self.connect_url}{separator}tab={urllib.parse.quote(self.tab)}"
        if last_id:
            url += "&last_event_id=" + urllib.parse.quote(last_id, safe="")
        return url

    def run(self) -> None:
        """Listen until `done`, reconnecting after every drop or end of stream."""
        while True:
            self.connections += 1
            try:
                self._listen()
            except (OSError, http.client.HTTPException):
                self.drops += 1
            else:
                if not self.done:
                    self.ends_without_done += 1
            if self.done:
                return
            gevent.sleep(self.rng.uniform(*RECONNECT_DELAY))
            if self.rng.random() < QUERY_RESUME_SHARE:
                # htmx-ext-sse replaces a CLOSED source; app.js puts the last id in its URL.
                self.url = self._source_url(self.last_id)
                self.source_last_id = ""
                self.query_resumes += 1
            else:
                self.header_resumes += 1  # the same source reconnects, sending Last-Event-ID

    def _listen(self) -> None:
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            USER_HEADER: self.user,
        }
        if self.source_last_id:
            headers["Last-Event-ID"] = self.source_last_id
        connection = http.client.HTTPConnection(self.host, self.port, timeout=SOCKET_TIMEOUT)
        try:
            connection.connect()
            assert connection.sock is not None
            self.client_port = connection.sock.getsockname()[1]
            self.events_on_connection = 0
            self.opened.set()
            connection.request("GET", self.url, headers=headers)
            response = connection.getresponse()
            content_type = response.getheader("Content-Type", "")
            if response.status != 200 or not content_type.startswith("text/event-stream"):
                raise StreamRefused(f"{self.url}: {response.status} {content_type}")
            decoder = codecs.getincrementaldecoder("utf-8")()
            parser = EventStreamParser(self.source_last_id)
            try:
                while True:
                    chunk = response.read1(65536)
                    if not chunk:
                        return  # the server ended the stream
                    for event in parser.feed(decoder.decode(chunk)):
                        self.source_last_id = parser.last_event_id
                        self.events_on_connection += 1
                        self._receive(event)
                    self.source_last_id = parser.last_event_id
            finally:
                if parser.holds_partial_event:
                    self.half_events += 1  # discarded, as a browser does
        finally:
            self.client_port = None
            connection.close()

    def _receive(self, event: ServerEvent) -> None:
        if self.done:
            # The extension closes the source at `done` (sse-close); nothing may follow it.
            self.after_done.append(event.type)
            return
        if event.type not in ("frame", "done"):
            self.problems.append(f"unexpected event {event.type!r}")
            return
        if self.events_on_connection == 1 and self.offset and self.reset not in event.data:
            self.not_reset.append(self.offset)
        self.taken.append({"event": event.type, "id": event.last_event_id, "data": event.data})
        if event.type == "done":
            self.done.append(event)
            self.done_offset = self.offset
            self.finished.set()
        else:
            self.frames += 1
        offset = event_offset(self.answer_id, event.last_event_id)
        if offset is not None:
            self.offset = offset  # a wrong id is one of the page's problems
        if event.last_event_id:
            self.last_id = event.last_event_id

    @property
    def reset(self) -> str:
        """The swap that begins a stream for a page that shows some of the answer."""
        return f'hx-swap-oob="innerHTML:#{anchors.content(self.answer_id)}"'

    def page(self) -> tuple[Screen, list[str]]:
        """What the page shows after every event it took, and what was wrong with them."""
        screen, problems = Screen(self.answer_id), []
        for event in self.taken:
            problems += event_problems(self.answer_id, event, screen.offset)
            screen.take([event])
        return screen, problems


@dataclass
class Outcome:
    n: int
    prompt: str
    answer_id: int = 0
    listener: Listener | None = None
    error: BaseException | None = None
    stages: list[str] = field(default_factory=list)


def sever_at_random(proxy: FaultProxy, listener: Listener, rng: random.Random) -> None:
    """Cut the listener's connection 3-5 times at random moments of its answer.

    Most cuts wait for a connection that is streaming (it has delivered an event); half of
    those are immediate (whatever is in flight is lost), half come partway through the next
    piece the server sends, so the listener is left holding half an event. The rest cut the
    connection in whatever state it is, often before the response has begun. A cut the
    listener already took from the storm counts towards its share.
    """
    if not listener.opened.wait(timeout=SOCKET_TIMEOUT):
        return
    opened = time.monotonic()
    planned = rng.randint(*SEVERS_PER_ANSWER)
    for due in sorted(rng.uniform(*SEVER_WINDOW) for _ in range(planned)):
        if listener.finished.wait(timeout=max(0.0, opened + due - time.monotonic())):
            return  # the answer is complete: nothing left to cut
        if listener.drops >= planned:
            return
        any_state = rng.random() < ANY_STATE_SHARE
        mid_write = rng.random() < MID_WRITE_SHARE
        # Every turn of this loop waits: it shares the hub with the proxy and the listeners.
        while not listener.finished.wait(timeout=0.02):
            port, connection = listener.client_port, listener.connections
            if port is None or not (any_state or listener.events_on_connection):
                continue  # between connections, or not streaming yet
            if any_state or not mid_write:
                if proxy.sever_client(port):
                    break
            elif proxy.sever_mid_write(port, rng):
                # Cut when the server next writes: wait for the listener to notice.
                while listener.client_port == port and listener.connections == connection:
                    if listener.finished.wait(timeout=0.02):
                        return
                break
            # Not relayed to the server yet, or already cut by the storm: look again.


def sever_everything_once(proxy: FaultProxy, all_open: Event, rng: random.Random) -> int:
    """Once every answer is streaming, cut every connection at once (a proxy restart)."""
    all_open.wait(timeout=RUN_TIMEOUT)
    gevent.sleep(rng.uniform(*STORM_DELAY))
    return proxy.sever()


def stored_durations(server: AppServer) -> list[float]:
    """How long each answer took to write, in seconds, sorted."""
    rows = server.rows("SELECT duration_ms FROM message WHERE role = 'assistant'")
    return sorted(row[0] / 1000 for row in rows)


@pytest.fixture
def seed() -> int:
    """Random per run (printed, so a failure can be replayed with RESUME_SEED)."""
    value = int(os.environ.get("RESUME_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"RESUME_SEED={value}")
    return value


@pytest.fixture
def upstream(seed: int) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(PACE, seed=seed)
    fake.start()
    yield fake
    fake.stop()


def test_severed_streams_resume_without_gap_duplicate_or_second_call(
    tmp_path: Path, upstream: FakeUpstream, seed: int
) -> None:
    started = time.monotonic()
    texts = [answer_text(n, random.Random(seed + n)) for n in range(ANSWERS)]
    upstream.push(*(Scenario(text=text) for text in texts))
    outcomes = [Outcome(n, f"Resume prompt {n:03d}") for n in range(ANSWERS)]

    with app_server(tmp_path, upstream=upstream) as server:
        proxy = FaultProxy(server.url)
        proxy_url = proxy.start()
        all_open = Event()
        opened = 0

        def count_open() -> None:
            nonlocal opened
            opened += 1
            if opened == ANSWERS:
                all_open.set()

        def visit(outcome: Outcome) -> None:
            rng = random.Random(seed * 1000 + outcome.n)
            listener = None
            try:
                gevent.sleep(rng.uniform(0.0, START_SPREAD))
                visitor = Browser(proxy_url, f"visitor-{outcome.n:03d}")
                visitor.open_page()
                outcome.stages.append("page")
                outcome.answer_id, sse_connect = visitor.send(outcome.prompt)
                outcome.stages.append("sent")
                listener = outcome.listener = Listener(
                    proxy_url, sse_connect, outcome.answer_id, rng, visitor.user
                )
                severer = gevent.spawn(
                    sever_at_random, proxy, listener, random.Random(rng.random())
                )
                listener.opened.rawlink(lambda _: count_open())
                try:
                    listener.run()
                finally:
                    severer.kill()
                outcome.stages.append("done")
            except Exception as exc:  # reported with its prompt below
                outcome.error = exc
            finally:
                if listener is None or not listener.opened.is_set():
                    count_open()  # the storm need not wait for a visitor that failed

        streaming_started = time.monotonic()
        storm = gevent.spawn(sever_everything_once, proxy, all_open, random.Random(seed))
        try:
            visitors = [gevent.spawn(visit, outcome) for outcome in outcomes]
            gevent.joinall(visitors, timeout=RUN_TIMEOUT)
            streaming_seconds = time.monotonic() - streaming_started
            unfinished = [o for o, v in zip(outcomes, visitors, strict=True) if not v.dead]
            gevent.killall([v for v in visitors if not v.dead])
            assert not unfinished, "visitors never finished:\n" + "\n".join(
                f"{o.prompt} answer {o.answer_id} stages {o.stages} "
                + (
                    f"offset {o.listener.offset} connections {o.listener.connections}"
                    if o.listener
                    else ""
                )
                for o in unfinished
            )
            stormed = storm.get(timeout=SOCKET_TIMEOUT)
            # Every stream ended at `done` and the visitor closed it: nothing is left open.
            deadline = time.monotonic() + SOCKET_TIMEOUT
            while proxy.live and time.monotonic() < deadline:
                gevent.sleep(0.05)
            assert proxy.live == 0, f"{proxy.live} connections still open after every done"
        finally:
            storm.kill()
            proxy.stop()
        failures = [f"{o.prompt}: {o.error!r}" for o in outcomes if o.error is not None]
        assert not failures, "\n".join(failures)
        listeners = [o.listener for o in outcomes if o.listener is not None]
        assert len(listeners) == ANSWERS

        # Claude was asked once per answer: no reconnect started a generation again.
        assert len(upstream.requests) == ANSWERS
        assert not upstream.disconnects
        # The n-th request to reach the fake got texts[n]; its prompt says whose answer it is.
        expected = {}
        for text, request in zip(texts, upstream.requests, strict=True):
            last = request["messages"][-1]
            assert last["role"] == "user"
            expected[asked(request)] = text
        assert sorted(expected) == sorted(o.prompt for o in outcomes)

        stored = stored_messages(server)
        problems = []
        for outcome in outcomes:
            listener = outcome.listener
            assert listener is not None
            want = expected[outcome.prompt]
            label = f"{outcome.prompt} (answer {outcome.answer_id}, seed {seed})"
            if listener.not_reset:
                problems.append(f"{label}: streams resumed without a reset at {listener.not_reset}")
            screen, page_problems = listener.page()
            if listener.problems or page_problems:
                problems.append(f"{label}: {listener.problems + page_problems}")
            if len(listener.done) != 1 or listener.after_done:
                problems.append(f"{label}: {len(listener.done)} done, then {listener.after_done}")
            status = screen.document.element(anchors.article(outcome.answer_id)).get("data-status")
            if status != "complete":
                problems.append(f"{label}: final status {status!r}")
            if screen.offset != len(want):
                problems.append(f"{label}: done at {screen.offset} of {len(want)}")
            if screen.html != rendered(want):
                problems.append(f"{label}: shows {screen.html!r}, a reload {rendered(want)!r}")
            if stored.get(outcome.answer_id) != ("assistant", "complete", want):
                problems.append(f"{label}: stored {stored.get(outcome.answer_id)!r}")
        assert not problems, "\n".join(problems)

        # Severs that really cut a connection: 3-5 per answer on average, the storm included.
        assert proxy.severed >= 3 * ANSWERS, f"only {proxy.severed} severs for {ANSWERS} answers"
        output = server.output()
        assert "Traceback" not in output
        durations = stored_durations(server)

    drops = sorted(listener.drops for listener in listeners)
    filled_by_done = sum(1 for listener in listeners if listener.done_offset < listener.offset)
    print(
        f"answers={ANSWERS} severs={proxy.severed} (mid-write {proxy.severed_mid_write}, "
        f"all at once {stormed}) "
        f"drops per answer {drops[0]}-{drops[-1]} (mean {sum(drops) / len(drops):.1f}) "
        f"reconnects={sum(listener.connections - 1 for listener in listeners)} "
        f"(Last-Event-ID {sum(listener.header_resumes for listener in listeners)}, "
        f"last_event_id {sum(listener.query_resumes for listener in listeners)}) "
        f"half events discarded={sum(listener.half_events for listener in listeners)} "
        f"ended without done={sum(listener.ends_without_done for listener in listeners)} "
        f"frames={sum(listener.frames for listener in listeners)} "
        f"done completed the text={filled_by_done} "
        f"answer durations {durations[0]:.1f}-{durations[-1]:.1f}s "
        f"(median {durations[len(durations) // 2]:.1f}s) "
        f"streaming phase={streaming_seconds:.1f}s runtime={time.monotonic() - started:.1f}s"
    )
