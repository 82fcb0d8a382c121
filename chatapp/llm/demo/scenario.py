"""How the next reply of the demo upstream behaves: its pace, and for tests its script.

The test double's side of the demo upstream: a test pushes `Scenario`s onto the upstream to
script exact replies, thinking, tool calls and faults (an HTTP error status, an `error` event
mid-stream, a dropped connection, a body that ends early, a stall).
"""

from __future__ import annotations

import json
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
