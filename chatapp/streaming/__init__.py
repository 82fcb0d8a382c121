"""Answers being written: generations, their channels, persistence and the SSE stream."""

from __future__ import annotations

from dataclasses import replace

from ..models import MessageState
from .persistence import Question
from .registry import Streams, streams
from .views import bp

__all__ = ["Question", "Streams", "bp", "live_view", "streams"]


def live_view(state: MessageState) -> MessageState:
    """The message as a page should show it now: a live answer shows the text sent so far."""
    if not state.is_streaming:
        return state
    generation = streams().live.get(state.id)
    if generation is None:
        return state
    return replace(
        state, content=generation.published_text(), thinking=generation.published_thinking()
    )
