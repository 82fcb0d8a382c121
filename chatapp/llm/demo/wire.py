"""The Messages API's wire format, as the demo upstream speaks it: server-sent events, JSON
bodies, the API's errors; and what it reads of a request (its text, its token estimate)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

StartResponse = Callable[..., Any]

CHARS_PER_TOKEN = 4

ERROR_TYPES = {
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
ERROR_MESSAGES = {
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
REASONS = {
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


# -- wire helpers -----------------------------------------------------------------------------


def event(name: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; the SDK skips events without an `event:` line."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


def delta(index: int, delta: dict[str, Any]) -> bytes:
    return event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def unknown_event(where: str) -> bytes:
    return event("future_thing", {"type": "future_thing", "where": where})


def json_response(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    start_response(
        f"{status} {REASONS.get(status, 'Error')}",
        [("content-type", "application/json"), ("content-length", str(len(data)))]
        + (headers or []),
    )
    return [data]


def error_response(
    start_response: StartResponse,
    status: int,
    kind: str,
    message: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return json_response(
        start_response, status, body, [("request-id", new_id("req"))] + (headers or [])
    )


def new_id(prefix: str) -> str:
    return f"{prefix}_demo{uuid.uuid4().hex[:20]}"


def signature() -> str:
    return "demo-signature-" + uuid.uuid4().hex


# -- requests ---------------------------------------------------------------------------------


def content_text(content: Any, *, counting: bool = False) -> str:
    """The plain text in a message's or system prompt's content (a string or blocks); when
    `counting` tokens, with a stand-in as long as each file the emulator read."""
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
                    parts.append(content_text(block["content"], counting=counting))
                if "input" in block:
                    parts.append(json.dumps(block["input"]))
                if counting and isinstance(block.get("_demo_tokens"), int):
                    # A file the emulator read (see files.py): as long as its tokens are.
                    parts.append("·" * (block["_demo_tokens"] * CHARS_PER_TOKEN))
    return "\n".join(parts)


def estimate_input_tokens(body: dict[str, Any]) -> int:
    chars = len(content_text(body.get("system"), counting=True))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            chars += len(content_text(message.get("content"), counting=True))
    return max(1, tokens_of(chars))


def tokens_of(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def prompt_blocks(body: dict[str, Any]) -> list[Any]:
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


MOST_BREAKPOINTS = 4  # cache_control blocks the API takes in one request


def malformed(body: dict[str, Any]) -> tuple[int, str, str] | None:
    """The API's 400 for a request shaped wrongly where it matters to this app: a system
    prompt of blocks other than text, or more cache breakpoints than the API takes."""
    system = body.get("system")
    if isinstance(system, list):
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                return 400, "invalid_request_error", f"system.{index}: Input should be a text block"
    tools = body.get("tools")
    tools = tools if isinstance(tools, list) else []
    marked = [
        block
        for block in [*prompt_blocks(body), *tools]
        if isinstance(block, dict) and block.get("cache_control")
    ]
    if len(marked) > MOST_BREAKPOINTS:
        return (
            400,
            "invalid_request_error",
            f"A maximum of {MOST_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marked)}.",
        )
    return None


def last_user_files(body: dict[str, Any]) -> list[str]:
    """How the emulator described the files of the newest user turn (see files.py)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            blocks = content if isinstance(content, list) else []
            return [
                str(b["_demo_seen"]) for b in blocks if isinstance(b, dict) and "_demo_seen" in b
            ]
    return []


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results the request ends with (its last turn answers tool calls)."""
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def offered_tools(body: dict[str, Any]) -> set[str]:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return set()
    return {str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)}


def server_tools(body: dict[str, Any]) -> dict[str, str]:
    """The server tools a request offers (web search, web fetch), by name: their versions."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        return {}
    found = {}
    for tool in body.get("tools") or []:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith(("web_search_", "web_fetch_")):
            found[str(tool.get("name"))] = kind
    return found


def thinking_requested(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
