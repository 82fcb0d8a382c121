"""Finished answers' HTML, kept by each worker.

A page shows every answer of its conversation, and rendering markdown costs about 3 ms per
1,000 characters, during which no other greenlet of the worker runs: a conversation of ten
long answers would hold every stream for over 100 ms on each visit. A finished answer's HTML
depends only on its id and text, so the worker keeps the most recently shown ones, within a
budget of characters, and renders each again only when it has been pushed out.
"""

from __future__ import annotations

from collections import OrderedDict

# Characters of text and HTML kept per worker (a few tens of MB at most).
BUDGET = 8_000_000


class KeptAnswers:
    """The HTML of recently shown answers, by id and text; the least recently shown go first."""

    def __init__(self, budget: int = BUDGET) -> None:
        self._budget = budget
        self._size = 0
        self._entries: OrderedDict[tuple[int, str], str] = OrderedDict()

    def get(self, message_id: int, text: str) -> str | None:
        key = (message_id, text)
        html = self._entries.get(key)
        if html is not None:
            self._entries.move_to_end(key)
        return html

    def keep(self, message_id: int, text: str, html: str) -> None:
        key = (message_id, text)
        size = len(text) + len(html)
        if key in self._entries or size > self._budget:
            return
        self._entries[key] = html
        self._size += size
        while self._size > self._budget:
            (_, old_text), old_html = self._entries.popitem(last=False)
            self._size -= len(old_text) + len(old_html)
