"""The FastAPI relay: what the same answer costs in the asyncio stack most new services pick.

FastAPI under uvicorn, the SDK's `AsyncAnthropic` over httpx2's async client with the app's
client settings, its raw stream events (`messages.create(stream=True)`), and each text delta
written at once as one SSE event, framed exactly as the bare gevent relay (bench/relay.py)
frames it. No database, no templates, no coalescing: the other stack's practical limit, for
the benchmark's first-token comparison.

    ANTHROPIC_API_KEY=bench ANTHROPIC_BASE_URL=http://127.0.0.1:9100 \
        uvicorn --app-dir bench fastapi_relay:app --port 8001

`GET /stream?prompt=...` streams one answer, as the bare relay's does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator

import anthropic
import httpx2
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from relay import MAX_TOKENS, MODEL, frame

from chatapp.config import DEFAULTS as APP  # the app's client settings, to be sized alike

app = FastAPI()
_answer_ids = itertools.count(1)
_client: anthropic.AsyncAnthropic | None = None


def client() -> anthropic.AsyncAnthropic:
    """One SDK client per process, made on first use (inside the event loop)."""
    global _client
    if _client is None:
        timeout = httpx2.Timeout(
            APP["UPSTREAM_IDLE_TIMEOUT"], connect=APP["UPSTREAM_CONNECT_TIMEOUT"]
        )
        limits = httpx2.Limits(
            max_connections=APP["UPSTREAM_MAX_CONNECTIONS"],
            max_keepalive_connections=APP["UPSTREAM_IDLE_CONNECTIONS"],
        )
        _client = anthropic.AsyncAnthropic(
            api_key=os.environ["ANTHROPIC_API_KEY"],
            base_url=os.environ["ANTHROPIC_BASE_URL"],
            max_retries=APP["UPSTREAM_MAX_RETRIES"],
            timeout=timeout,
            http_client=httpx2.AsyncClient(timeout=timeout, limits=limits),
        )
    return _client


@app.get("/")
async def index() -> PlainTextResponse:
    """Something to probe that the server is up."""
    return PlainTextResponse("relay\n")


@app.get("/stream")
async def stream(prompt: str = "Hello") -> StreamingResponse:
    """One answer, as server-sent events."""
    return StreamingResponse(
        relay(next(_answer_ids), prompt),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def relay(answer_id: int, prompt: str) -> AsyncIterator[bytes]:
    """Yield the answer's SSE bytes as the SDK hands over each text delta."""
    yield b"retry: 1000\n\n"
    offset = 0
    request = {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": prompt}],
    }
    async with await client().messages.create(stream=True, **request) as events:
        async for event in events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text = event.delta.text
                offset += len(text)
                yield frame(answer_id, offset, text)
    yield f"event: done\nid: {answer_id}:{offset}\ndata: done\n\n".encode()
