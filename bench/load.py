"""The benchmark's load generator: N conversations at once, read as a browser reads them.

Runs in its own gevent process, beside the server it measures. For `--mode app` each
conversation does what the page does: GET / (session cookie and the CSRF token from
`<body hx-headers=...>`), POST /messages as HTMX posts it, then reads the answer's
`sse-connect` stream until its `done` event; all three on one keep-alive connection, as a
browser would. Every request to the app names `--user` in the trusted proxy's `X-Remote-User`
header, as a signing-in proxy in front of the app would (the runner starts the app trusting
this address). For `--mode relay` it reads `GET /stream` of the bare relay.
Conversations start at `--rate` a second; everything ends by `--deadline`.

Times are taken with `time.monotonic()` when the bytes are read:

- added time to first token = first `frame` event - moment the prompt was sent (just before
  the POST; for the relay, just before its GET) - the upstream's own first-token delay;
- inter-frame gap = time between consecutive `frame` events of one answer;
- answers opened a second = 95% of the conversations ÷ the time from the first one's start
  until 95% had their first frame, less the upstream's first-token delay (at most `--rate`
  when the server keeps up; the slowest 5% left out, so that one straggler does not decide).

What arrived is read from the events' `id: <answer>:<characters>`, not from their HTML (the
app's frames are swaps of rendered markdown, the relay's are escaped text): every frame must
swap into this answer's elements (`#m-<answer>-...`) and its offset never goes back, and the
`done` event's offset must be the length of the text the upstream sent, so every character
was delivered. For the app, `done` must also carry the answer's article, `complete`.

Writes one JSON object (`--out`, or stdout).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import codecs  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote, urlencode, urlsplit  # noqa: E402

import gevent  # noqa: E402
from common import FIRST_TOKEN_SECONDS, USER, USER_HEADER, reply_text, summary  # noqa: E402

SWAP_TARGET = re.compile(r'hx-swap-oob="[\w-]+:#m-(\d+)-')
EVENT_ID = re.compile(r"(\d+):(\d+)")
BODY_HEADERS = re.compile(r"<body[^>]*?hx-headers='([^']*)'")
ARTICLE = re.compile(r"<article\b([^>]*)>")
CONVERSATION_EVENTS = re.compile(r'<div id="conversation-events"[^>]*?sse-connect="([^"]*)"')
ATTRIBUTE = re.compile(r'([\w:-]+)="([^"]*)"')


class Deadline(Exception):
    """The run's time is up; this conversation is cut short."""


class ProtocolError(Exception):
    """The server answered something a browser could not use."""


class Connection:
    """One HTTP/1.1 keep-alive connection, enough of a client for this benchmark.

    `identity` is sent with every request, as a proxy in front of the server adds it.
    """

    def __init__(
        self, host: str, port: int, timeout: float, identity: dict[str, str] | None = None
    ) -> None:
        self.host = f"{host}:{port}"
        self.identity = identity or {}
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def _read_until(self, separator: bytes) -> bytes:
        start = 0
        while True:
            index = self.buffer.find(separator, start)
            if index >= 0:
                out = bytes(self.buffer[:index])
                del self.buffer[: index + len(separator)]
                return out
            start = max(len(self.buffer) - len(separator) + 1, 0)
            self._fill()

    def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def start(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, list[str]]]:
        """Send a request and read the status line and headers."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in (self.identity | headers).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        found: dict[str, list[str]] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            found.setdefault(name.strip().lower(), []).append(value.strip())
        if "close" in ",".join(found.get("connection", [])).lower():
            self.closed = True  # after this response; the caller reconnects
        return status, found

    def chunks(self, headers: dict[str, list[str]]) -> Any:
        """Yield the body's pieces as they arrive (chunked, sized, or up to the close)."""
        if "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    return
                yield self._read_exact(size + 2)[:-2]
        elif "content-length" in headers:
            yield self._read_exact(int(headers["content-length"][0]))
        else:
            self.closed = True
            while True:
                if self.buffer:
                    yield bytes(self.buffer)
                    self.buffer.clear()
                try:
                    self._fill()
                except EOFError:
                    return

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, list[str]], bytes]:
        status, found = self.start(method, path, headers, body)
        return status, found, b"".join(self.chunks(found))


