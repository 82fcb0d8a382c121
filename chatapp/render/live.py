"""An answer's HTML while it streams: finished blocks are rendered once, the last one again.

The text of an answer is cut into top-level markdown blocks. A block is finished once the
next one has begun on a complete line; from then on nothing written later can change it (a
line's meaning depends on at most the line after it, and reference definitions are off), so
it is rendered once and appended. Only the block being written, the tail, is rendered again,
in its own element, on each frame.

A fenced code block that is still open is not rendered again at all: its new text is appended,
escaped, to its `<code>` element, and the block is highlighted once, when its fence closes.
A very long tail of another kind (a huge list or table) is rendered again only after it has
grown by a fraction of its length. So the work per answer grows linearly with its length.

A tool call in the text (see `chatapp.tools.record`) ends the prose before it: that prose is
finished, the call's block is appended and replaced as its record grows, and the prose after
it starts afresh. A server tool's result goes into its call's block, which is replaced again.

A citation stays inside its prose: its record is stood in for by one character while the
markdown is rendered, and its marker takes that character's place in the HTML (see
`citations`). The list of sources follows the tail, and grows as sources are first cited.

Rendering a whole text in one go runs the same steps, so an answer's streamed HTML and the
HTML of the page after a reload are the same string.
"""

from __future__ import annotations

import re
from typing import Any

from markupsafe import escape

from ..tools import record
from . import anchors, citations, code, markdown
from .kept import KeptAnswers
from .tools import server_block, tool_block

# A tail longer than this is parsed and rendered again only after growing by 1/REGROW of its
# length.
LONG_TAIL = 1500
REGROW = 10


def tail_element(message_id: int, inner: str) -> str:
    return f'<div class="tail" id="{anchors.tail(message_id)}">{inner}</div>'


def oob(target: str, swap: str, inner: str) -> str:
    """An out-of-band swap of `inner` into the element with id `target`."""
    return f'<div hx-swap-oob="{swap}:#{target}">{inner}</div>'


