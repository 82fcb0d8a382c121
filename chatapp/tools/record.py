"""How tool calls, server tools and citations are written into an answer's text, where they
stream and are stored in order.

An answer's text holds its tool calls where they happened, between the paragraphs, so that
everything that makes an answer resumable (positions, frames, the group commit, the relay to
other workers, the sweeper) carries tool calls as it carries text. A call is a record marked by
private-use characters that model text never keeps (`clean` replaces them):

    OPEN {"id": …, "name": …} NEXT <input JSON, as it streams> NEXT {"result": …} CLOSE

The first NEXT comes with the header, the second when the input is complete and the tool runs;
the outcome and CLOSE come together when it has run. Any prefix of a record can be shown.

Anthropic's server tools (web search, web fetch) run on Anthropic's side, inside the same
streamed answer, so they are written the same way, in two records where they happen:

    OPEN {"id": …, "name": "web_search", "server": true} NEXT <input JSON> NEXT CLOSE
    RESULT {"tool_use_id": …, "type": "web_search_tool_result", "results": […]} CLOSE

the call when Claude writes it, its result (what is shown of it: titles and links, or an
error code; never the encrypted content, which stays in the transcript) when the API sends it.

A citation sits inline, right after the text it supports, and carries its source's number in
the answer (numbered by first appearance) and what the list of sources shows of it:

    CITE {"n": 1, "source": {"url": …, "title": …}, "cited_text": …} CLOSE
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

OPEN, NEXT, CLOSE, RESULT, CITE = "\ue000", "\ue001", "\ue002", "\ue003", "\ue004"
# The renderer stands a citation's marker in for its record while it renders the markdown
# around it: one character of the private-use plane 15 per source number (see
# chatapp.render.citations). Model text never keeps those either.
MARKER_BASE = 0xF0000
MARKER_LAST = 0xFFFFD
_MARKS = re.compile(f"[{OPEN}{NEXT}{CLOSE}{RESULT}{CITE}\U000f0000-\U000ffffd]")
_RECORDS = re.compile(f"[{OPEN}{RESULT}][^{CLOSE}]*{CLOSE}?")
_CITATIONS = re.compile(f"{CITE}[^{CLOSE}]*{CLOSE}?")
CITED_TEXT_LIMIT = 300  # characters of the cited text a citation record keeps


def clean(text: str) -> str:
    """Model text with the record marks replaced, so it can never open or close a record."""
    return _MARKS.sub("\ufffd", text)


def opening(call_id: str, name: str, *, server: bool = False) -> str:
    """The start of a record: the call's id and the tool's name (a server tool says so)."""
    header: dict[str, Any] = {"id": call_id, "name": name}
    if server:
        header["server"] = True
    return OPEN + json.dumps(header) + NEXT


def input_done() -> str:
    """The input is complete; the tool runs now."""
    return NEXT


def outcome(result: str, *, is_error: bool, ms: int) -> str:
    """The end of a record: what the tool returned, and how long it took."""
    return json.dumps({"result": result, "is_error": is_error, "ms": ms}) + CLOSE


def server_call_done() -> str:
    """The end of a server tool's call: its input is complete and Anthropic runs it (its
    result comes as a record of its own)."""
    return NEXT + CLOSE


def server_result(summary: dict[str, Any]) -> str:
    """A server tool's result, as much of it as the answer shows."""
    return RESULT + json.dumps(summary) + CLOSE


def citation(number: int, source: dict[str, Any], cited_text: str) -> str:
    """A citation of source `number` of the answer, right after the text it supports."""
    cited = cited_text[:CITED_TEXT_LIMIT]
    return CITE + json.dumps({"n": number, "source": source, "cited_text": cited}) + CLOSE


@dataclass(frozen=True)
class ToolCall:
    """What a record, complete or not, says about one call."""

    call_id: str = ""
    name: str = ""
    input: str = ""  # the input JSON as it streamed
    input_done: bool = False
    closed: bool = False
    result: str = ""
    is_error: bool = False
    ms: int = 0
    server: bool = False  # a server tool: its result is a record of its own


