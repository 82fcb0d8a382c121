"""How much of its model's context window a conversation fills.

The last request's usage says how many tokens it sent (input, cache reads and cache writes
together); the next request sends those, the answer that came back, and the new question. No
request is made to know this: a question that clearly cannot fit is refused before sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..llm.catalogue import Model
from ..models import MessageState

WARN_FROM = 0.8  # the meter warns from this share of the window
# Characters per token, for the question not yet counted: on the short side, so a question
# is refused only when it surely cannot fit.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class ContextUse:
    """The tokens the last request sent, against the model's context window."""

    used: int
    window: int

    @property
    def percent(self) -> int:
        return min(100, round(self.used * 100 / self.window))

    @property
    def nearly_full(self) -> bool:
        return self.used >= self.window * WARN_FROM


def use(answers: Sequence[MessageState], model: Model | None) -> ContextUse | None:
    """How full the window was at the conversation's last request; None before the first
    request, or when the model's window is not known."""
    if model is None or not model.max_input_tokens:
        return None
    last = _last_request(answers)
    if last is None:
        return None
    return ContextUse(_sent(last), model.max_input_tokens)


def too_big(
    answers: Sequence[MessageState], model: Model | None, question: str, files: int = 0
) -> str | None:
    """A sentence if the next request, with `question` and `files` tokens of its files,
    cannot fit in the model's window."""
    if model is None or not model.max_input_tokens:
        return None
    last = _last_request(answers)
    before = _sent(last) + (last.output_tokens or 0) if last is not None else 0
    needed = before + len(question) // CHARS_PER_TOKEN + files
    if needed <= model.max_input_tokens:
        return None
    return (
        f"This would not fit in {model.display_name}'s context window: the conversation and "
        f"this message come to about {needed:,} tokens, and it takes {model.max_input_tokens:,}. "
        "Start a new chat (or shorten the message), or pick a model with a larger window."
    )


def _last_request(answers: Sequence[MessageState]) -> MessageState | None:
    for answer in reversed(answers):
        if answer.input_tokens is not None:
            return answer
    return None


def _sent(answer: MessageState) -> int:
    return (
        (answer.input_tokens or 0)
        + (answer.cache_read_tokens or 0)
        + (answer.cache_creation_tokens or 0)
    )