class LiveMarkdown:
    """The rendering of one answer as its text arrives."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        self.blocks: list[str] = []  # HTML of each finished block
        self._tail = ""  # markdown of the block(s) not finished yet
        self._tail_html = ""
        self._parsed = 0  # length of the tail's complete lines when last cut into blocks
        self._rendered = 0  # length of the tail when last rendered
        self._cr = False  # the text so far ends in "\r" (maybe half of a "\r\n")
        self._rerenderer = markdown.Rerenderer()
        # A fenced code block being written: its fence, where its code starts in the tail,
        # how much of that code is shown, and the HTML of its code so far.
        self._fence = ""
        self._language = ""
        self._code_start = 0
        self._shown = 0
        self._code_html: list[str] = []
        # A tool call (or a server tool's result) being written: its record so far, and where
        # its block is in `blocks`.
        self._record: str | None = None
        self._record_block = 0
        self._tools = 0  # records finished
        # Server tool calls by id: where each one's block is, its index and its record; and
        # which of them have their result.
        self._server_calls: dict[str, tuple[int, int, str]] = {}
        self._answered: set[str] = set()
        # A citation record being written, the sources cited so far (by number, from 1), and
        # the HTML of each source's marker.
        self._citation: str | None = None
        self._sources: list[dict[str, Any]] = []
        self._markers: dict[int, str] = {}

    # -- what the page shows ----------------------------------------------------------------

    def html(self) -> str:
        """The content element's inner HTML now: finished blocks, the tail's element, then the
        sources cited so far."""
        return (
            "".join(self.blocks)
            + tail_element(self.message_id, self._tail_now())
            + self._sources_html()
        )

    def finished_html(self) -> str:
        """The content element's inner HTML of an answer that has ended."""
        return "".join(self.blocks) + self._sources_html()

    def reset(self) -> str:
        """An out-of-band swap that makes a listener show what this shows now."""
        return oob(anchors.content(self.message_id), "innerHTML", self.html())

    # -- text arriving ---------------------------------------------------------------------

    def feed(self, text: str) -> str:
        """Take more of the answer; return the out-of-band swaps that show it ("" if none)."""
        swaps = []
        while text:
            if self._record is not None:
                end = text.find(record.CLOSE) + 1 or len(text)
                swaps.append(self._grow_record(text[:end]))
            elif self._citation is not None:
                end = text.find(record.CLOSE) + 1 or len(text)
                swaps.append(self._grow_citation(text[:end]))
            else:
                end = _next_mark(text)
                swaps.append(self._feed_markdown(text[:end]))
                if end < len(text):
                    if text[end] == record.CITE:
                        self._citation = ""
                    else:
                        swaps.append(self._open_record())
            text = text[end:]
        return "".join(swaps)

    def finish(self) -> str:
        """The answer has ended: its tail becomes finished blocks and its element goes.

        A tool call still without a result never gets one: its block says so.
        """
        self._citation = None  # a citation cut in half cites nothing
        swaps = self._close_markdown()
        if self._record is not None:
            swaps += self._show_record(self._tools, self._record, ended=True)
            self._record = None
        for call_id, (slot, index, call) in self._server_calls.items():
            if call_id not in self._answered:
                html = server_block(self.message_id, index, record.parse(call), None, ended=True)
                swaps += self._put(slot, html)
        return swaps + oob(anchors.tail(self.message_id), "delete", "")

    # -- markdown ----------------------------------------------------------------------------

    def _feed_markdown(self, text: str) -> str:
        text = self._normalize(text)
        if not text:
            return ""
        before = len(self._tail)
        self._tail += text
        if self._fence and not self._fence_may_end(before):
            return self._grow_code()
        return self._advance()

    def _close_markdown(self) -> str:
        """The markdown written so far is complete (the answer or its stretch of prose has
        ended): its tail becomes finished blocks, and the next text starts afresh."""
        if self._cr:
            self._cr = False
            self._tail += "\n"
        added = self._finish_blocks(self._tail, [b.line for b in markdown.blocks(self._tail)])
        self._tail = self._tail_html = ""
        self._fence = ""
        self._parsed = self._rendered = 0
        return oob(anchors.tail(self.message_id), "beforebegin", added) if added else ""

    def _normalize(self, text: str) -> str:
        """Line ends as markdown-it sees them; a trailing "\\r" waits for what follows it."""
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            text, self._cr = text[:-1], True
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def _advance(self) -> str:
        """Cut finished blocks off the tail, then show the tail as it is now."""
        swaps = []
        complete = self._tail.rfind("\n") + 1
        if complete > self._parsed and (
            complete <= LONG_TAIL or complete - self._parsed >= complete // REGROW
        ):
            found = markdown.blocks(self._tail[:complete])
            if found and found[-1].fence and found[-1].closed:
                # Nothing after a closing fence can change its block: it is finished now.
                found.append(markdown.Block(found[-1].end, found[-1].end))
            if len(found) >= 2:
                cut = _line_offset(self._tail, found[-1].line)
                lines = [b.line for b in found[:-1]]
                added = self._finish_blocks(self._tail[:cut], lines)
                if added:
                    swaps.append(oob(anchors.tail(self.message_id), "beforebegin", added))
                self._tail = self._tail[cut:]
                self._rendered = 0
                complete -= cut
            self._parsed = complete
            last = found[-1] if found else None
            if last is not None and last.fence and not last.closed:
                line = 0 if len(found) >= 2 else last.line  # where it starts in the tail now
                return "".join(swaps) + self._open_code(last, line)
        if self._tail_is_due():
            html = self._cited(self._rerenderer.render(self._tail))
            self._rendered = len(self._tail)
            if html != self._tail_html:
                self._tail_html = html
                swaps.append(oob(anchors.tail(self.message_id), "innerHTML", html))
        return "".join(swaps)

    def _tail_is_due(self) -> bool:
        size = len(self._tail)
        return size <= LONG_TAIL or size - self._rendered >= size // REGROW

    def _finish_blocks(self, text: str, lines: list[int]) -> str:
        """Render each block of `text` (starting at `lines`) on its own, and keep them. The
        tail's renderer does it: a block finishing was the tail, whose inline HTML it has."""
        offsets = [_line_offset(text, line) for line in lines] + [len(text)]
        offsets[0] = 0  # blank lines before the first block belong to it
        added = [
            self._cited(self._rerenderer.render(text[a:b]))
            for a, b in zip(offsets, offsets[1:], strict=False)
        ]
        self.blocks.extend(added)
        return "".join(added)

    # -- tool calls ------------------------------------------------------------------------

    def _open_record(self) -> str:
        """A tool call begins: the prose before it is complete, and its block comes next."""
        shown = bool(self._tail_now())
        swaps = self._close_markdown()
        if shown:
            swaps += oob(anchors.tail(self.message_id), "innerHTML", "")
        self._record = ""
        self._record_block = len(self.blocks)
        self.blocks.append("")
        return swaps

    def _grow_record(self, text: str) -> str:
        """Show more of the tool call being written."""
        assert self._record is not None
        self._record += text
        index, now = self._tools, self._record
        if now.endswith(record.CLOSE):
            self._record = None
            self._tools += 1
        return self._show_record(index, now)

    def _show_record(self, index: int, now: str, *, ended: bool = False) -> str:
        """The swap that shows the call's block as its record `now` says: appended the first
        time, replaced after that, nothing if it looks the same. A server tool's result is
        shown in its call's block once it is whole."""
        slot = self._record_block
        if record.is_result(now):
            result = record.parse_result(now)
            if result is None:
                return ""
            found = self._server_calls.get(result.tool_use_id)
            if found is not None and result.tool_use_id not in self._answered:
                self._answered.add(result.tool_use_id)
                slot, index, called = found
                html = server_block(self.message_id, index, record.parse(called), result)
            else:  # a result without its call: on its own
                html = server_block(self.message_id, index, None, result)
            return self._put(slot, html)
        call = record.parse(now)
        if call.server:
            if call.call_id and call.closed:
                self._server_calls[call.call_id] = (slot, index, now)
            html = server_block(self.message_id, index, call, None, ended=ended)
        else:
            html = tool_block(self.message_id, index, now, ended=ended)
        return self._put(slot, html)

    def _put(self, slot: int, html: str) -> str:
        """Show `html` as block `slot`: appended before the tail the first time, else as an
        out-of-band swap of the block of its id; nothing if it looks the same."""
        shown = self.blocks[slot]
        if html == shown:
            return ""
        self.blocks[slot] = html
        if not shown:
            return oob(anchors.tail(self.message_id), "beforebegin", html)
        tag_end = html.index(">")  # the block's own tag: ours, so no ">" in its attributes
        return html[:tag_end] + ' hx-swap-oob="true"' + html[tag_end:]

    # -- citations --------------------------------------------------------------------------

    def _grow_citation(self, text: str) -> str:
        """Take more of a citation record; once it is whole, its marker goes into the prose
        (and its source into the list, if it is new)."""
        assert self._citation is not None
        self._citation += text
        if not self._citation.endswith(record.CLOSE):
            return ""
        found = record.parse_citation(self._citation)
        self._citation = None
        if found is None:
            return ""
        swaps = []
        while len(self._sources) < found.number:
            known = len(self._sources) + 1 == found.number
            swaps.append(self._add_source(found.source if known else {}))
        swaps.append(self._feed_markdown(citations.marker_char(found.number)))
        return "".join(swaps)

    def _add_source(self, source: dict[str, Any]) -> str:
        """Add the next source to the list: the list itself first, if it is the first."""
        first = not self._sources
        self._sources.append(source)
        number = len(self._sources)
        self._markers[number] = citations.marker(self.message_id, number, source)
        item = citations.item(self.message_id, number, source)
        if first:
            shown = citations.block(self.message_id, item)
            return oob(anchors.content(self.message_id), "beforeend", shown)
        return oob(anchors.sources_list(self.message_id), "beforeend", item)

    def _sources_html(self) -> str:
        if not self._sources:
            return ""
        items = "".join(
            citations.item(self.message_id, number, source)
            for number, source in enumerate(self._sources, 1)
        )
        return citations.block(self.message_id, items)

    def _cited(self, html: str) -> str:
        """Rendered markdown with each citation's stand-in replaced by its marker."""
        if not self._sources:
            return html
        return citations.MARKERS.sub(self._marker, html)

    def _marker(self, found: re.Match[str]) -> str:
        number = citations.number_of(found.group())
        shown = self._markers.get(number)
        if shown is None:  # a number no citation gave (cannot happen: records are clean)
            shown = self._markers[number] = citations.marker(self.message_id, number, None)
        return shown

    # -- a fenced code block being written ----------------------------------------------------

    def _open_code(self, block: markdown.Block, line: int) -> str:
        """The tail is a fenced block still open, from `line` (blank lines may come before
        it): show it as code and append to it from now on."""
        self._fence, self._language = block.fence, block.language
        opener = _line_offset(self._tail, line)
        self._code_start = self._tail.index("\n", opener) + 1
        self._shown = self._code_start
        self._code_html = []
        self._grow_code()
        self._tail_html = ""  # shown by _tail_now from here on
        return oob(anchors.tail(self.message_id), "innerHTML", self._tail_now())

    def _fence_may_end(self, before: int) -> bool:
        """Whether a line completed by the newest text could close the open fence."""
        start = self._tail.rfind("\n", 0, before) + 1
        end = self._tail.rfind("\n") + 1
        lines = self._tail[max(start, self._code_start) : end].split("\n")[:-1]
        if any(markdown.might_close(line, self._fence, complete=True) for line in lines):
            self._fence = ""
            return True
        return False

    def _grow_code(self) -> str:
        """Append the code written since the last frame (holding back a possible closing line)."""
        upto = len(self._tail)
        line_start = self._tail.rfind("\n") + 1
        if line_start >= self._code_start and markdown.might_close(
            self._tail[line_start:], self._fence, complete=False
        ):
            upto = line_start
        if upto <= self._shown:
            return ""
        new = self._cited(str(escape(self._tail[self._shown : upto])))
        self._shown = upto
        self._code_html.append(new)
        return oob(anchors.code(self.message_id), "beforeend", new)

    def _tail_now(self) -> str:
        if not self._fence:
            return self._tail_html
        return code.frame(
            self._language, "".join(self._code_html), code_id=anchors.code(self.message_id)
        )


def _next_mark(text: str) -> int:
    """Where the first record (of any kind) in `text` starts, or its length if none does."""
    found = _MARK.search(text)
    return len(text) if found is None else found.start()


_MARK = re.compile(f"[{record.OPEN}{record.RESULT}{record.CITE}]")


def _line_offset(text: str, line: int) -> int:
    """The character offset at which line number `line` of `text` starts."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset


_kept = KeptAnswers()


def render_answer(text: str, message_id: int = 0) -> str:
    """A finished answer's HTML: the same as streaming it, in one go (or as kept from the
    last time this worker rendered it)."""
    html = _kept.get(message_id, text)
    if html is None:
        live = LiveMarkdown(message_id)
        live.feed(text)
        live.finish()
        html = live.finished_html()
        _kept.keep(message_id, text, html)
    return html


def is_kept(text: str, message_id: int) -> bool:
    """Whether `render_answer` has this answer's HTML without rendering it."""
    return _kept.get(message_id, text) is not None


def render_streaming(message_id: int, text: str) -> str:
    """The HTML of an answer still being written, as far as `text` goes."""
    live = LiveMarkdown(message_id)
    live.feed(text)
    return live.html()
