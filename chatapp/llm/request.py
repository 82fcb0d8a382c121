"""Build the Messages API request for the next answer of a conversation."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..models import MessageState, Status
from ..tools.record import plain_text
from .reply import is_server_result
from .server_tools import covered

# Prompt caching: a breakpoint on the system prompt, one after a project's files and one on the
# newest user turn (and, in a tool loop, one on the newest tool results: four, the API's most).
# The API looks for earlier cache entries at the block boundaries before each breakpoint, so
# every turn of a conversation reads what the turn before it wrote, and a project's files are
# read from the cache however long the conversation grows. (Prompts shorter than the model's
# minimum are simply not cached.)
CACHE = {"type": "ephemeral"}

_THINKING = {"thinking", "redacted_thinking"}
_TOOLS = {"tool_use", "tool_result"}


def build_request(
    *,
    model: str,
    system_prompt: str,
    history: Iterable[MessageState],
    options: dict[str, Any],
    tools: list[dict[str, Any]] | None = None,
    files: dict[int, dict[str, Any]] | None = None,
    server_tools: list[dict[str, Any]] | None = None,
    project_instructions: str = "",
    project_files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The keyword arguments for `messages.create(stream=True, ...)` that ask for the next answer.

    `history` is every message before the answer being written. `options` holds `max_tokens`
    and the model's own `thinking` and `output_config` (see `chatapp.llm.thinking.options`).
    An answer is sent as its transcript (thinking with signatures, tool calls and results)
    when it has one, else as its text; answers that produced no text (failed before the first
    token) are left out, since the API rejects empty turns, and so is every refused exchange,
    question and answer, as the API asks. Without thinking or tools in this request, those
    blocks of earlier answers are left out too. `server_tools` are Anthropic's (web search,
    web fetch): an earlier answer's calls of them, with their results (encrypted content
    included) and the citations of its text, go back as they came while this request names
    every server tool that answer used; otherwise they are left out, and its text goes alone.
    A question's files (`files`: the content block of each attachment, see `chatapp.llm.files`)
    come before its text, in the order attached.

    A conversation in a project starts from the project's: its `project_instructions` come
    first in the system prompt, before the conversation's own, and its `project_files` (content
    blocks) open the first question, before that question's own files, with a cache breakpoint
    after them.
    """
    thinking = "thinking" in options
    server = covered(server_tools or [])
    messages: list[dict[str, Any]] = []
    for message in _without_refusals(history):
        if message.role == "assistant":
            messages += _answer(message, thinking=thinking, tools=bool(tools), server=server)
        elif message.attachments and files is not None:
            blocks = [files[file.id] for file in message.attachments]
            blocks.append({"type": "text", "text": message.content})
            messages.append({"role": message.role, "content": blocks})
        else:
            messages.append({"role": message.role, "content": message.content})
    if project_files:
        _open_with(messages, project_files)
    request: dict[str, Any] = {"model": model, **options, "messages": messages}
    _cache_newest_question(messages)
    system: list[dict[str, Any]] = [
        {"type": "text", "text": text}
        for text in (project_instructions, system_prompt)
        if text.strip()
    ]
    if system:
        system[-1]["cache_control"] = CACHE
        request["system"] = system
    if tools or server_tools:
        request["tools"] = [*(tools or []), *(server_tools or [])]
    return request


def _open_with(messages: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Put `blocks` at the start of the first user turn, a cache breakpoint after the last."""
    opening = [*blocks[:-1], {**blocks[-1], "cache_control": CACHE}]
    for message in messages:
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        message["content"] = [*opening, *content]
        return


def _without_refusals(history: Iterable[MessageState]) -> list[MessageState]:
    """The history without refused answers and the questions they answered."""
    kept: list[MessageState] = []
    for message in history:
        if message.role == "assistant" and message.status == Status.REFUSED.value:
            if kept and kept[-1].role == "user":
                kept.pop()
            continue
        kept.append(message)
    return kept


def next_round(
    request: dict[str, Any], transcript: list[dict[str, Any]], *, last: bool
) -> dict[str, Any]:
    """The request for the next round of a tool loop: the first request, then the rounds so
    far (ending in tool results). On the `last` allowed round Claude may not call tools."""
    messages = [*request["messages"], *copy.deepcopy(transcript)]
    _cache_newest_question(messages)
    following = {**request, "messages": messages}
    if last:
        following["tool_choice"] = {"type": "none"}
    return following


def _answer(
    message: MessageState, *, thinking: bool, tools: bool, server: set[str]
) -> list[dict[str, Any]]:
    if message.transcript is None:
        text = plain_text(message.content)
        return [{"role": "assistant", "content": text}] if text.strip() else []
    used = {
        block.get("name")
        for turn in message.transcript
        for block in turn["content"]
        if block["type"] == "server_tool_use"
    }
    web = used <= server  # every server tool it used is in this request
    turns = []
    for turn in message.transcript:
        content = [
            block if web or "citations" not in block else _uncited(block)
            for block in turn["content"]
            if (thinking or block["type"] not in _THINKING)
            and (tools or block["type"] not in _TOOLS)
            and (web or not _is_server_block(block["type"]))
        ]
        if content:
            turns.append({"role": turn["role"], "content": content})
    return turns


def _is_server_block(kind: str) -> bool:
    return kind == "server_tool_use" or is_server_result(kind)


def _uncited(block: dict[str, Any]) -> dict[str, Any]:
    """A text block without its citations (their sources are not sent)."""
    return {key: value for key, value in block.items() if key != "citations"}


def _cache_newest_question(messages: list[dict[str, Any]]) -> None:
    """Put the cache breakpoint on the last block of the newest user turn."""
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            message["content"] = [{"type": "text", "text": content, "cache_control": CACHE}]
        else:
            message["content"] = [*content[:-1], {**content[-1], "cache_control": CACHE}]
        return
