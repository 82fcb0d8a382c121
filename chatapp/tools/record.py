"""How a tool call is written into an answer's text, where it streams and is stored in order.

An answer's text holds its tool calls where they happened, between the paragraphs, so that
everything that makes an answer resumable (positions, frames, the group commit, the relay to
other workers, the sweeper) carries tool calls as it carries text. A call is a record marked by
three private-use characters that model text never keeps (`clean` replaces them):

    OPEN {"id": …, "name": …} NEXT <input JSON, as it streams> NEXT {"result": …} CLOSE

The first NEXT comes with the header, the second when the input is complete and the tool runs;
the outcome and CLOSE come together when it has run. Any prefix of a record can be shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

OPEN, NEXT, CLOSE = "\ue000", "\ue001", "\ue002"
_MARKS = re.compile(f"[{OPEN}{NEXT}{CLOSE}]")
_RECORDS = re.compile(f"{OPEN}[^{CLOSE}]*{CLOSE}?")


def clean(text: str) -> str:
    """Model text with the record marks replaced, so it can never open or close a record."""
    return _MARKS.sub("\ufffd", text)


def opening(call_id: str, name: str) -> str:
    """The start of a record: the call's id and the tool's name."""
    return OPEN + json.dumps({"id": call_id, "name": name}) + NEXT


def input_done() -> str:
    """The input is complete; the tool runs now."""
    return NEXT


def outcome(result: str, *, is_error: bool, ms: int) -> str:
    """The end of a record: what the tool returned, and how long it took."""
    return json.dumps({"result": result, "is_error": is_error, "ms": ms}) + CLOSE


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
    )
    if not closed:
        return call
    end = _json_object(parts[2])
    return ToolCall(
        call_id=call.call_id,
        name=call.name,
        input=call.input,
        input_done=True,
        closed=True,
        result=str(end.get("result", "")),
        is_error=bool(end.get("is_error")),
        ms=int(end.get("ms") or 0),
    )


def split(text: str) -> list[str]:
    """The answer's text cut into markdown and records, in order; empty pieces left out."""
    pieces, start = [], 0
    for found in _RECORDS.finditer(text):
        pieces += [text[start : found.start()], found.group()]
        start = found.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def is_record(piece: str) -> bool:
    return piece.startswith(OPEN)


def plain_text(text: str) -> str:
    """The answer's prose without its tool calls (for titles, search snippets and Claude)."""
    if OPEN not in text:
        return text
    return "\n\n".join(p.strip() for p in split(text) if not is_record(p) and p.strip())


def calls(text: str) -> list[ToolCall]:
    """Every tool call in an answer's text, in order."""
    return [parse(piece) for piece in split(text) if is_record(piece)]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
