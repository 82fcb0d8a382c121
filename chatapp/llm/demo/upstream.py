"""The demo upstream's server: an emulator of the Messages API on loopback, in the current hub.

`FakeUpstream` answers `POST /v1/messages` the way Anthropic does: a JSON `Message`, or with
`"stream": true` a `text/event-stream` of `message_start`, `ping`, content blocks, text deltas a
few characters long, `message_delta` and `message_stop`, paced like a real model; `POST
/v1/messages/count_tokens` with an estimate (one token per four characters); and `GET
/v1/models` (see `listing`). What it says comes from a test's `Scenario`, else from `replies`.

Everything runs on gevent in the current hub: a paced reply sleeps cooperatively, so hundreds
of streams share one hub. A streaming reply watches its client's socket while it waits, so a
client that closes the stream is noticed at once, even during the first-token wait or a stall.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from . import listing, replies, wire
from .files import FileStore
from .scenario import (
    Block,
    Cited,
    FetchedPage,
    Pace,
    Scenario,
    SearchResults,
    ServerToolUse,
    ToolUse,
)
from .wire import StartResponse

# A paced reply writes at most this often; text pieces due sooner go out together in one write.
_WRITE_TICK = 0.01
# With `unknown_events`, one unknown event after every this many text deltas.
_UNKNOWN_EVERY = 7
_SOCKET_KEY = "chatapp.demo.socket"
# The token counter's answer for a message includes what wraps it, as the API's does.
_COUNTER_WRAPPING = 7


class _ClientGone(Exception):
    """The client closed its connection before the reply finished."""


class FakeUpstream:
    """An Anthropic-compatible Messages endpoint served in the current gevent hub."""

    def __init__(self, pace: Pace | None = None, *, seed: int | None = None) -> None:
        self.pace = pace or Pace()
        self.url = ""
        self.requests: list[dict[str, Any]] = []  # to /v1/messages
        self.counted: list[dict[str, Any]] = []  # to /v1/messages/count_tokens
        self.disconnects: list[float] = []
        self._scenarios: deque[Scenario] = deque()
        self._rng = random.Random(seed)
        self._server: WSGIServer | None = None
        # Prompt caching as the API does it: prefixes written at `cache_control` breakpoints,
        # read back by later requests that start the same way; shorter prompts are not cached.
        self.cache_minimum_tokens = 1024
        self._cache: set[str] = set()
        # What `GET /v1/models` lists (ModelInfo objects as JSON); tests may change it.
        self.models: list[dict[str, Any]] = [dict(info) for info in listing.DEMO_MODELS]
        self.models_status: int | None = None  # answer the Models API with this error status
        self.files = FileStore()  # what was uploaded to `/v1/files`

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving without blocking; return the base URL for the SDK."""
        if self._server is not None:
            raise RuntimeError("FakeUpstream is already started")
        server = WSGIServer(
            (host, port),
            self._wsgi,
            backlog=2048,
            # A pool, unlike the default spawn, lets `stop` end the replies still streaming.
            spawn=Pool(),
            log=None,
            error_log=None,
            handler_class=Handler,
            # SERVER_NAME given, so that starting does not wait on a reverse DNS lookup.
            environ={"SERVER_NAME": host},
        )
        server.start()
        self._server = server
        bound_host = server.server_host or host
        if ":" in bound_host:
            bound_host = f"[{bound_host}]"
        self.url = f"http://{bound_host}:{server.server_port}"
        return self.url

    def stop(self, timeout: float = 0.0) -> None:
        """Stop listening; end open connections (and replies still streaming) after `timeout`."""
        if self._server is not None:
            self._server.stop(timeout=timeout)
            self._server = None

    def push(self, *scenarios: Scenario) -> None:
        """Queue scenarios; each request takes the next one, else the default `Scenario()`."""
        self._scenarios.extend(scenarios)

    def reply_text(self, request_body: dict[str, Any]) -> str:
        """Return the demo reply for a request: the same prompt always gets the same reply."""
        return replies.reply_for(request_body)[0]

    # -- HTTP ---------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/v1/models" or path.startswith("/v1/models/"):
            return self._models(environ, start_response)
        if path == "/v1/files" or path.startswith("/v1/files/"):
            return self._files(environ, start_response)
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return wire.error_response(start_response, 404, "not_found_error", f"Not found: {path}")
        if environ.get("REQUEST_METHOD") != "POST":
            return wire.error_response(
                start_response, 405, "invalid_request_error", "Method not allowed."
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return wire.error_response(
                start_response, 400, "invalid_request_error", "The body must be a JSON object."
            )
        sent = body
        body, missing = self.files.read(sent)  # what its files hold, to count and describe
        if missing is not None:
            message = f"File not found: {missing}"
            return wire.error_response(start_response, 404, "not_found_error", message)
        if path == "/v1/messages/count_tokens":
            self.counted.append(sent)
            tokens = wire.estimate_input_tokens(body) + _COUNTER_WRAPPING
            return wire.json_response(start_response, 200, {"input_tokens": tokens})
        self.requests.append(sent)
        scenario = self._scenarios.popleft() if self._scenarios else Scenario()
        rejected = listing.rejection(self.models, body) or wire.malformed(body)
        if rejected is not None:
            return wire.error_response(start_response, *rejected)

        if scenario.status is not None:
            kind = wire.ERROR_TYPES.get(scenario.status, "api_error")
            extra = []
            if scenario.retry_after is not None:
                extra.append(("retry-after", str(scenario.retry_after)))
            message = scenario.error_message or wire.ERROR_MESSAGES[kind]
            return wire.error_response(start_response, scenario.status, kind, message, extra)

        reply = self._plan(body, scenario)
        if body.get("stream") is True:
            start_response(
                "200 OK",
                [
                    ("content-type", "text/event-stream; charset=utf-8"),
                    ("cache-control", "no-cache"),
                    ("request-id", wire.new_id("req")),
                ],
            )
            return _ReplyStream(self, reply, scenario, environ.get(_SOCKET_KEY)).body()
        return self._whole_message(reply, start_response)

    def _files(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """`POST /v1/files` (an upload), `GET` and `DELETE /v1/files/{id}`."""
        method = environ.get("REQUEST_METHOD")
        file_id = environ.get("PATH_INFO", "").removeprefix("/v1/files").strip("/")
        if not file_id and method == "POST":
            stored = self.files.upload(environ)
            if stored is None:
                message = "file: a file is required"
                return wire.error_response(start_response, 400, "invalid_request_error", message)
            return wire.json_response(start_response, 200, stored.metadata())
        found = self.files.files.get(file_id)
        if found is None:
            message = f"File not found: {file_id}"
            return wire.error_response(start_response, 404, "not_found_error", message)
        if method == "DELETE":
            self.files.delete(file_id)
            return wire.json_response(start_response, 200, {"id": file_id, "type": "file_deleted"})
        if method == "GET":
            return wire.json_response(start_response, 200, found.metadata())
        return wire.error_response(
            start_response, 405, "invalid_request_error", "Method not allowed."
        )

    def _models(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """`GET /v1/models` (a page of the listing, newest first) and `GET /v1/models/{id}`."""
        if environ.get("REQUEST_METHOD") != "GET":
            return wire.error_response(
                start_response, 405, "invalid_request_error", "Method not allowed."
            )
        if self.models_status is not None:
            kind = wire.ERROR_TYPES.get(self.models_status, "api_error")
            message = wire.ERROR_MESSAGES[kind]
            return wire.error_response(start_response, self.models_status, kind, message)
        wanted = environ.get("PATH_INFO", "").removeprefix("/v1/models").strip("/")
        if wanted:
            found = listing.find(self.models, wanted)
            if found is None:
                message = f"model: {wanted}"
                return wire.error_response(start_response, 404, "not_found_error", message)
            return wire.json_response(start_response, 200, found)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        limit = (query.get("limit") or ["20"])[0]
        after = (query.get("after_id") or [None])[0]
        page = listing.page(self.models, int(limit) if limit.isdecimal() else 20, after)
        return wire.json_response(start_response, 200, page)

    def _plan(self, body: dict[str, Any], scenario: Scenario) -> _Reply:
        pace = scenario.pace or self.pace
        if scenario.text is not None or scenario.blocks:
            said = replies.Said(
                scenario.text or "",
                scenario.tool_uses,
                scenario.stop_details,
                blocks=scenario.blocks,
            )
            stop_reason = scenario.stop_reason
        else:
            said = replies.answer(body)
            stop_reason = said.stop_reason or scenario.stop_reason
        text, tool_uses = said.text, said.tool_uses
        if tool_uses:
            stop_reason = "tool_use"
        room = listing.room(self.models, body)
        if room is not None and len(text) > room * wire.CHARS_PER_TOKEN:
            text, stop_reason = text[: room * wire.CHARS_PER_TOKEN], "model_context_window_exceeded"
        thinking = "" if scenario.signature_only else scenario.thinking
        if thinking is None and wire.thinking_requested(body):
            thinking = replies.thinking_for(wire.last_user_text(body))
        input_tokens, cache_read, cache_write = self._use_cache(body)
        return _Reply(
            model=str(body.get("model") or "claude-demo"),
            text=text,
            thinking=thinking,
            tool_uses=tool_uses,
            blocks=said.blocks,
            stop_reason=stop_reason,
            stop_details=said.stop_details if stop_reason == "refusal" else None,
            input_tokens=input_tokens,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_write,
            first_token=self._rng.uniform(*pace.first_token_seconds),
            chars_per_second=self._rng.uniform(*pace.tokens_per_second) * wire.CHARS_PER_TOKEN,
            ping_seconds=pace.ping_seconds,
            piece_chars=pace.piece_chars,
            rng=random.Random(self._rng.random()),
        )

    def _use_cache(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(uncached input, cache read, cache write) tokens of a request's prompt."""
        model = str(body.get("model"))
        prefix, boundaries, breakpoints = [model], [], []
        for block in wire.prompt_blocks(body):
            prefix.append(
                json.dumps(
                    wire.content_text([block], counting=True) if isinstance(block, dict) else block
                )
            )
            key = hashlib.sha256("\x1e".join(prefix).encode()).hexdigest()
            tokens = wire.tokens_of(sum(len(p) for p in prefix[1:]))
            boundaries.append((key, tokens))
            if isinstance(block, dict) and block.get("cache_control"):
                breakpoints.append((key, tokens))
        total = wire.estimate_input_tokens(body)
        if not breakpoints or breakpoints[-1][1] < self.cache_minimum_tokens:
            return total, 0, 0
        last = breakpoints[-1][1]
        read = max((t for k, t in boundaries if t <= last and k in self._cache), default=0)
        for key, tokens in breakpoints:
            if tokens >= self.cache_minimum_tokens:
                self._cache.add(key)
        return max(1, total - last), read, last - read

    def _whole_message(self, reply: _Reply, start_response: StartResponse) -> Iterable[bytes]:
        chars = len(reply.text) + len(reply.thinking or "")
        gevent.sleep(reply.first_token + chars / reply.chars_per_second)
        content: list[dict[str, Any]] = []
        if reply.thinking is not None:
            content.append(
                {"type": "thinking", "thinking": reply.thinking, "signature": wire.signature()}
            )
        if reply.text or not (reply.blocks or reply.tool_uses):
            content.append({"type": "text", "text": reply.text})
        for block in reply.blocks:
            content.append(_whole_block(block))
        for use in reply.tool_uses:
            content.append(
                {
                    "type": "tool_use",
                    "id": wire.new_id("toolu"),
                    "name": use.name,
                    "input": use.input,
                }
            )
        message = reply.message_start()
        message.update(
            content=content,
            stop_reason=reply.stop_reason,
            stop_details=reply.stop_details,
            usage={**message["usage"], **reply.final_usage()},
        )
        return wire.json_response(
            start_response, 200, message, [("request-id", wire.new_id("req"))]
        )


@dataclass
class _Reply:
    """Everything decided about one reply before it is sent."""

    model: str
    text: str
    thinking: str | None
    tool_uses: list[ToolUse]
    blocks: list[Block]
    stop_reason: str
    stop_details: dict[str, Any] | None
    input_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    first_token: float
    chars_per_second: float
    ping_seconds: float
    piece_chars: tuple[int, int]
    rng: random.Random

    def message_start(self) -> dict[str, Any]:
        return {
            "id": wire.new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": self.cache_creation_tokens,
                "cache_read_input_tokens": self.cache_read_tokens,
            },
        }

    def output_tokens(self) -> int:
        chars = len(self.text) + len(self.thinking or "")
        chars += sum(len(use.json()) for use in self.tool_uses)
        for block in self.blocks:
            if isinstance(block, str):
                chars += len(block)
            elif isinstance(block, Cited):
                chars += len(block.text)
            elif isinstance(block, ServerToolUse):
                chars += len(block.json())
        return max(1, round(chars / wire.CHARS_PER_TOKEN))

    def final_usage(self) -> dict[str, Any]:
        """The usage `message_delta` reports: output tokens, and the server tools used."""
        usage: dict[str, Any] = {"output_tokens": self.output_tokens()}
        # A search or fetch is billed when it runs: counted by the results that came back.
        ran = [block for block in self.blocks if isinstance(block, SearchResults | FetchedPage)]
        if any(isinstance(block, ServerToolUse) for block in self.blocks) or ran:
            usage["server_tool_use"] = {
                "web_search_requests": sum(
                    isinstance(b, SearchResults) and b.error is None for b in ran
                ),
                "web_fetch_requests": sum(
                    isinstance(b, FetchedPage) and b.error is None for b in ran
                ),
            }
        return usage

    def pieces(self, text: str, cuts: Iterable[int] = ()) -> list[str]:
        """Split text into deltas of `piece_chars` characters, also split at each cut."""
        low, high = self.piece_chars
        stops = sorted({c for c in cuts if 0 < c < len(text)})
        pieces: list[str] = []
        start = 0
        while start < len(text):
            end = min(start + self.rng.randint(low, high), len(text))
            while stops and stops[0] <= start:
                stops.pop(0)
            if stops and stops[0] < end:
                end = stops[0]
            pieces.append(text[start:end])
            start = end
        return pieces


class _ReplyStream:
    """Write one reply as server-sent events, paced, watching for the client leaving."""

    def __init__(
        self, upstream: FakeUpstream, reply: _Reply, scenario: Scenario, sock: Any
    ) -> None:
        self.upstream = upstream
        self.reply = reply
        self.scenario = scenario
        self.client = _ClientWatch(sock)
        self.last_write = time.monotonic()
        self.finished = False  # the reply ended as planned (completely or by its fault)
        self.deltas = 0

    def body(self) -> Iterator[bytes]:
        """Yield the response body chunk by chunk; pywsgi writes each one at once."""
        try:
            yield from self._events()
        except _ClientGone:
            self.upstream.disconnects.append(time.monotonic())
        except GeneratorExit:
            # pywsgi closes the body when a write fails: the client has gone.
            if not self.finished:
                self.upstream.disconnects.append(time.monotonic())
            raise
        finally:
            self.client.close()

    def _events(self) -> Iterator[bytes]:
        reply = self.reply
        scenario = self.scenario
        unknown = scenario.unknown_events
        start = reply.message_start()
        yield self._write(
            wire.event("message_start", {"type": "message_start", "message": start})
            + (wire.unknown_event("after_message_start") if unknown else b"")
            + wire.event("ping", {"type": "ping"})
        )
        yield from self._pause(reply.first_token)

        index = 0
        if reply.thinking is not None:
            yield from self._thinking_block(index, reply.thinking)
            index += 1

        if reply.text or not (reply.tool_uses or reply.blocks):
            yield self._write(
                wire.event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                + (wire.unknown_event("after_block_start") if unknown else b"")
            )
            outcome = yield from self._text_block(index)
            if outcome != "complete":
                return
            yield self._write(
                wire.event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
            index += 1
        for block in reply.blocks:
            yield from self._content_block(index, block)
            index += 1
        for use in reply.tool_uses:
            yield from self._tool_use_block(index, use)
            index += 1

        self.finished = True
        yield self._write(
            wire.event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": None,
                        "stop_details": reply.stop_details,
                    },
                    "usage": reply.final_usage(),
                },
            )
            + (wire.unknown_event("before_message_stop") if unknown else b"")
            + wire.event("message_stop", {"type": "message_stop"})
        )

    def _thinking_block(self, index: int, thinking: str) -> Iterator[bytes]:
        yield from self._paced_block(
            index,
            {"type": "thinking", "thinking": "", "signature": ""},
            self.reply.pieces(thinking),
            lambda piece: {"type": "thinking_delta", "thinking": piece},
            last={"type": "signature_delta", "signature": wire.signature()},
        )

    def _tool_use_block(self, index: int, use: ToolUse) -> Iterator[bytes]:
        yield from self._paced_block(
            index,
            {"type": "tool_use", "id": wire.new_id("toolu"), "name": use.name, "input": {}},
            ["", *(use.pieces if use.pieces is not None else self.reply.pieces(use.json()))],
            lambda piece: {"type": "input_json_delta", "partial_json": piece},
        )

    def _content_block(self, index: int, block: Block) -> Iterator[bytes]:
        """A scripted content block, as the API streams it: text and cited text (citations
        first) delta by delta, a server tool's call with its input as JSON deltas, and its
        result whole in its start, once the tool has taken its time."""

        def text_delta(piece: str) -> dict[str, Any]:
            return {"type": "text_delta", "text": piece}

        if isinstance(block, str | Cited):
            cited = block.citations if isinstance(block, Cited) else []
            text = block.text if isinstance(block, Cited) else block
            start: dict[str, Any] = {"type": "text", "text": ""}
            if isinstance(block, Cited):
                start["citations"] = []
            first = [{"type": "citations_delta", "citation": citation} for citation in cited]
            yield from self._paced_block(
                index, start, self.reply.pieces(text), text_delta, first=first
            )
        elif isinstance(block, ServerToolUse):
            yield from self._paced_block(
                index,
                {"type": "server_tool_use", "id": block.id, "name": block.name, "input": {}},
                ["", *self.reply.pieces(block.json())],
                lambda piece: {"type": "input_json_delta", "partial_json": piece},
            )
        else:
            yield from self._pause(block.seconds)
            yield from self._paced_block(index, block.block(), [], text_delta)

    def _paced_block(
        self,
        index: int,
        block: dict[str, Any],
        pieces: list[str],
        delta_of: Callable[[str], dict[str, Any]],
        last: dict[str, Any] | None = None,
        first: list[dict[str, Any]] | None = None,
    ) -> Iterator[bytes]:
        """A content block: its start, the deltas `first` (if any), a delta for each piece at
        the reply's pace, then `last` (if any) with its stop."""
        start = {"type": "content_block_start", "index": index, "content_block": block}
        yield self._write(
            wire.event("content_block_start", start)
            + b"".join(wire.delta(index, delta) for delta in first or ())
        )
        due = time.monotonic()
        batch: list[bytes] = []
        for piece in pieces:
            batch.append(wire.delta(index, delta_of(piece)))
            due += len(piece) / self.reply.chars_per_second
            yield from self._flush_until(batch, due)
        if last is not None:
            batch.append(wire.delta(index, last))
        batch.append(
            wire.event("content_block_stop", {"type": "content_block_stop", "index": index})
        )
        yield self._write(b"".join(batch))

    def _text_block(self, index: int) -> Generator[bytes, None, str]:
        """Stream the text deltas and any fault; return "complete" or the fault that ended it."""
        scenario = self.scenario
        text = self.reply.text

        def at(position: int | None) -> int | None:
            return None if position is None else min(max(position, 0), len(text))

        faults = {
            "stall": at(scenario.stall_after),
            "error": at(scenario.error_after),
            "drop": at(scenario.drop_after),
            "cut": at(scenario.cut_after),
        }
        cuts = [p for p in faults.values() if p is not None]
        batch: list[bytes] = []
        due = time.monotonic()
        sent = 0
        for piece in ["", *self.reply.pieces(text, cuts)]:
            if piece:
                batch.append(wire.delta(index, {"type": "text_delta", "text": piece}))
                sent += len(piece)
                self.deltas += 1
                if self.scenario.unknown_events and self.deltas % _UNKNOWN_EVERY == 0:
                    batch.append(wire.unknown_event("between_deltas"))
                due += len(piece) / self.reply.chars_per_second
            if faults["stall"] == sent:
                faults["stall"] = None
                yield self._write(b"".join(batch))
                batch.clear()
                yield from self._pause(scenario.stall_seconds, pings=False)
                due = time.monotonic()
            if faults["error"] == sent:
                self.finished = True
                batch.append(
                    wire.event(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                        },
                    )
                )
                yield self._write(b"".join(batch))
                return "error"
            if faults["drop"] == sent:
                self.finished = True
                yield self._write(b"".join(batch))
                batch.clear()
                self.client.drop()
                return "drop"
            if faults["cut"] == sent:
                self.finished = True
                yield self._write(b"".join(batch))
                return "cut"
            yield from self._flush_until(batch, due)
        if batch:
            yield self._write(b"".join(batch))
        return "complete"

    def _flush_until(self, batch: list[bytes], due: float) -> Iterator[bytes]:
        """Write the batch and wait if the next piece is not due within one write tick."""
        wait = due - time.monotonic()
        if wait > _WRITE_TICK:
            yield self._write(b"".join(batch))
            batch.clear()
            yield from self._pause(wait)

    def _pause(self, seconds: float, *, pings: bool = True) -> Iterator[bytes]:
        """Wait, sending pings if silent for `ping_seconds`; raise `_ClientGone` if it leaves."""
        end = time.monotonic() + seconds
        pings = pings and self.reply.ping_seconds > 0
        while True:
            now = time.monotonic()
            if now >= end:
                return
            until = min(end, self.last_write + self.reply.ping_seconds) if pings else end
            if self.client.wait_gone(until - now):
                raise _ClientGone
            if pings and time.monotonic() - self.last_write >= self.reply.ping_seconds:
                yield self._write(wire.event("ping", {"type": "ping"}))

    def _write(self, data: bytes) -> bytes:
        self.last_write = time.monotonic()
        return data


