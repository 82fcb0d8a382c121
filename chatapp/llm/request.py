"""Build the Messages API request for the next answer of a conversation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import MessageState

# Prompt caching: a breakpoint on the system prompt and one on the newest user turn. The API
# looks for earlier cache entries at the block boundaries before each breakpoint, so every turn
# of a conversation reads what the turn before it wrote. (Prompts shorter than the model's
# minimum are simply not cached.)
CACHE = {"type": "ephemeral"}


def build_request(
    *, model: str, system_prompt: str, history: Iterable[MessageState], max_tokens: int
) -> dict[str, Any]:
    """The keyword arguments for `client.messages.stream` that ask for the next answer.

    `history` is every message before the answer being written. Assistant turns that produced
    no text (failed before the first token) are left out: the API rejects empty turns.
    """
    messages: list[dict[str, Any]] = []
    for message in history:
        if message.role == "assistant" and not message.content.strip():
            continue
        messages.append({"role": message.role, "content": message.content})
    for message in reversed(messages):
        if message["role"] == "user":
            message["content"] = [
                {"type": "text", "text": message["content"], "cache_control": CACHE}
            ]
            break
    request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system_prompt.strip():
        request["system"] = [{"type": "text", "text": system_prompt, "cache_control": CACHE}]
    return request
