"""Build the Messages API request for the next answer of a conversation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import MessageState


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
    request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system_prompt.strip():
        request["system"] = system_prompt
    return request
