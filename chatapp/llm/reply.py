"""Turn the SDK's stream events into the parts of one answer.

`Reply.apply` takes every event `client.messages.create(stream=True, ...)` yields and returns
the thinking and the text it adds to the answer (a tool call adds its record to the text, see
`chatapp.tools.record`). It reads only the raw wire events, so it keeps the answer itself:
the SDK's `messages.stream()` helper would also rebuild a snapshot of the whole message and
derive convenience events on every delta, three times the CPU per delta for nothing used
here. Should such events reach it (`text`, `thinking`, `signature`, `input_json`,
`citation`), they repeat what the raw deltas carry and are skipped, as are event types this
version does not know.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..tools import record


@dataclass
class Usage:
    """Token counts as the API reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def update(self, usage: Any) -> None:
        """Take the counts present in a `usage` object; later reports supersede earlier ones."""
        if usage is None:
            return
        if getattr(usage, "input_tokens", None) is not None:
            self.input_tokens = usage.input_tokens
        if getattr(usage, "output_tokens", None) is not None:
            self.output_tokens = usage.output_tokens
        if getattr(usage, "cache_read_input_tokens", None) is not None:
            self.cache_read_tokens = usage.cache_read_input_tokens
        if getattr(usage, "cache_creation_input_tokens", None) is not None:
            self.cache_creation_tokens = usage.cache_creation_input_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
        )


@dataclass(frozen=True)
class Piece:
    """What one event adds to an answer: thinking, text, or nothing."""

    thinking: str = ""
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.thinking or self.text)


NOTHING = Piece()


@dataclass
class ToolUse:
    """A tool call Claude has finished writing: what to run, with what."""

    call_id: str
    name: str
    input: Any  # the parsed input; None if it was not valid JSON


