"""A loopback server that speaks the Anthropic Messages API, streaming included.

`FakeUpstream` answers `POST /v1/messages` the way Anthropic does: a JSON `Message`, or with
`"stream": true` a `text/event-stream` of `message_start`, `ping`, content blocks, text deltas a
few characters long, `message_delta` and `message_stop`, paced like a real model; and
`POST /v1/messages/count_tokens` with an estimate (one token per four characters). The official
SDK talks to it through `base_url`, so it serves three purposes:

- demo mode (no API key): each gevent worker starts one in its own hub, and the replies are
  canned markdown that mentions the prompt and says plainly it is not from Claude;
- the test double: `push(Scenario(...))` scripts the next reply, including faults (an HTTP
  error status, an `error` event mid-stream, a dropped connection, a body that ends early, a
  stall), and `requests` / `counted` / `disconnects` record what the client did;
- the paced upstream for benchmarks (`python -m chatapp.llm.demo --port 9100`).

Everything runs on gevent in the current hub: a paced reply sleeps cooperatively, so hundreds
of streams share one hub. A streaming reply watches its client's socket while it waits, so a
client that closes the stream is noticed at once, even during the first-token wait or a stall.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from .catalogue import BUILT_IN, Model, model_info

StartResponse = Callable[..., Any]

# A paced reply writes at most this often; text pieces due sooner go out together in one write.
_WRITE_TICK = 0.01
# With `unknown_events`, one unknown event after every this many text deltas.
_UNKNOWN_EVERY = 7
_SOCKET_KEY = "chatapp.demo.socket"
_CHARS_PER_TOKEN = 4
# The token counter's answer for a message includes what wraps it, as the API's does.
_COUNTER_WRAPPING = 7

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error.",
    "overloaded_error": "Overloaded",
}
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}


# What demo mode's Models API lists: today's models, one of them deprecated, an older one that
# does not think and takes no PDFs, and a retired one (never offered).
DEMO_MODELS: tuple[dict[str, Any], ...] = (
    *(
        {**info, "lifecycle": "deprecated", "deprecated_at": "2026-10-20T00:00:00Z"}
        if info["id"] == "claude-opus-4-6"
        else info
        for info in BUILT_IN
    ),
    model_info(
        "claude-3-haiku-20240307",
        "Claude Haiku 3",
        "2024-03-07T00:00:00Z",
        lifecycle="deprecated",
        line="haiku",
        max_tokens=4096,
        pdfs=False,
        citations=False,
    ),
    model_info(
        "claude-3-7-sonnet-20250219",
        "Claude Sonnet 3.7",
        "2025-02-19T00:00:00Z",
        lifecycle="retired",
        line="sonnet",
        enabled=True,
    ),
)


@dataclass(frozen=True)
class Pace:
    """How fast replies arrive."""

    first_token_seconds: tuple[float, float] = (0.5, 1.5)  # uniform, before the first delta
    tokens_per_second: tuple[float, float] = (50.0, 80.0)  # chosen per reply; ~4 chars a token
    ping_seconds: float = 5.0  # longest silence while waiting (a stall sends nothing at all)
    piece_chars: tuple[int, int] = (1, 6)  # characters in one text delta, uniform


@dataclass
class Scenario:
    """How the next reply behaves. Default: a markdown demo reply at the server's pace.

    Fault positions count characters of reply text (not thinking). A position past the end of
    the text takes effect right after the last character, so a fault scenario always faults.
    Faults apply to streaming requests; a non-streaming request honours only `status`.
    """

    text: str | None = None  # exact reply text; None = the demo reply for the prompt
    thinking: str | None = None  # stream a thinking block before the text
    status: int | None = None  # answer with this HTTP error status and Anthropic's error body
    retry_after: int | None = None  # `retry-after` header sent with `status`
    error_after: int | None = None  # then an `error` event (overloaded_error), body ends
    drop_after: int | None = None  # then the TCP connection is dropped mid-body
    cut_after: int | None = None  # then the body ends cleanly, without message_delta/stop
    stall_after: int | None = None  # then nothing at all (no pings) for stall_seconds
    stall_seconds: float = 0.0
    unknown_events: bool = False  # interleave events of a type the SDK does not know
    pace: Pace | None = None  # overrides the server's pace for this reply
    stop_reason: str = "end_turn"  # "tool_use" when there are tool_uses
    stop_details: dict[str, Any] | None = None  # sent with stop_reason "refusal"
    tool_uses: list[ToolUse] = field(default_factory=list)  # called after the text
    signature_only: bool = False  # the thinking block carries a signature and no text


@dataclass(frozen=True)
class ToolUse:
    """A tool call in a scripted reply. The input streams as `input_json_delta` pieces: an
    empty one first, as the API sends, then `pieces` if given (they need not be valid JSON),
    else the JSON of `input` cut at the server's pace."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    pieces: list[str] | None = None

    def json(self) -> str:
        return "".join(self.pieces) if self.pieces is not None else json.dumps(self.input)


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
        self.models: list[dict[str, Any]] = [dict(info) for info in DEMO_MODELS]
        self.models_status: int | None = None  # answer the Models API with this error status

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
            handler_class=_Handler,
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
        return _demo_reply(request_body)[0]

    # -- HTTP ---------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/v1/models" or path.startswith("/v1/models/"):
            return self._models(environ, start_response)
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return _error_response(start_response, 404, "not_found_error", f"Not found: {path}")
        if environ.get("REQUEST_METHOD") != "POST":
            return _error_response(
                start_response, 405, "invalid_request_error", "Method not allowed."
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error_response(
                start_response, 400, "invalid_request_error", "The body must be a JSON object."
            )
        if path == "/v1/messages/count_tokens":
            self.counted.append(body)
            tokens = _estimate_input_tokens(body) + _COUNTER_WRAPPING
            return _json_response(start_response, 200, {"input_tokens": tokens})
        self.requests.append(body)
        scenario = self._scenarios.popleft() if self._scenarios else Scenario()
        rejected = self._reject(body)
        if rejected is not None:
            return _error_response(start_response, *rejected)

        if scenario.status is not None:
            kind = _ERROR_TYPES.get(scenario.status, "api_error")
            extra = []
            if scenario.retry_after is not None:
                extra.append(("retry-after", str(scenario.retry_after)))
            return _error_response(
                start_response, scenario.status, kind, _ERROR_MESSAGES[kind], extra
            )

        reply = self._plan(body, scenario)
        if body.get("stream") is True:
            start_response(
                "200 OK",
                [
                    ("content-type", "text/event-stream; charset=utf-8"),
                    ("cache-control", "no-cache"),
                    ("request-id", _new_id("req")),
                ],
            )
            return _ReplyStream(self, reply, scenario, environ.get(_SOCKET_KEY)).body()
        return self._whole_message(reply, start_response)

    def _models(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """`GET /v1/models` (a page of the listing, newest first) and `GET /v1/models/{id}`."""
        if environ.get("REQUEST_METHOD") != "GET":
            return _error_response(
                start_response, 405, "invalid_request_error", "Method not allowed."
            )
        if self.models_status is not None:
            kind = _ERROR_TYPES.get(self.models_status, "api_error")
            return _error_response(start_response, self.models_status, kind, _ERROR_MESSAGES[kind])
        listing = sorted(self.models, key=lambda m: m["created_at"], reverse=True)
        wanted = environ.get("PATH_INFO", "").removeprefix("/v1/models").strip("/")
        if wanted:
            found = [m for m in listing if m["id"] == wanted]
            if not found:
                return _error_response(start_response, 404, "not_found_error", f"model: {wanted}")
            return _json_response(start_response, 200, found[0])
        query = parse_qs(environ.get("QUERY_STRING", ""))
        limit = int((query.get("limit") or ["20"])[0] or 20)
        after = (query.get("after_id") or [None])[0]
        if after is not None:
            ids = [m["id"] for m in listing]
            listing = listing[ids.index(after) + 1 :] if after in ids else []
        page = listing[: max(1, min(limit, 1000))]
        return _json_response(
            start_response,
            200,
            {
                "data": page,
                "has_more": len(listing) > len(page),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            },
        )

    def _listed(self, model: Any) -> dict[str, Any] | None:
        return next((m for m in self.models if m["id"] == model), None)

    def _reject(self, body: dict[str, Any]) -> tuple[int, str, str] | None:
        """The API's error for a request the listed model does not take, as (status, type,
        message); None if it takes it. Models the listing does not name are taken as they
        come, as an Anthropic-compatible server would."""
        model = body.get("model")
        info = self._listed(model)
        if info is None:
            return None
        if info.get("lifecycle") == "retired":
            return 404, "not_found_error", f"model: {model}"
        abilities = Model.from_info(info)
        thinking = body.get("thinking")
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        max_tokens = body.get("max_tokens")
        most = abilities.max_tokens
        if most and isinstance(max_tokens, int) and max_tokens > most:
            return (
                400,
                "invalid_request_error",
                f"max_tokens: {max_tokens} > {most}, which is the maximum "
                f"allowed number of output tokens for {model}",
            )
        if kind == "enabled" and not abilities.budget_thinking:
            return (
                400,
                "invalid_request_error",
                '"thinking.type.enabled" is not supported for this model. Use '
                '"thinking.type.adaptive" and "output_config.effort" to control thinking '
                "behavior.",
            )
        if kind == "adaptive" and not abilities.adaptive_thinking:
            return (
                400,
                "invalid_request_error",
                '"thinking.type.adaptive" is not supported for this model.',
            )
        if kind == "enabled" and isinstance(thinking, dict):
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024 or budget >= (max_tokens or 0):
                return (
                    400,
                    "invalid_request_error",
                    "thinking.budget_tokens: must be at least 1024 and less than max_tokens",
                )
        output = body.get("output_config")
        effort = output.get("effort") if isinstance(output, dict) else None
        if effort is not None and effort not in abilities.efforts:
            return (
                400,
                "invalid_request_error",
                f"output_config.effort: {effort!r} is not supported for this model",
            )
        window = abilities.max_input_tokens
        if window and _estimate_input_tokens(body) > window:
            return (
                400,
                "invalid_request_error",
                f"prompt is too long: {_estimate_input_tokens(body)} tokens > {window} maximum",
            )
        return None

    def _room(self, body: dict[str, Any]) -> int | None:
        """Tokens left in the listed model's context window after the prompt, if it has one."""
        info = self._listed(body.get("model"))
        window = info.get("max_input_tokens") if info else None
        if not isinstance(window, int):
            return None
        return max(window - _estimate_input_tokens(body), 0)

    def _plan(self, body: dict[str, Any], scenario: Scenario) -> _Reply:
        pace = scenario.pace or self.pace
        tool_uses = scenario.tool_uses
        if scenario.text is not None:
            text, stop_reason = scenario.text, scenario.stop_reason
        elif not body.get("stream") and int(body.get("max_tokens") or 0) <= 32:
            # A title request (see chatapp/llm/titles.py): the question's first words.
            question = _last_user_text(body).removeprefix("Question:\n").split("\n\n")[0]
            text, stop_reason = _topic(question).rstrip("…"), scenario.stop_reason
        elif _tool_results(body):
            text, stop_reason = _demo_after_tools(body), scenario.stop_reason
        elif demo_call := _demo_tool_use(body):
            text, tool_uses = demo_call
            stop_reason = scenario.stop_reason
        elif _asks_for_refusal(body):
            text, stop_reason = _DEMO_REFUSAL_START, "refusal"
            scenario = Scenario(stop_details=_DEMO_REFUSAL)
        else:
            text, truncated = _demo_reply(body)
            stop_reason = "max_tokens" if truncated else scenario.stop_reason
        if tool_uses:
            stop_reason = "tool_use"
        room = self._room(body)
        if room is not None and len(text) > room * _CHARS_PER_TOKEN:
            text, stop_reason = text[: room * _CHARS_PER_TOKEN], "model_context_window_exceeded"
        thinking = "" if scenario.signature_only else scenario.thinking
        if thinking is None and _thinking_requested(body):
            thinking = _demo_thinking(_last_user_text(body))
        input_tokens, cache_read, cache_write = self._use_cache(body)
        return _Reply(
            model=str(body.get("model") or "claude-demo"),
            text=text,
            thinking=thinking,
            tool_uses=tool_uses,
            stop_reason=stop_reason,
            stop_details=scenario.stop_details if stop_reason == "refusal" else None,
            input_tokens=input_tokens,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_write,
            first_token=self._rng.uniform(*pace.first_token_seconds),
            chars_per_second=self._rng.uniform(*pace.tokens_per_second) * _CHARS_PER_TOKEN,
            ping_seconds=pace.ping_seconds,
            piece_chars=pace.piece_chars,
            rng=random.Random(self._rng.random()),
        )

    def _use_cache(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(uncached input, cache read, cache write) tokens of a request's prompt."""
        model = str(body.get("model"))
        prefix, boundaries, breakpoints = [model], [], []
        for block in _prompt_blocks(body):
            prefix.append(json.dumps(_content_text([block]) if isinstance(block, dict) else block))
            key = hashlib.sha256("\x1e".join(prefix).encode()).hexdigest()
            tokens = _tokens(sum(len(p) for p in prefix[1:]))
            boundaries.append((key, tokens))
            if isinstance(block, dict) and block.get("cache_control"):
                breakpoints.append((key, tokens))
        total = _estimate_input_tokens(body)
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
                {"type": "thinking", "thinking": reply.thinking, "signature": _signature()}
            )
        content.append({"type": "text", "text": reply.text})
        for use in reply.tool_uses:
            content.append(
                {"type": "tool_use", "id": _new_id("toolu"), "name": use.name, "input": use.input}
            )
        message = reply.message_start()
        message.update(
            content=content,
            stop_reason=reply.stop_reason,
            stop_details=reply.stop_details,
            usage={**message["usage"], "output_tokens": reply.output_tokens()},
        )
        return _json_response(start_response, 200, message, [("request-id", _new_id("req"))])


@dataclass
class _Reply:
    """Everything decided about one reply before it is sent."""

    model: str
    text: str
    thinking: str | None
    tool_uses: list[ToolUse]
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
            "id": _new_id("msg"),
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
        return max(1, round(chars / _CHARS_PER_TOKEN))

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
            _event("message_start", {"type": "message_start", "message": start})
            + (_unknown_event("after_message_start") if unknown else b"")
            + _event("ping", {"type": "ping"})
        )
        yield from self._pause(reply.first_token)

        index = 0
        if reply.thinking is not None:
            yield from self._thinking_block(index, reply.thinking)
            index += 1

        if reply.text or not reply.tool_uses:
            yield self._write(
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                + (_unknown_event("after_block_start") if unknown else b"")
            )
            outcome = yield from self._text_block(index)
            if outcome != "complete":
                return
            yield self._write(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
            index += 1
        for use in reply.tool_uses:
            yield from self._tool_use_block(index, use)
            index += 1

        self.finished = True
        yield self._write(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": None,
                        "stop_details": reply.stop_details,
                    },
                    "usage": {"output_tokens": reply.output_tokens()},
                },
            )
            + (_unknown_event("before_message_stop") if unknown else b"")
            + _event("message_stop", {"type": "message_stop"})
        )

    def _thinking_block(self, index: int, thinking: str) -> Iterator[bytes]:
        yield from self._paced_block(
            index,
            {"type": "thinking", "thinking": "", "signature": ""},
            self.reply.pieces(thinking),
            lambda piece: {"type": "thinking_delta", "thinking": piece},
            last={"type": "signature_delta", "signature": _signature()},
        )

    def _tool_use_block(self, index: int, use: ToolUse) -> Iterator[bytes]:
        yield from self._paced_block(
            index,
            {"type": "tool_use", "id": _new_id("toolu"), "name": use.name, "input": {}},
            ["", *(use.pieces if use.pieces is not None else self.reply.pieces(use.json()))],
            lambda piece: {"type": "input_json_delta", "partial_json": piece},
        )

    def _paced_block(
        self,
        index: int,
        block: dict[str, Any],
        pieces: list[str],
        delta_of: Callable[[str], dict[str, Any]],
        last: dict[str, Any] | None = None,
    ) -> Iterator[bytes]:
        """A content block: its start, a delta for each piece at the reply's pace, then `last`
        (if any) with its stop."""
        start = {"type": "content_block_start", "index": index, "content_block": block}
        yield self._write(_event("content_block_start", start))
        due = time.monotonic()
        batch: list[bytes] = []
        for piece in pieces:
            batch.append(_delta(index, delta_of(piece)))
            due += len(piece) / self.reply.chars_per_second
            yield from self._flush_until(batch, due)
        if last is not None:
            batch.append(_delta(index, last))
        batch.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
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
                batch.append(_delta(index, {"type": "text_delta", "text": piece}))
                sent += len(piece)
                self.deltas += 1
                if self.scenario.unknown_events and self.deltas % _UNKNOWN_EVERY == 0:
                    batch.append(_unknown_event("between_deltas"))
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
                    _event(
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
                yield self._write(_event("ping", {"type": "ping"}))

    def _write(self, data: bytes) -> bytes:
        self.last_write = time.monotonic()
        return data


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


class _Handler(WSGIHandler):
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


# -- wire helpers -----------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; the SDK skips events without an `event:` line."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _unknown_event(where: str) -> bytes:
    return _event("future_thing", {"type": "future_thing", "where": where})


def _json_response(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [("content-type", "application/json"), ("content-length", str(len(data)))]
        + (headers or []),
    )
    return [data]


def _error_response(
    start_response: StartResponse,
    status: int,
    kind: str,
    message: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return _json_response(
        start_response, status, body, [("request-id", _new_id("req"))] + (headers or [])
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}_demo{uuid.uuid4().hex[:20]}"


def _signature() -> str:
    return "demo-signature-" + uuid.uuid4().hex


# -- requests ---------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """The plain text in a message's or system prompt's content (a string or blocks)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                for key in ("text", "thinking"):
                    if isinstance(block.get(key), str):
                        parts.append(block[key])
                if "content" in block:
                    parts.append(_content_text(block["content"]))
                if "input" in block:
                    parts.append(json.dumps(block["input"]))
    return "\n".join(parts)


def _estimate_input_tokens(body: dict[str, Any]) -> int:
    chars = len(_content_text(body.get("system")))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            chars += len(_content_text(message.get("content")))
    return max(1, _tokens(chars))


def _tokens(chars: int) -> int:
    return -(-chars // _CHARS_PER_TOKEN)


def _prompt_blocks(body: dict[str, Any]) -> list[Any]:
    """The prompt's blocks in order (the system prompt's, then each message's); a string
    content counts as one block."""
    blocks: list[Any] = []
    for content in [body.get("system")] + [
        m.get("content") for m in body.get("messages") or [] if isinstance(m, dict)
    ]:
        if isinstance(content, list):
            blocks.extend(content)
        elif content:
            blocks.append(content)
    return blocks


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results the request ends with (its last turn answers tool calls)."""
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def _offered_tools(body: dict[str, Any]) -> set[str]:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return set()
    return {str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)}


_ARITHMETIC = re.compile(r"[-+(]*\d[\d.\s]*(?:[-+*/^%]+[\s(]*\d[\d.\s)]*)+")
_ZONE = re.compile(r"\b[A-Z][a-z]+/[A-Z][A-Za-z_]+\b")


def _demo_tool_use(body: dict[str, Any]) -> tuple[str, list[ToolUse]] | None:
    """In demo mode, calls of the switched-on tools that can answer the question, or None."""
    offered = _offered_tools(body)
    prompt = _last_user_text(body)
    words = prompt.lower()
    uses = []
    if "calculator" in offered and (found := _ARITHMETIC.search(prompt)):
        expression = found.group().strip().replace("^", "**")
        uses.append(ToolUse("calculator", {"expression": expression}))
    if "current_time" in offered and any(w in words for w in ("time", "date", "today")):
        zone = _ZONE.search(prompt)
        uses.append(ToolUse("current_time", {"timezone": zone.group() if zone else "UTC"}))
    if "search_conversations" in offered and any(w in words for w in ("search", "earlier")):
        query = re.split(r"\b(?:for|about)\b", prompt, maxsplit=1)[-1].strip(" ?.!\"'")
        uses.append(ToolUse("search_conversations", {"query": query or prompt}))
    if not uses:
        return None
    names = " and ".join(use.name.replace("_", " ") for use in uses)
    return f"Let me ask the {names} tool{'s' if len(uses) > 1 else ''}.", uses


def _demo_after_tools(body: dict[str, Any]) -> str:
    """In demo mode, the reply once the tools have answered: what they said."""
    lines = ["Here is what the tools said:", ""]
    for result in _tool_results(body):
        said = _content_text(result.get("content")).strip() or "(nothing)"
        failed = " (it failed)" if result.get("is_error") else ""
        lines.append(f"- {said}{failed}")
    return "\n".join(lines) + _DEMO_FOOTER


def _thinking_requested(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _asks_for_refusal(body: dict[str, Any]) -> bool:
    """Demo mode refuses a question that asks it to, so a newcomer can see a refusal."""
    return re.search(r"\brefuse\b", _last_user_text(body), re.IGNORECASE) is not None


_DEMO_REFUSAL_START = "I can start on that, but "
_DEMO_REFUSAL = {
    "type": "refusal",
    "category": None,
    "explanation": "The demo server refuses any question with the word “refuse” in it.",
}


def _topic(prompt: str, words: int = 6, limit: int = 60) -> str:
    """The first few words of the prompt, to quote in the reply."""
    full = " ".join(prompt.split())
    topic = " ".join(full.split(" ")[:words])[:limit].rstrip()
    if not topic:
        return "your question"
    return topic if topic == full else topic + "…"


# -- demo replies -----------------------------------------------------------------------------


def _demo_reply(body: dict[str, Any]) -> tuple[str, bool]:
    """The demo reply for a request, cut to `max_tokens`; and whether it was cut."""
    prompt = _last_user_text(body)
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    template = _DEMO_REPLIES[digest[0] % len(_DEMO_REPLIES)]
    text = template.replace("{topic}", _topic(prompt))
    limit = body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit * _CHARS_PER_TOKEN < len(text):
        return text[: limit * _CHARS_PER_TOKEN], True
    return text, False


def _demo_thinking(prompt: str) -> str:
    return (
        f"The user asks about “{_topic(prompt)}”. This is the demo server, so I will give a "
        "structured overview: a short answer first, then steps, a small example and a caveat."
    )


_DEMO_FOOTER = "\n\n_This is a demo reply from the built-in demo server, not from Claude._"

_DEMO_REPLIES: tuple[str, ...] = (
    """## A quick overview

You asked about “{topic}”. Here is how I would approach it, in three steps:

1. **Pin down the goal.** Write one sentence that says what “done” looks like.
2. **Start small.** Get the simplest version working end to end before polishing anything.
3. **Measure, then improve.** Change one thing at a time and keep notes.

### A small example

```python
def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("no values")
    return sum(values) / len(values)
```

The guard clause matters: an empty list would otherwise raise `ZeroDivisionError`, which says \
little about the real problem.

**In short:** clarify, build the smallest thing that works, then iterate."""
    + _DEMO_FOOTER,
    """# Short answer: it depends — but usually yes

On “{topic}”, the honest answer is that the trade-offs decide. Things to weigh:

- **Simplicity** → fewer moving parts, fewer surprises at 3 a.m.
- **Performance** → matters only once you have measured a bottleneck.
- **Team familiarity** → the naïve solution your team understands beats the clever one nobody \
can maintain.

## How to check

Run this and compare the numbers before and after your change:

```bash
time ./run-benchmark --iterations 1000
```

> Premature optimisation is the root of much wasted effort.

If the difference is under ~5 %, keep the simpler version. 🙂"""
    + _DEMO_FOOTER,
    """## Step by step

Let's work through “{topic}” together.

### 1. Set up

Create a fresh environment so nothing leaks in from other projects:

```bash
python -m venv .venv && . .venv/bin/activate
```

### 2. Try the core idea

- Keep the first version under **50 lines**.
- Print intermediate values; don't guess.
- Write down every assumption you make.

### 3. Check the edge cases

Empty input, very large input, and input with unicode such as “café”, “Ünïcødé” or “東京”.

**Tip:** when something fails, reduce it to the smallest input that still fails — that input is \
usually the whole explanation."""
    + _DEMO_FOOTER,
    """# Checklist

Before you go further with “{topic}”, walk through this list:

- [ ] **Inputs** are validated at the edge, not deep inside.
- [ ] **Errors** say what happened *and* what to do next.
- [ ] **Logs** carry enough context to debug without a debugger.
- [ ] **Tests** cover the unhappy paths too.

## Example: a clear error

```javascript
if (!response.ok) {
  throw new Error(`Upload failed (${response.status}): try a smaller file`);
}
```

Compare that with a bare `throw new Error("failed")`: the first tells the reader what to do, \
the second tells them nothing.

**Rule of thumb:** if you would have to open the source to understand an error, rewrite the \
message."""
    + _DEMO_FOOTER,
    """## Thinking it through

“{topic}” is a good question, and a common one. A few points:

1. **Start from the data.** What do you actually have, and in what shape?
2. **Name things well.** `user_count` says more than `n`; `is_active` more than `flag`.
3. **Prefer boring tools.** A plain SQL query often beats a clever cache.

### For example

```sql
SELECT country, COUNT(*) AS users
FROM accounts
WHERE created_at >= DATE '2024-01-01'
GROUP BY country
ORDER BY users DESC
LIMIT 5;
```

This answers “where do new users come from?” in one readable statement — no ORM gymnastics \
needed. Mind the details: `COUNT(*)` counts rows, `COUNT(column)` skips `NULL`s."""
    + _DEMO_FOOTER,
    """# Pros and cons

Here is a balanced look at “{topic}”.

## Pros ✅

- **Fast to start** — you can have something running in minutes.
- **Easy to explain** to newcomers.
- Works well up to a few thousand users → which is most projects.

## Cons ⚠️

- Harder to change once other systems depend on it.
- The “obvious” default settings are rarely the right ones in production.

## A minimal config

```toml
[server]
workers = 2
timeout_seconds = 30
```

**My suggestion:** try it on a small, real task first; keep what works and drop the rest. \
Good luck! 🚀"""
    + _DEMO_FOOTER,
)


# -- standalone -------------------------------------------------------------------------------


def _range(values: list[float]) -> tuple[float, float]:
    return (values[0], values[-1])


def main(argv: list[str] | None = None) -> None:
    """Serve the demo upstream until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m chatapp.llm.demo",
        description="Serve an Anthropic-compatible demo Messages API with paced streaming.",
    )
    default = Pace()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--first-token",
        type=float,
        nargs="+",
        metavar="SECONDS",
        default=list(default.first_token_seconds),
        help="seconds before the first token: one value, or a range LOW HIGH",
    )
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        nargs="+",
        metavar="RATE",
        default=list(default.tokens_per_second),
        help="tokens per second (about 4 characters each): one value, or a range LOW HIGH",
    )
    parser.add_argument(
        "--piece-chars",
        type=int,
        nargs="+",
        metavar="CHARS",
        default=list(default.piece_chars),
        help="characters per text delta: one value, or a range LOW HIGH",
    )
    parser.add_argument("--ping-seconds", type=float, default=default.ping_seconds)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    pace = Pace(
        first_token_seconds=_range(args.first_token),
        tokens_per_second=_range(args.tokens_per_second),
        ping_seconds=args.ping_seconds,
        piece_chars=(int(args.piece_chars[0]), int(args.piece_chars[-1])),
    )
    upstream = FakeUpstream(pace, seed=args.seed)
    url = upstream.start(args.host, args.port)
    print(f"Demo Anthropic upstream on {url} (not Claude); Ctrl+C stops it.", file=sys.stderr)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    main()
