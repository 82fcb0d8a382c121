"""The bare gevent relay: the SDK's stream straight out as server-sent events.

The practical limit of this stack, for the benchmark's same-run baseline: gunicorn's gevent
worker, the official `anthropic` SDK over httpx2 with the app's client settings and its raw
stream events (`messages.create(stream=True)`, as the app reads them), and each
text delta written at once as one SSE event. No database, no templates, no coalescing, no
channel; only the escaping that keeps the frame valid HTML. No markdown either: each frame
appends escaped text to the answer's element, where the app's frames are swaps of rendered
markdown. The event ids are the app's (`<answer>:<characters so far>`), and the load generator
reads only those and the swap targets, so it reads both the same way.

    ANTHROPIC_API_KEY=bench ANTHROPIC_BASE_URL=http://127.0.0.1:9100 \
        gunicorn -k gevent --pythonpath bench relay:app

`GET /stream?prompt=...` streams one answer; every event but the last is a `frame`
(`id: <answer>:<characters so far>`), the last is `done`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import anthropic
import httpx2
from markupsafe import escape

from chatapp.config import DEFAULTS as APP  # the app's client settings, to be sized alike

MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 8192

_answer_ids = itertools.count(1)
_client: anthropic.Anthropic | None = None


def client() -> anthropic.Anthropic:
    """One SDK client per worker, made on first use (after the fork), sized like the app's."""
    global _client
    if _client is None:
        timeout = httpx2.Timeout(
            APP["UPSTREAM_IDLE_TIMEOUT"], connect=APP["UPSTREAM_CONNECT_TIMEOUT"]
        )
        limits = httpx2.Limits(
            max_connections=APP["UPSTREAM_MAX_CONNECTIONS"],
            max_keepalive_connections=APP["UPSTREAM_IDLE_CONNECTIONS"],
        )
        http = httpx2.Client(timeout=timeout, limits=limits)
        _client = anthropic.Anthropic(
            api_key=os.environ["ANTHROPIC_API_KEY"],
            base_url=os.environ["ANTHROPIC_BASE_URL"],
            max_retries=APP["UPSTREAM_MAX_RETRIES"],
            timeout=timeout,
            http_client=http,
        )
    return _client


def app(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterator[bytes] | list[bytes]:
    """The WSGI entry: `/stream` relays one answer, anything else is 404."""
    if environ.get("PATH_INFO") != "/stream":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    prompt = query.get("prompt", ["Hello"])[0]
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ],
    )
    return relay(next(_answer_ids), prompt)


def relay(answer_id: int, prompt: str) -> Iterator[bytes]:
    """Yield the answer's SSE bytes as the SDK hands over each text delta."""
    yield b"retry: 1000\n\n"
    offset = 0
    request = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": prompt}],
    }
    # The raw events, as the app reads them: `messages.stream()` would rebuild a snapshot of
    # the message on every delta, work neither of them needs.
    with client().messages.create(stream=True, **request) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text = event.delta.text
                offset += len(text)
                yield frame(answer_id, offset, text)
    yield f"event: done\nid: {answer_id}:{offset}\ndata: done\n\n".encode()


def frame(answer_id: int, offset: int, text: str) -> bytes:
    html = f'<span hx-swap-oob="beforeend:#m-{answer_id}-content">{escape(text)}</span>'
    data = "".join(f"data: {line}\n" for line in html.replace("\r", "&#13;").split("\n"))
    return f"event: frame\nid: {answer_id}:{offset}\n{data}\n".encode()
