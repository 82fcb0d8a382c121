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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gevent.lock import Semaphore

from ..render import anchors, render_text
from ..render.live import LiveMarkdown, oob, render_answer
from ..render.thinking import thinking_section
from . import sse

if TYPE_CHECKING:
    from ..models import MessageState


@dataclass(frozen=True)
class Frame:
    """One update of a message, framed once and sent to every listener.

    `start` and `end` are positions in the answer (characters of thinking, then of text): the
    frame turns what a listener showing `start` sees into what it shows at `end`. `payload` is
    the SSE event ("" when nothing visible changed); for the last frame it is the swaps that
    finish the content, and `final` is the stored end of the answer; every listener of the
    worker is sent the same `done` event for it, made once (`done`).
    """

    start: int
    end: int
    text: str = ""
    thinking: str = ""
    payload: str = ""
    final: MessageState | None = None
    done: Once | None = field(default=None, compare=False, repr=False)


class Once:
    """A value made on first demand, once, however many greenlets ask for it meanwhile."""

    def __init__(self) -> None:
        self._lock = Semaphore()
        self._value: str | None = None

    def get(self, make: Callable[[], str]) -> str:
        with self._lock:  # making it may switch greenlets (a query): the others wait for it
            if self._value is None:
                self._value = make()
            return self._value


class AnswerView:
    """One worker's rendering of one answer (its thinking, then its text), as frames."""

    def __init__(self, message_id: int, text: str = "", thinking: str = "") -> None:
        self.message_id = message_id
        self._live = LiveMarkdown(message_id)
        self._thinking: list[str] = []
        self._thinking_now = False  # the section is open: the model is thinking
        self.thinking_length = self.text_length = 0
        self._swaps(thinking, text)

    @property
    def position(self) -> int:
        return self.thinking_length + self.text_length

    def add(self, text: str = "", thinking: str = "") -> Frame:
        """The frame that shows the next characters of the answer: thinking, then text."""
        start = self.position
        swaps = self._swaps(thinking, text)
        event_id = sse.event_id(self.message_id, self.position)
        payload = sse.event(swaps, name="frame", id=event_id) if swaps else ""
        return Frame(start, self.position, text=text, thinking=thinking, payload=payload)

    def add_from(
        self, start: int, thinking: str, text: str, whole: Callable[[], tuple[str, str]]
    ) -> Frame | None:
        """Like `add`, for a piece that may overlap what the view has, or leave a gap before it.

        `whole` gives the answer's whole thinking and text so far, to fill a gap.
        """
        end = start + len(thinking) + len(text)
        if end <= self.position:
            return None
        if start > self.position:
            all_thinking, all_text = whole()
            if len(all_text) < self.text_length or len(all_thinking) < self.thinking_length:
                return None  # not all of it (Redis lost some): a later frame fills the gap
            return self.add(all_text[self.text_length :], all_thinking[self.thinking_length :])
        skip = self.position - start
        skip_thinking = min(skip, len(thinking))
        return self.add(text[skip - skip_thinking :], thinking[skip_thinking:])

    def finish(self, state: MessageState) -> Frame:
        """The last frame: anything not shown yet, then the answer's finished form."""
        start = self.position
        swaps = self._swaps(
            state.thinking[self.thinking_length :], state.content[self.text_length :]
        )
        if self._thinking_now:
            swaps += self._thinking_section()
        return Frame(
            start, self.position, payload=swaps + self._live.finish(), final=state, done=Once()
        )

    def reset(self) -> str:
        """The event that makes a (re)connecting listener show what this view shows now."""
        swaps = self._live.reset() + (self._thinking_section() if self._thinking else "")
        return sse.event(swaps, name="frame", id=sse.event_id(self.message_id, self.position))

    def _swaps(self, thinking: str, text: str) -> str:
        swaps = []
        if thinking:
            first = not self._thinking
            self._thinking.append(thinking)
            self.thinking_length += len(thinking)
            if first:
                self._thinking_now = not self.text_length
                swaps.append(self._thinking_section())
            else:
                swaps.append(
                    oob(anchors.thinking_text(self.message_id), "beforeend", render_text(thinking))
                )
        if text:
            if self._thinking_now:
                self._thinking_now = False  # the answer begins: the thinking folds away
                swaps.append(self._thinking_section())
            self.text_length += len(text)
            swaps.append(self._live.feed(text))
        return "".join(swaps)

    def _thinking_section(self) -> str:
        thinking = "".join(self._thinking)
        self._thinking = [thinking]
        return thinking_section(
            self.message_id, thinking, thinking_now=self._thinking_now, oob=True
        )


def finished_content(state: MessageState) -> str:
    """Swaps that show a finished answer, for a listener whose state is unknown."""
    content = oob(anchors.content(state.id), "innerHTML", render_answer(state.content, state.id))
    return content + thinking_section(state.id, state.thinking, oob=True)
