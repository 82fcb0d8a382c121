"""Turn the SDK's stream events into the parts of one answer.

`Reply.apply` takes every event `client.messages.stream(...)` yields and returns the thinking
and the text it adds to the answer. It reads only the raw wire events; the SDK's own
convenience events (`text`, `thinking`, `signature`, `input_json`, `citation`) repeat what the
raw deltas carry and are skipped, as are event types this version does not know.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class Piece:
    """What one event adds to an answer: thinking, text, or nothing."""

    thinking: str = ""
    text: str = ""

    def __bool__(self) -> bool:
        return bool(self.thinking or self.text)


NOTHING = Piece()


@dataclass
class Reply:
    """What has arrived of one answer so far."""

    started: float = field(default_factory=time.monotonic)
    text_parts: list[str] = field(default_factory=list)
    thinking_parts: list[str] = field(default_factory=list)
    block_types: dict[int, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    model: str | None = None
    first_token_at: float | None = None
    finished: bool = False  # message_stop arrived

    def apply(self, event: Any) -> Piece:
        """Record one event; return the thinking or text it adds (NOTHING for none)."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = event.message.model
            self.usage.update(event.message.usage)
        elif kind == "content_block_start":
            self.block_types[event.index] = event.content_block.type
            initial = getattr(event.content_block, "text", "")
            if event.content_block.type == "text" and initial:
                return Piece(text=self._text(initial))
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return Piece(text=self._text(delta.text))
            if delta.type == "thinking_delta" and delta.thinking:
                self._mark_first_token()
                self.thinking_parts.append(delta.thinking)
                return Piece(thinking=delta.thinking)
        elif kind == "message_delta":
            if event.delta.stop_reason is not None:
                self.stop_reason = event.delta.stop_reason
            self.usage.update(event.usage)
        elif kind == "message_stop":
            self.finished = True
        return NOTHING

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

    def _text(self, text: str) -> str:
        if text:
            self._mark_first_token()
            self.text_parts.append(text)
        return text

    def _mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