@dataclass
class Reply:
    """What has arrived of one answer so far, over every round of its tool loop.

    Each request to Claude is a round. A round that ends in tool calls is followed by another,
    with the tools' results; `transcript` keeps the finished rounds as the Messages API takes
    them (thinking with its signature, text, tool calls, tool results), so that later turns of
    the conversation send Claude exactly what it wrote.
    """

    started: float = field(default_factory=time.monotonic)
    text_parts: list[str] = field(default_factory=list)
    thinking_parts: list[str] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    refusal: str | None = None  # the API's explanation of a refusal, when it gives one
    model: str | None = None
    first_token_at: float | None = None
    finished: bool = False  # this round's message_stop arrived
    rounds: int = 0  # rounds that ended in tool calls
    # This round: its content blocks by index (as the API will take them back), which of them
    # are complete, the pieces each one's text, thinking or input JSON arrived in (joined when
    # the block is kept, not on every piece), and the tool results.
    _blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    _complete: set[int] = field(default_factory=set)
    _pieces: dict[int, list[str]] = field(default_factory=dict)
    _results: list[dict[str, Any]] = field(default_factory=list)
    _ready: ToolUse | None = None
    _usage: Usage = field(default_factory=Usage)  # this round's
    _started: bool = False  # this round's message_start arrived: the API took the request
    _reported: bool = False  # this round's output tokens were reported (or counted)
    _earlier: Usage = field(default_factory=Usage)  # the finished rounds', summed

    def apply(self, event: Any) -> Piece:
        """Record one event; return the thinking or text it adds (NOTHING for none)."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = self.model or event.message.model
            self._started = True
            self._usage.update(event.message.usage)
        elif kind == "content_block_start":
            return self._start_block(event.index, event.content_block)
        elif kind == "content_block_delta":
            return self._delta(event.index, event.delta)
        elif kind == "content_block_stop":
            return self._stop_block(event.index)
        elif kind == "message_delta":
            if event.delta.stop_reason is not None:
                self.stop_reason = event.delta.stop_reason
            details = getattr(event.delta, "stop_details", None)
            if details is not None:
                self.refusal = getattr(details, "explanation", None)
            self._usage.update(event.usage)
            self._reported = getattr(event.usage, "output_tokens", None) is not None
        elif kind == "message_stop":
            self.finished = True
        return NOTHING

    # -- the tool loop ------------------------------------------------------------------------

    def take_tool_use(self) -> ToolUse | None:
        """The tool call whose input just completed, once; run it before reading on."""
        ready, self._ready = self._ready, None
        return ready

    def tool_result(self, use: ToolUse, result: str, *, is_error: bool, ms: int) -> Piece:
        """Record what a tool returned; return the text that ends its record."""
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use.call_id}
        block["content"] = result
        if is_error:
            block["is_error"] = True
        self._results.append(block)
        return Piece(text=self._add(record.outcome(result, is_error=is_error, ms=ms)))

    def next_round(self) -> None:
        """Keep this round (its calls and their results, or, after `pause_turn`, what it
        wrote so far) and start the next one.

        A paused turn goes back to the API as it stands, and the next round carries on
        with the same turn: the transcript keeps both rounds as one assistant turn.
        """
        self._keep_assistant(self._content())
        if self._results:
            self.transcript.append({"role": "user", "content": self._results})
        self.rounds += 1
        self._earlier = self.usage
        self._usage = Usage()
        self._started = self._reported = False
        self._blocks, self._complete, self._pieces, self._results = {}, set(), {}, []
        self.finished, self.stop_reason = False, None

    def end(self) -> None:
        """The answer ends: keep what is whole of this round in the transcript.

        A tool call left without a result stays open in the text (its block says it did not
        finish) and is left out of the transcript, which must not ask for a result.
        """
        content = self._content()
        if content:
            self._keep_assistant(content)
        if self._results:
            self.transcript.append({"role": "user", "content": self._results})

    def _keep_assistant(self, content: list[dict[str, Any]]) -> None:
        last = self.transcript[-1] if self.transcript else None
        if last is not None and last["role"] == "assistant":
            last["content"] = [*last["content"], *content]  # the paused turn goes on
        else:
            self.transcript.append({"role": "assistant", "content": content})

    @property
    def beyond_text(self) -> bool:
        """The transcript holds more than the answer's text (thinking, tool calls): without
        it, the next request could not send Claude what it wrote."""
        return any(block["type"] != "text" for turn in self.transcript for block in turn["content"])

    @property
    def unreported_output(self) -> str | None:
        """What this round wrote, if the API took it but never reported its output tokens
        (the round was cut short); None if there is nothing to count."""
        if not self._started or self._reported:
            return None
        return "".join(piece for pieces in self._pieces.values() for piece in pieces) or None

    def count_output(self, tokens: int) -> None:
        """Set this round's output tokens, counted from `unreported_output`."""
        self._usage.output_tokens = max(self._usage.output_tokens, tokens)
        self._reported = True

    @property
    def usage(self) -> Usage:
        """Token counts of every round so far, summed: what the answer costs."""
        return self._earlier + self._usage

    # -- what has arrived -----------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_parts)

    @property
    def ttft_ms(self) -> int | None:
        if self.first_token_at is None:
            return None
        return round((self.first_token_at - self.started) * 1000)

    # -- inside ---------------------------------------------------------------------------------

    def _start_block(self, index: int, block: Any) -> Piece:
        kind = block.type
        self._pieces[index] = []
        if kind == "text":
            self._blocks[index] = {"type": "text"}
            return Piece(text=self._text(index, getattr(block, "text", "") or ""))
        if kind == "thinking":
            self._blocks[index] = {"type": "thinking", "signature": ""}
            return self._thinking(index, getattr(block, "thinking", "") or "")
        if kind == "redacted_thinking":
            self._blocks[index] = {"type": "redacted_thinking", "data": block.data}
        elif kind == "tool_use":
            self._blocks[index] = {"type": "tool_use", "id": block.id, "name": block.name}
            self._mark_first_token()
            return Piece(text=self._add(record.opening(block.id, block.name)))
        return NOTHING

    def _delta(self, index: int, delta: Any) -> Piece:
        kind = delta.type
        block = self._blocks.get(index)
        if block is None:
            return NOTHING
        if kind == "text_delta":
            return Piece(text=self._text(index, delta.text))
        if kind == "thinking_delta":
            return self._thinking(index, delta.thinking)
        if kind == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.signature
        elif kind == "input_json_delta" and block["type"] == "tool_use":
            self._pieces[index].append(delta.partial_json)
            return Piece(text=self._add(record.clean(delta.partial_json)))
        return NOTHING

    def _stop_block(self, index: int) -> Piece:
        block = self._blocks.get(index)
        if block is None:
            return NOTHING
        self._complete.add(index)
        if block["type"] != "tool_use":
            return NOTHING
        raw = "".join(self._pieces[index])
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = None
        block["input"] = parsed if isinstance(parsed, dict) else {}
        self._ready = ToolUse(block["id"], block["name"], parsed)
        return Piece(text=self._add(record.input_done()))

    def _text(self, index: int, text: str) -> str:
        if not text:
            return ""
        self._pieces[index].append(text)
        self._mark_first_token()
        return self._add(record.clean(text))

    def _thinking(self, index: int, thinking: str) -> Piece:
        if not thinking:
            return NOTHING
        shown = record.clean(thinking)
        if not self._pieces[index] and self.thinking_parts:
            shown = "\n\n" + shown  # the thinking of a later round, after a tool call
        self._pieces[index].append(thinking)
        self._mark_first_token()
        self.thinking_parts.append(shown)
        return Piece(thinking=shown)

    def _add(self, text: str) -> str:
        self.text_parts.append(text)
        return text

    def _content(self) -> list[dict[str, Any]]:
        """This round's blocks as the API takes them back.

        Of a round cut short only what is whole is kept: text, thinking that has its
        signature, and tool calls that have their result.
        """
        answered = {result["tool_use_id"] for result in self._results}
        content = []
        for index, block in sorted(self._blocks.items()):
            kind = block["type"]
            if kind in ("text", "thinking"):
                block = {**block, kind: "".join(self._pieces[index])}
            if kind == "text" and not block["text"]:
                continue
            if kind == "thinking" and not (index in self._complete and block["signature"]):
                continue
            if kind == "redacted_thinking" and index not in self._complete:
                continue
            if kind == "tool_use" and (block["id"] not in answered or "input" not in block):
                continue
            content.append(dict(block))
        return content

    def _mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
