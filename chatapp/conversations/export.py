"""A conversation as a file to keep: Markdown to read, JSON to process."""

from __future__ import annotations

from typing import Any

from .. import costs
from ..attachments.kinds import describe, filesize
from ..models import Conversation, Message, MessageState
from ..tools import record


def as_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.title}", ""]
    lines.append(f"Model: {conversation.model}")
    if conversation.system_prompt:
        lines += ["", "System prompt:", "", _quoted(conversation.system_prompt)]
    for message in conversation.messages:
        who = "You" if message.role == "user" else "Claude"
        status = "" if message.status == "complete" else f" ({message.status})"
        lines += ["", f"## {who}{status}", ""]
        if message.attachments:
            lines += [f"Attached: {_files(message)}", ""]
        lines.append(_with_tool_calls(message.content))
    return "\n".join(lines).rstrip("\n") + "\n"


def as_json(conversation: Conversation, prices: dict[str, costs.Price]) -> dict[str, Any]:
    messages = []
    for message in conversation.messages:
        state = MessageState.of(message)
        cost = costs.cost(state, prices)
        messages.append(
            {
                "id": state.id,
                "role": state.role,
                "content": record.plain_text(state.content),
                "tool_calls": [
                    {
                        "tool": call.name,
                        "input": call.input,
                        "result": call.result if call.closed else None,
                        "is_error": call.is_error if call.closed else None,
                        "duration_ms": call.ms if call.closed else None,
                    }
                    for call in record.calls(state.content)
                ],
                "attachments": [
                    {
                        "name": file.name,
                        "kind": file.kind,
                        "media_type": file.media_type,
                        "size": file.size,
                        "width": file.width,
                        "height": file.height,
                        "pages": file.pages,
                    }
                    for file in state.attachments
                ],
                "thinking": state.thinking or None,
                "status": state.status,
                "error": state.error,
                "model": state.model,
                "stop_reason": state.stop_reason,
                "usage": {
                    "input_tokens": state.input_tokens,
                    "output_tokens": state.output_tokens,
                    "cache_read_tokens": state.cache_read_tokens,
                    "cache_creation_tokens": state.cache_creation_tokens,
                },
                "ttft_ms": state.ttft_ms,
                "duration_ms": state.duration_ms,
                "cost_usd": str(cost) if cost is not None else None,
                "created_at": message.created_at.isoformat(),
            }
        )
    return {
        "id": conversation.id,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "created_at": conversation.created_at.isoformat(),
        "messages": messages,
    }


def _files(message: Message) -> str:
    """A question's files in a line: "shot.png (PNG image, 1280 × 720, 84 KB), ..."."""
    return ", ".join(
        f"{file.name} ({describe(file)}, {filesize(file.size)})" for file in message.attachments
    )


def _with_tool_calls(content: str) -> str:
    """An answer's text with each tool call written as a quoted note where it happened."""
    pieces = []
    for piece in record.split(content):
        if not record.is_record(piece):
            pieces.append(piece)
            continue
        call = record.parse(piece)
        note = f"Tool {call.name}: {call.input}"
        if call.closed:
            outcome = "failed" if call.is_error else "result"
            note += f"\n{outcome} ({call.ms} ms): {call.result}"
        else:
            note += "\n(did not finish)"
        pieces.append("\n\n" + _quoted(note) + "\n\n")
    return "".join(pieces)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
