"""Frames: an answer's rendered updates, made once per worker and sent to every listener.

An `AnswerView` is one worker's rendering of one answer. The writing worker keeps one for its
generation; another worker keeps one per answer its listeners follow through Redis; a listener
that follows from the database keeps its own. Each turns arriving text into a frame of
out-of-band swaps that assumes the listener shows exactly what the view showed before it.
A listener that (re)connects is first reset to what the view shows now; from then on it takes
the view's frames in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..render.live import LiveMarkdown, content_id, oob, render_answer
from . import sse

if TYPE_CHECKING:
    from ..models import MessageState


@dataclass(frozen=True)
class Frame:
    """One update of a message, framed once and sent to every listener.

    `start` and `end` are character offsets into the answer text: the frame turns what a
    listener showing `start` characters sees into what it shows at `end`. `payload` is the SSE
    event ("" when nothing visible changed); for the last frame it is the swaps that finish the
    content, and `final` is the stored end of the answer.
    """

    start: int
    end: int
    text: str = ""
    payload: str = ""
    final: MessageState | None = None


class AnswerView:
    """One worker's rendering of one answer, as frames."""

    def __init__(self, message_id: int, text: str = "") -> None:
        self.message_id = message_id
        self._live = LiveMarkdown(message_id)
        self._live.feed(text)
        self.position = len(text)

    def add(self, text: str) -> Frame:
        """The frame that shows `text`, the next characters of the answer."""
        start = self.position
        self.position += len(text)
        swaps = self._live.feed(text)
        event_id = sse.event_id(self.message_id, self.position)
        payload = sse.event(swaps, name="frame", id=event_id) if swaps else ""
        return Frame(start=start, end=self.position, text=text, payload=payload)

    def add_from(self, start: int, text: str, whole_text: Callable[[], str]) -> Frame | None:
        """Like `add`, for text that may overlap what the view has, or leave a gap before it."""
        end = start + len(text)
        if end <= self.position:
            return None
        if start > self.position:
            text, start = whole_text()[self.position : end], self.position
        return self.add(text[self.position - start :])

    def finish(self, state: MessageState) -> Frame:
        """The last frame: any text not shown yet, then the content's finished form."""
        missing = state.content[self.position :]
        swaps = self._live.feed(missing) if missing else ""
        start, self.position = self.position, len(state.content)
        return Frame(
            start=start, end=self.position, payload=swaps + self._live.finish(), final=state
        )

    def reset(self) -> str:
        """The event that makes a (re)connecting listener show what this view shows now."""
        return sse.event(
            self._live.reset(), name="frame", id=sse.event_id(self.message_id, self.position)
        )


def finished_content(state: MessageState) -> str:
    """Swaps that show a finished answer's content, for a listener whose state is unknown."""
    return oob(content_id(state.id), "innerHTML", render_answer(state.content))
