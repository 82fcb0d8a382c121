"""A conversation as a file to keep: Markdown to read, JSON to process.

In Markdown each citation is a footnote reference after the text it supports, and the
answer's sources are the footnotes under it; the JSON keeps them structured (each answer's
sources, and where in its text each citation sits), with its tool calls and web searches.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .. import costs
from ..attachments.kinds import describe, filesize
from ..models import Conversation, Message, MessageState
from ..render import citations as cited
from ..tools import record


def as_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.title}", ""]
    lines.append(f"Model: {conversation.model}")
    if conversation.system_prompt:
        lines += ["", "System prompt:", "", _quoted(conversation.system_prompt)]
    for message in conversation.messages:
        who = "You" if message.role == "user" else "Claude"
        status = "" if message.status == "complete" else f" ({message.status})"
        text = message.content
        if message.role == "assistant":
            text = _with_footnotes(_with_tool_calls(text), message.id)
        lines += ["", f"## {who}{status}", ""]
        if message.attachments:
            lines += [f"Attached: {_files(message)}", ""]
        lines.append(text)
    return "\n".join(lines).rstrip("\n") + "\n"


def as_json(
    conversation: Conversation,
    prices: dict[str, costs.Price],
    searches: Decimal = costs.SEARCH_PRICE,
) -> dict[str, Any]:
    messages = []
    for message in conversation.messages:
        state = MessageState.of(message)
        cost = costs.cost(state, prices, searches)
        found = record.citations(state.content)
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
                    if not call.server
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
                "server_tools": _server_tools(state.content),
                "sources": _sources(found),
                "citations": _citations(state.content),
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
                    "web_search_requests": state.web_search_requests,
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
        "server_tools": conversation.server_tools.split(),
        "created_at": conversation.created_at.isoformat(),
        "messages": messages,
    }


def _files(message: Message) -> str:
    """A question's files in a line: "shot.png (PNG image, 1280 × 720, 84 KB), ..."."""
    return ", ".join(
        f"{file.name} ({describe(file)}, {filesize(file.size)})" for file in message.attachments
    )


def _server_tools(content: str) -> list[dict[str, Any]]:
    """The answer's web searches and fetches: each call's input and what its result showed."""
    results = {result.tool_use_id: result for result in record.server_results(content)}
    found = []
    for call in record.calls(content):
        if not call.server:
            continue
        result = results.get(call.call_id)
        entry: dict[str, Any] = {"tool": call.name, "input": call.input, "error": None}
        if result is not None:
            entry["error"] = result.error
            if result.type == "web_search_tool_result":
                entry["results"] = result.results
            elif result.type == "web_fetch_tool_result":
                entry["page"] = {"url": result.url, "title": result.title}
        else:
            entry["error"] = "no_result"
        found.append(entry)
    return found


def _sources(found: list[record.Citation]) -> list[dict[str, Any]]:
    """The answer's sources, by number, as the first citation of each gave them."""
    sources: dict[int, dict[str, Any]] = {}
    for item in found:
        sources.setdefault(item.number, {"number": item.number, **item.source})
    return [sources[number] for number in sorted(sources)]


def _citations(content: str) -> list[dict[str, Any]]:
    """Each citation: its source's number, the text it cites, and where it stands in the
    answer's plain text (`content`, as `record.plain_text` makes it): the character after the
    text it supports."""
    apart = record.OPEN in content or record.RESULT in content  # prose between tool calls
    found = []
    position, first = 0, True
    for piece in record.split(content):
        if record.is_record(piece):
            continue
        parts = _citation_parts(piece)
        plain = "".join(part for part in parts if isinstance(part, str))
        shown = plain.strip() if apart else plain
        lead = len(plain) - len(plain.lstrip()) if apart else 0
        if shown and apart and not first:
            position += 2  # the blank line plain_text puts between stretches of prose
        offset = 0
        for part in parts:
            if isinstance(part, str):
                offset += len(part)
            else:
                at = position + min(max(offset - lead, 0), len(shown))
                found.append({"source": part.number, "cited_text": part.cited_text, "at": at})
        if shown:
            position += len(shown)
            first = False
    return found


def _citation_parts(prose: str) -> list[str | record.Citation]:
    parts: list[str | record.Citation] = []
    rest = prose
    while record.CITE in rest:
        before, _, after = rest.partition(record.CITE)
        body, closed, rest = after.partition(record.CLOSE)
        parts.append(before)
        item = record.parse_citation(record.CITE + body + closed) if closed else None
        if item is not None:
            parts.append(item)
    parts.append(rest)
    return parts


def _with_tool_calls(content: str) -> str:
    """An answer's text with each tool call written as a quoted note where it happened."""
    pieces = []
    results = {result.tool_use_id: result for result in record.server_results(content)}
    for piece in record.split(content):
        if not record.is_record(piece):
            pieces.append(piece)
            continue
        if record.is_result(piece):
            continue  # with its call
        call = record.parse(piece)
        if call.server:
            note = _server_note(call, results.get(call.call_id))
        else:
            note = f"Tool {call.name}: {call.input}"
            if call.closed:
                outcome = "failed" if call.is_error else "result"
                note += f"\n{outcome} ({call.ms} ms): {call.result}"
            else:
                note += "\n(did not finish)"
        pieces.append("\n\n" + _quoted(note) + "\n\n")
    return "".join(pieces)


def _server_note(call: record.ToolCall, result: record.ServerResult | None) -> str:
    note = f"{call.name.replace('_', ' ').capitalize()}: {call.input}"
    if result is None:
        return note + "\n(no result)"
    if result.error is not None:
        return note + f"\nfailed: {result.error}"
    for found in result.results:
        note += f"\n- {found.get('title', '')} <{found.get('url', '')}>"
    if result.type == "web_fetch_tool_result":
        note += f"\nfetched: {result.title} <{result.url}>"
    return note


def _with_footnotes(text: str, message_id: int) -> str:
    """An answer's text with each citation as a footnote reference (`[^12-1]`: answer 12's
    source 1, so that answers' footnotes never clash), and its sources as the footnotes."""
    if record.CITE not in text:
        return text
    sources: dict[int, dict[str, Any]] = {}
    out = []
    for part in _citation_parts(text):
        if isinstance(part, str):
            out.append(part)
        else:
            sources.setdefault(part.number, part.source)
            out.append(f"[^{message_id}-{part.number}]")
    notes = [cited.footnote(f"{message_id}-{n}", sources[n]) for n in sorted(sources)]
    return "".join(out).rstrip() + "\n\n" + "\n".join(notes)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