def parse(record: str) -> ToolCall:
    """Read a record or any prefix of one (starting with OPEN)."""
    body = record.removeprefix(OPEN)
    closed = body.endswith(CLOSE)
    parts = body.removesuffix(CLOSE).split(NEXT, 2)
    if len(parts) < 2:
        return ToolCall()  # the header is still arriving
    header = _json_object(parts[0])
    call = ToolCall(
        call_id=str(header.get("id", "")),
        name=str(header.get("name", "")),
        input=parts[1],
        input_done=len(parts) == 3,
        server=header.get("server") is True,
    )
    if not closed:
        return call
    end = _json_object(parts[2]) if len(parts) == 3 else {}  # closed early: no outcome
    return ToolCall(
        call_id=call.call_id,
        name=call.name,
        input=call.input,
        input_done=True,
        closed=True,
        result=str(end.get("result", "")),
        is_error=bool(end.get("is_error")),
        ms=_int(end.get("ms")),
        server=call.server,
    )


@dataclass(frozen=True)
class ServerResult:
    """What a server tool's result record says (None of it while it is incomplete)."""

    tool_use_id: str = ""
    type: str = ""  # the API's block type: "web_search_tool_result", "web_fetch_tool_result"…
    error: str | None = None  # the API's error code
    results: list[dict[str, str]] = field(default_factory=list)  # a search's: title, url…
    url: str = ""  # a fetch's page
    title: str = ""
    retrieved_at: str = ""


def parse_result(record: str) -> ServerResult | None:
    """Read a server result record (starting with RESULT); None until it is whole."""
    if not record.endswith(CLOSE):
        return None
    body = _json_object(record.removeprefix(RESULT).removesuffix(CLOSE))
    error = body.get("error")
    results = body.get("results")
    return ServerResult(
        tool_use_id=str(body.get("tool_use_id", "")),
        type=str(body.get("type", "")),
        error=str(error) if error is not None else None,
        results=[
            {key: str(value) for key, value in item.items() if isinstance(value, str)}
            for item in (results if isinstance(results, list) else [])
            if isinstance(item, dict)
        ],
        url=_str(body.get("url")),
        title=_str(body.get("title")),
        retrieved_at=_str(body.get("retrieved_at")),
    )


@dataclass(frozen=True)
class Citation:
    """What a citation record says: the source's number in the answer, and the source."""

    number: int
    source: dict[str, Any]
    cited_text: str = ""


def parse_citation(record: str) -> Citation | None:
    """Read a whole citation record (starting with CITE); None if it is not one."""
    body = _json_object(record.removeprefix(CITE).removesuffix(CLOSE))
    number, source = body.get("n"), body.get("source")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        return None
    if number > MARKER_LAST - MARKER_BASE:
        return None
    return Citation(
        number, source if isinstance(source, dict) else {}, _str(body.get("cited_text"))
    )


def split(text: str) -> list[str]:
    """The answer's text cut into markdown and block records (tool calls and server tool
    results), in order; empty pieces left out. Citations stay in the markdown around them."""
    pieces, start = [], 0
    for found in _RECORDS.finditer(text):
        pieces += [text[start : found.start()], found.group()]
        start = found.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def is_record(piece: str) -> bool:
    return piece.startswith((OPEN, RESULT))


def is_result(piece: str) -> bool:
    return piece.startswith(RESULT)


def without_citations(text: str) -> str:
    """The text with its citation records taken out."""
    return _CITATIONS.sub("", text) if CITE in text else text


def plain_text(text: str) -> str:
    """The answer's prose without its tool calls and citations (for titles, search snippets
    and Claude)."""
    text = without_citations(text)
    if OPEN not in text and RESULT not in text:
        return text
    return "\n\n".join(p.strip() for p in split(text) if not is_record(p) and p.strip())


def calls(text: str) -> list[ToolCall]:
    """Every tool call in an answer's text (client and server tools), in order."""
    return [parse(piece) for piece in split(text) if is_record(piece) and not is_result(piece)]


def server_results(text: str) -> list[ServerResult]:
    """Every whole server tool result in an answer's text, in order."""
    found = (parse_result(piece) for piece in split(text) if is_result(piece))
    return [result for result in found if result is not None]


def citations(text: str) -> list[Citation]:
    """Every whole citation in an answer's text, in order."""
    found = (parse_citation(match.group()) for match in _CITATIONS.finditer(text))
    return [item for item in found if item is not None]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
