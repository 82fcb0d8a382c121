"""How the next reply of the demo upstream behaves: its pace, and for tests its script.

The test double's side of the demo upstream: a test pushes `Scenario`s onto the upstream to
script exact replies, thinking, tool calls, server tools (web search and web fetch, their
results and errors, cited text) and faults (an HTTP error status, an `error` event
mid-stream, a dropped connection, a body that ends early, a stall).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pace:
    """How fast replies arrive."""

    first_token_seconds: tuple[float, float] = (0.5, 1.5)  # uniform, before the first delta
    tokens_per_second: tuple[float, float] = (50.0, 80.0)  # chosen per reply; ~4 chars a token
    ping_seconds: float = 5.0  # longest silence while waiting (a stall sends nothing at all)
    piece_chars: tuple[int, int] = (1, 6)  # characters in one text delta, uniform


@dataclass
class Scenario:
    """How the next reply behaves. Default: a markdown demo reply at the server's pace.

    Fault positions count characters of reply text (not thinking). A position past the end of
    the text takes effect right after the last character, so a fault scenario always faults.
    Faults apply to streaming requests; a non-streaming request honours only `status`.
    """

    text: str | None = None  # exact reply text; None = the demo reply for the prompt
    thinking: str | None = None  # stream a thinking block before the text
    status: int | None = None  # answer with this HTTP error status and Anthropic's error body
    error_message: str | None = None  # the error body's message (else the API's usual one)
    retry_after: int | None = None  # `retry-after` header sent with `status`
    error_after: int | None = None  # then an `error` event (overloaded_error), body ends
    drop_after: int | None = None  # then the TCP connection is dropped mid-body
    cut_after: int | None = None  # then the body ends cleanly, without message_delta/stop
    stall_after: int | None = None  # then nothing at all (no pings) for stall_seconds
    stall_seconds: float = 0.0
    unknown_events: bool = False  # interleave events of a type the SDK does not know
    pace: Pace | None = None  # overrides the server's pace for this reply
    stop_reason: str = "end_turn"  # "tool_use" when there are tool_uses
    stop_details: dict[str, Any] | None = None  # sent with stop_reason "refusal"
    tool_uses: list[ToolUse] = field(default_factory=list)  # called after the text
    signature_only: bool = False  # the thinking block carries a signature and no text
    # Content blocks after the text (which is then sent only if not empty): plain text, server
    # tools' calls and results, cited text. Faults apply to `text` only.
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class ToolUse:
    """A tool call in a scripted reply. The input streams as `input_json_delta` pieces: an
    empty one first, as the API sends, then `pieces` if given (they need not be valid JSON),
    else the JSON of `input` cut at the server's pace."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    pieces: list[str] | None = None

    def json(self) -> str:
        return "".join(self.pieces) if self.pieces is not None else json.dumps(self.input)


def _id(prefix: str) -> str:
    return f"{prefix}_demo{uuid.uuid4().hex[:20]}"


def fake_secret(kind: str, text: str) -> str:
    """What stands in for the API's encrypted content and indexes: plainly not encrypted."""
    return f"demo-{kind}:" + base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class ServerToolUse:
    """A call of a server tool (`web_search`, `web_fetch`) as Claude writes it: its input
    streams as `input_json_delta`. Its result is a block of its own (`SearchResults`,
    `FetchedPage`) with its `id`, in this reply or, after a `pause_turn`, the next one."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: _id("srvtoolu"))

    def json(self) -> str:
        return json.dumps(self.input)


@dataclass(frozen=True)
class Found:
    """One web search result."""

    title: str
    url: str
    page_age: str | None = None
    text: str = ""  # what the page says (sent as the API sends it: as encrypted content)

    def cite(self, cited_text: str) -> dict[str, Any]:
        """A citation of this result, as `citations_delta` carries it."""
        return {
            "type": "web_search_result_location",
            "url": self.url,
            "title": self.title,
            "encrypted_index": fake_secret("index", self.url),
            "cited_text": cited_text,
        }


@dataclass(frozen=True)
class SearchResults:
    """A `web_search_tool_result`: the results, or an error code (`max_uses_exceeded`, ...).
    The search takes `seconds` (the stream waits, with pings, as the API's does)."""

    tool_use_id: str
    results: list[Found] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def block(self) -> dict[str, Any]:
        content: Any
        if self.error is not None:
            content = {"type": "web_search_tool_result_error", "error_code": self.error}
        else:
            content = [
                {
                    "type": "web_search_result",
                    "title": found.title,
                    "url": found.url,
                    "encrypted_content": fake_secret("content", found.text or found.title),
                    "page_age": found.page_age,
                }
                for found in self.results
            ]
        kind = "web_search_tool_result"
        return {"type": kind, "tool_use_id": self.tool_use_id, "content": content}


@dataclass(frozen=True)
class FetchedPage:
    """A `web_fetch_tool_result`: the page read (as a text document that can be cited), or an
    error code (`url_not_accessible`, ...), after `seconds`."""

    tool_use_id: str
    url: str = ""
    title: str = ""
    text: str = ""
    error: str | None = None
    seconds: float = 0.0
    retrieved_at: str = "2026-12-04T09:00:00Z"

    def block(self) -> dict[str, Any]:
        content: dict[str, Any]
        if self.error is not None:
            content = {"type": "web_fetch_tool_result_error", "error_code": self.error}
        else:
            content = {
                "type": "web_fetch_result",
                "url": self.url,
                "retrieved_at": self.retrieved_at,
                "content": {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": self.text},
                    "title": self.title,
                    "citations": {"enabled": True},
                },
            }
        kind = "web_fetch_tool_result"
        return {"type": kind, "tool_use_id": self.tool_use_id, "content": content}

    def cite(self, cited_text: str, document_index: int = 0) -> dict[str, Any]:
        """A citation of the page read, as the API cites a text document."""
        start = max(self.text.find(cited_text), 0)
        return {
            "type": "char_location",
            "document_index": document_index,
            "document_title": self.title,
            "start_char_index": start,
            "end_char_index": start + len(cited_text),
            "cited_text": cited_text,
        }


def page_citation(
    document_index: int, title: str | None, first: int, last: int, cited_text: str
) -> dict[str, Any]:
    """A citation of pages `first` to `last` of a PDF sent as a document."""
    return {
        "type": "page_location",
        "document_index": document_index,
        "document_title": title,
        "start_page_number": first,
        "end_page_number": last + 1,  # the API's end is exclusive
        "cited_text": cited_text,
    }


@dataclass(frozen=True)
class Cited:
    """A text block with citations: a `citations_delta` for each comes first, then its text."""

    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)


Block = str | ServerToolUse | SearchResults | FetchedPage | Cited