@dataclass
class Conversation:
    """What one conversation saw."""

    index: int
    stage: str = "waiting"
    error: str | None = None
    answer_id: int | None = None
    token: str = ""
    events_path: str | None = None  # the page's conversation events stream
    t_scheduled: float = 0.0
    t_page: float | None = None  # GET / answered
    t_send: float | None = None  # just before the prompt was sent
    t_sent: float | None = None  # POST answered
    t_open: float | None = None  # stream's headers read
    t_first: float | None = None  # first frame read
    t_done: float | None = None  # `done` read
    frames: int = 0
    chars: int = 0  # characters delivered: the offset of the last event's id
    exact: bool = False  # `done` says every character of the upstream's text was delivered
    live: bool = False  # and frames showed it as it came
    id_errors: int = 0
    gaps: list[float] = field(default_factory=list)


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        split = urlsplit(args.url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or 80
        self.expected = reply_text(args.reply_chars)
        self.conversations = [Conversation(i) for i in range(args.n)]
        self.lag: list[float] = []
        # The app lets nobody in unsigned; the bare relay has no accounts.
        self.identity = {USER_HEADER: args.user} if args.mode == "app" else {}

    def connect(self) -> Connection:
        return Connection(self.host, self.port, self.args.io_timeout, self.identity)

    def warm_up(self, count: int) -> str:
        """Start `count` answers and leave after their first frame, so that lazy imports,
        template compilation and the SDK client are ready before the measured run."""
        outcomes = gevent.joinall(
            [gevent.spawn(self._warm_one, k) for k in range(count)], timeout=30
        )
        done = sum(1 for g in outcomes if g.successful() and g.value)
        return f"{done}/{count} warm-up answers reached their first frame"

    def _warm_one(self, k: int) -> bool:
        conv = Conversation(-1 - k)
        connection = self.connect()
        try:
            if self.args.mode == "app":
                connection, path, cookie = self._send_like_htmx(conv, connection)
            else:
                path, cookie = "/stream?prompt=warm-up", ""
            headers = {"Accept": "text/event-stream"}
            if cookie:
                headers["Cookie"] = cookie
            status, found = connection.start("GET", path, headers)
            if status != 200:
                return False
            for chunk in connection.chunks(found):
                if b"event: frame" in chunk:
                    break
            if self.args.mode == "app" and conv.answer_id is not None:
                stopper = self.connect()
                try:
                    stopper.request(
                        "POST",
                        f"/messages/{conv.answer_id}/stop",
                        {"HX-Request": "true", "X-CSRFToken": conv.token, "Cookie": cookie},
                    )
                finally:
                    stopper.close()
            return True
        except (OSError, EOFError, ProtocolError, ValueError, KeyError):
            return False
        finally:
            connection.close()

    def run(self) -> dict[str, Any]:
        args = self.args
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic() + 0.2
        deadline = t0 + args.deadline
        watcher = gevent.spawn(self._watch_own_loop)
        greenlets = [gevent.spawn(self._converse, c, t0) for c in self.conversations]
        gevent.joinall(greenlets, timeout=max(deadline - time.monotonic(), 0))
        for greenlet in greenlets:
            if not greenlet.dead:
                greenlet.kill(Deadline, block=False)
        gevent.joinall(greenlets, timeout=10)
        watcher.kill()
        wall = time.monotonic() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        return self._report(wall, cpu)

    def _watch_own_loop(self) -> None:
        """How late this process's own timers fire: if the client lags, its figures do too."""
        while True:
            start = time.monotonic()
            gevent.sleep(0.01)
            self.lag.append(time.monotonic() - start - 0.01)

    def _converse(self, conv: Conversation, t0: float) -> None:
        conv.t_scheduled = t0 + conv.index / self.args.rate
        gevent.sleep(max(conv.t_scheduled - time.monotonic(), 0))
        connection: Connection | None = None
        page_events: gevent.Greenlet | None = None
        try:
            conv.stage = "connect"
            connection = self.connect()
            if self.args.mode == "app":
                connection, path, cookie = self._send_like_htmx(conv, connection)
            else:
                cookie = ""
                conv.t_send = time.monotonic()
                path = "/stream?prompt=" + quote(f"Benchmark conversation {conv.index}")
            if self.args.page_events and conv.events_path:
                # A browser page also holds its conversation's event stream open.
                page_events = gevent.spawn(self._hold_events, conv.events_path, cookie)
            self._read_stream(conv, connection, path, cookie)
        except Deadline:
            conv.error = f"deadline during {conv.stage}"
        except (OSError, EOFError) as exc:
            conv.error = f"{type(exc).__name__} during {conv.stage}: {exc}"
        except (ProtocolError, ValueError, KeyError) as exc:
            conv.error = f"{type(exc).__name__} during {conv.stage}: {exc}"
        finally:
            if page_events is not None:
                page_events.kill(block=False)
            if connection is not None:
                connection.close()
            if conv.error is None and conv.t_done is None:
                conv.error = f"stream ended without done during {conv.stage}"

    def _hold_events(self, path: str, cookie: str) -> None:
        """Read the page's conversation events until killed (the page is closed)."""
        connection = self.connect()
        try:
            status, found = connection.start(
                "GET", path, {"Accept": "text/event-stream", "Cookie": cookie}
            )
            for _chunk in connection.chunks(found):
                pass
        except (OSError, EOFError, ValueError):
            pass  # not what is measured
        finally:
            connection.close()

    def _send_like_htmx(
        self, conv: Conversation, connection: Connection
    ) -> tuple[Connection, str, str]:
        """GET / and POST /messages; return the connection, the stream's path and the cookie."""
        conv.stage = "page"
        status, headers, body = connection.request("GET", "/", {"Accept": "text/html"})
        if status != 200:
            raise ProtocolError(f"GET / answered {status}")
        conv.t_page = time.monotonic()
        cookie = "; ".join(value.split(";", 1)[0] for value in headers.get("set-cookie", []))
        match = BODY_HEADERS.search(body.decode("utf-8"))
        if not match:
            raise ProtocolError("no hx-headers on <body>")
        token = json.loads(html.unescape(match.group(1)))["X-CSRFToken"]
        conv.token = token
        if connection.closed:
            connection.close()
            connection = self.connect()

        conv.stage = "post"
        form = urlencode({"content": f"Benchmark conversation {conv.index}", "conversation_id": ""})
        conv.t_send = time.monotonic()
        status, headers, body = connection.request(
            "POST",
            "/messages",
            {
                "HX-Request": "true",
                "X-CSRFToken": token,
                "Cookie": cookie,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            form.encode(),
        )
        conv.t_sent = time.monotonic()
        if status != 200:
            raise ProtocolError(f"POST /messages answered {status}")
        text = body.decode("utf-8")
        events = CONVERSATION_EVENTS.search(text)
        conv.events_path = html.unescape(events.group(1)) if events else None
        for tag in ARTICLE.finditer(text):
            attributes = dict(ATTRIBUTE.findall(tag.group(1)))
            if attributes.get("data-role") == "assistant" and "sse-connect" in attributes:
                conv.answer_id = int(attributes["id"].removeprefix("m-"))
                path = html.unescape(attributes["sse-connect"])
                break
        else:
            raise ProtocolError("no streaming assistant article in the POST answer")
        if connection.closed:
            connection.close()
            connection = self.connect()
        return connection, path, cookie

    def _read_stream(
        self, conv: Conversation, connection: Connection, path: str, cookie: str
    ) -> None:
        conv.stage = "open"
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if cookie:  # the browser's EventSource sends the session cookie too
            headers["Cookie"] = cookie
        status, found = connection.start("GET", path, headers)
        conv.t_open = time.monotonic()
        if status != 200:
            raise ProtocolError(f"stream answered {status}")
        conv.stage = "first frame"
        decoder = codecs.getincrementaldecoder("utf-8")()
        pending = ""
        last = 0.0
        for chunk in connection.chunks(found):
            now = time.monotonic()
            pending += decoder.decode(chunk)
            while True:
                end = pending.find("\n\n")
                if end < 0:
                    break
                block, pending = pending[:end], pending[end + 2 :]
                name = event_id = None
                data: list[str] = []
                for line in block.split("\n"):
                    if line.startswith("data: "):
                        data.append(line[6:])
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("id: "):
                        event_id = line[4:]
                if name == "frame":
                    self._check_frame(conv, "\n".join(data), event_id)
                    if conv.t_first is None:
                        conv.t_first = now
                        conv.stage = "stream"
                    else:
                        conv.gaps.append(now - last)
                    last = now
                    conv.frames += 1
                elif name == "done":
                    conv.t_done = now
                    self._check_done(conv, "\n".join(data), event_id)
                    conv.stage = "done"
                    return

    def _offset(self, conv: Conversation, event_id: str | None) -> int:
        """The character offset of an event's `id: <answer>:<offset>`, which must be ours."""
        match = EVENT_ID.fullmatch(event_id or "")
        if match is None:
            raise ProtocolError(f"unexpected event id {event_id!r}")
        if conv.answer_id is None:  # the relay's answers are known by their first event
            conv.answer_id = int(match.group(1))
        elif int(match.group(1)) != conv.answer_id:
            raise ProtocolError(f"an event of another answer: {event_id}")
        return int(match.group(2))

    def _check_frame(self, conv: Conversation, data: str, event_id: str | None) -> None:
        """A frame swaps into this answer only, and its offset moves forward within the text."""
        offset = self._offset(conv, event_id)
        targets = SWAP_TARGET.findall(data)
        if not targets:
            raise ProtocolError(f"a frame with no swap: {data!r:.200}")
        if any(int(target) != conv.answer_id for target in targets):
            raise ProtocolError(f"a frame swaps into another answer: {data!r:.200}")
        if offset < conv.chars or offset > len(self.expected):
            conv.id_errors += 1  # back, or past the end of the text
        conv.chars = max(conv.chars, offset)

    def _check_done(self, conv: Conversation, data: str, event_id: str | None) -> None:
        """Check the answer at its `done` event.

        Its id's offset is the length of the stored answer, which must be all of the upstream's
        text. The app's `done` also carries the answer's article (out of band) with its status.
        An answer that ended before its stream opened (a queued listener) arrives only this way,
        with no frames; it still counts as delivered, and `live_answers` tells how many came
        frame by frame. The relay's `done` has no article.
        """
        offset = self._offset(conv, event_id)
        if offset < conv.chars:
            conv.id_errors += 1
        conv.chars = offset
        conv.exact = offset == len(self.expected)
        conv.live = conv.frames > 0
        if self.args.mode == "app":
            status = None
            for tag in ARTICLE.finditer(data):
                attributes = dict(ATTRIBUTE.findall(tag.group(1)))
                if attributes.get("id") == f"m-{conv.answer_id}":
                    status = attributes.get("data-status")
            if status != "complete":
                conv.error = f"the answer ended {status or 'with no article'}"
                return
        if not conv.exact:
            conv.error = f"done after {offset} characters, expected {len(self.expected)}"
        elif conv.id_errors:
            conv.error = f"{conv.id_errors} event ids went back or past the text"

    def _report(self, wall: float, cpu: float) -> dict[str, Any]:
        args = self.args
        ms = 1000.0
        convs = self.conversations
        first_token = args.first_token
        ttft_added = [
            (c.t_first - c.t_send - first_token) * ms for c in convs if c.t_first and c.t_send
        ]
        ttft_open = [(c.t_first - c.t_open) * ms for c in convs if c.t_first and c.t_open]
        post = [(c.t_sent - c.t_send) * ms for c in convs if c.t_sent and c.t_send]
        page = [(c.t_page - c.t_scheduled) * ms for c in convs if c.t_page]
        start_lag = [
            ((c.t_send or 0) - c.t_scheduled) * ms for c in convs if c.t_send
        ]  # scheduling to send: connect + page
        gaps = [g * ms for c in convs for g in c.gaps]
        durations = [(c.t_done - c.t_first) for c in convs if c.t_done and c.t_first]
        errors: dict[str, int] = {}
        for c in convs:
            if c.error:
                kind = re.sub(r"\d+", "#", c.error.split(":")[0])
                errors[kind] = errors.get(kind, 0) + 1
        examples = [f"#{c.index}: {c.error}" for c in convs if c.error][:5]
        delivered = sum(c.chars for c in convs)
        firsts = sorted(c.t_first for c in convs if c.t_first)
        most = math.ceil(len(convs) * 0.95)
        opening = (
            firsts[most - 1] - first_token - convs[0].t_scheduled if len(firsts) >= most else 0.0
        )
        return {
            "mode": args.mode,
            "n": args.n,
            "rate": args.rate,
            "reply_chars": len(self.expected),
            "wall_seconds": wall,
            "ok": sum(1 for c in convs if c.error is None),
            "errors": sum(1 for c in convs if c.error),
            "error_kinds": errors,
            "error_examples": examples,
            "exact_answers": sum(1 for c in convs if c.exact),
            "live_answers": sum(1 for c in convs if c.exact and c.live),
            "chars_delivered": delivered,
            "chars_expected": len(self.expected) * args.n,
            "frames": sum(c.frames for c in convs),
            "opened_per_second": most / opening if opening > 0 else None,
            "ttft_added_ms": summary(ttft_added),
            "ttft_from_stream_open_ms": summary(ttft_open),
            "post_ms": summary(post),
            "page_ms": summary(page),
            "start_lag_ms": summary(start_lag),
            "gap_ms": summary(gaps),
            "stream_seconds": summary(durations),
            "loader_cpu_seconds": cpu,
            "loader_lag_ms": summary([x * ms for x in self.lag]),
            "timeline": [
                [
                    round(c.t_scheduled - convs[0].t_scheduled, 3),
                    None
                    if not (c.t_first and c.t_send)
                    else round((c.t_first - c.t_send - first_token) * ms, 2),
                    None
                    if not (c.t_done and c.t_scheduled)
                    else round(c.t_done - c.t_scheduled, 2),
                    c.chars,
                    c.error,
                ]
                for c in convs
            ],
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--mode", choices=("app", "relay"), default="app")
    parser.add_argument(
        "--user",
        default=USER,
        help=f"who every conversation is (app mode: sent as {USER_HEADER}; default %(default)s)",
    )
    parser.add_argument("-n", type=int, default=100, help="conversations")
    parser.add_argument("--rate", type=float, default=100.0, help="conversations started a second")
    parser.add_argument("--reply-chars", type=int, default=4000, help="the upstream's reply length")
    parser.add_argument("--first-token", type=float, default=FIRST_TOKEN_SECONDS)
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds until every conversation is cut"
    )
    parser.add_argument(
        "--io-timeout", type=float, default=60.0, help="seconds a single read or write may wait"
    )
    parser.add_argument("--out", help="write the JSON report here instead of stdout")
    parser.add_argument(
        "--page-events",
        action="store_true",
        help="also hold each page's conversation events stream open, as a browser does",
    )
    parser.add_argument(
        "--warm-up", type=int, default=2, help="answers started and left before the run"
    )
    parser.add_argument(
        "--handshake",
        action="store_true",
        help="after the warm-up print 'ready' and wait for a line on stdin before the run",
    )
    args = parser.parse_args(argv)
    load = Load(args)
    note = load.warm_up(args.warm_up) if args.warm_up > 0 else "no warm-up"
    if args.handshake:
        sys.stdout.write(f"ready {note}\n")
        sys.stdout.flush()
        sys.stdin.readline()  # the runner has taken its baseline
    report = load.run()
    report["warm_up"] = note
    text = json.dumps(report)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