def _whole_block(block: Block) -> dict[str, Any]:
    """A scripted content block as a non-streaming `Message` holds it."""
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if isinstance(block, Cited):
        return {"type": "text", "text": block.text, "citations": block.citations}
    if isinstance(block, ServerToolUse):
        return {"type": "server_tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, SearchResults | FetchedPage):
        return block.block()
    raise TypeError(f"not a content block: {block!r}")


class _ClientWatch:
    """Notice when the client of a streaming reply closes its connection.

    While a reply streams, a client that speaks HTTP/1.1 without pipelining sends nothing, so
    its socket turns readable only when it is closed (end of file or reset).
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._readable = Event()
        self._watcher: Any = None
        self.gone = False
        if sock is not None:
            self._watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
            self._watcher.start(self._on_readable)

    def _on_readable(self) -> None:
        # Runs in the hub: only note it; the stream's greenlet looks at the socket.
        self._watcher.stop()
        self._readable.set()

    def wait_gone(self, seconds: float) -> bool:
        """Wait up to `seconds`; return True as soon as the client has gone."""
        if self.gone:
            return True
        if not self._readable.wait(max(seconds, 0.0)):
            return False
        self._readable.clear()
        self.gone = self._peek_closed()
        return self.gone

    def _peek_closed(self) -> bool:
        try:
            # Readable means data is there, so this returns at once; the timeout is a backstop.
            data = gevent.with_timeout(
                0.05, self._sock.recv, 1, socket.MSG_PEEK, timeout_value=None
            )
        except OSError:
            return True
        return isinstance(data, bytes) and not data

    def drop(self) -> None:
        """End the connection mid-body: the client sees the body end incomplete."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None


class Handler(WSGIHandler):
    """pywsgi's handler, also handing the client socket to the app for `_ClientWatch`.

    Each event goes out as it is written (TCP_NODELAY), as from the API itself: otherwise,
    on a kept-alive connection, Nagle's algorithm holds the first events back until the
    client's delayed ACK, 40 ms later.
    """

    def __init__(self, sock: socket.socket, address: Any, server: WSGIServer) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, address, server)

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        environ[_SOCKET_KEY] = self.socket
        return environ
