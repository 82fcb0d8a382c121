"""Turn the SDK's stream events into the parts of one answer.

`Reply.apply` takes every event `client.messages.create(stream=True, ...)` yields and returns
the thinking and the text it adds to the answer (a tool call adds its record to the text, and
so do a server tool's call and result, and a citation, see `chatapp.tools.record`). It reads
only the raw wire events, so it keeps the answer itself:
the SDK's `messages.stream()` helper would also rebuild a snapshot of the whole message and
derive convenience events on every delta, three times the CPU per delta for nothing used
here. Should such events reach it (`text`, `thinking`, `signature`, `input_json`,
`citation`), they repeat what the raw deltas carry and are skipped, as are event types this
version does not know.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..tools import record


@dataclass
class Usage:
    """Token counts as the API reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    web_search_requests: int = 0  # billed per search (usage.server_tool_use)

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
        searches = getattr(getattr(usage, "server_tool_use", None), "web_search_requests", None)
        if searches is not None:
            self.web_search_requests = searches

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
            self.web_search_requests + other.web_search_requests,
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
    them (thinking with its signature, text with its citations, tool calls, tool results,
    server tools' calls and results with their encrypted content), so that later turns of the
    conversation send Claude exactly what it wrote.
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
    # Citations, over the whole answer: each source's number (numbered as first cited), and
    # the pages web fetch read, by title (a fetched page is cited as a document).
    _sources: dict[tuple[Any, ...], int] = field(default_factory=dict)
    _fetched: dict[str, str] = field(default_factory=dict)
    # This round: the citations of each text block, whose markers follow its text when it
    # ends, and the white space held back at the end of a cited block's text meanwhile, so
    # that they come right after its last word.
    _cited: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _held: dict[int, str] = field(default_factory=dict)
    _searched: int = 0  # this round's web searches that came back (billed even if cut short)

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
        self._cited, self._held, self._searched = {}, {}, 0
        self.finished, self.stop_reason = False, None

    def end(self) -> Piece:
        """The answer ends: keep what is whole of this round in the transcript; return the
        text still owed to the answer (the markers of a cited text cut short).

        A tool call left without a result stays open in the text (its block says it did not
        finish) and is left out of the transcript, which must not ask for a result; so is a
        server tool's call without its result, and a result without its call.
        """
        owed = "".join(
            self._markers(index) for index in sorted(self._cited) if index not in self._complete
        )
        content = self._content()
        if content:
            self._keep_assistant(content)
        self._pair_server_tools()
        if self._results:
            self.transcript.append({"role": "user", "content": self._results})
        return Piece(text=self._add(owed)) if owed else NOTHING

    def _pair_server_tools(self) -> None:
        last = self.transcript[-1] if self.transcript else None
        if last is None or last["role"] != "assistant":
            return
        content = last["content"]
        called = {b.get("id") for b in content if b["type"] == "server_tool_use"}
        answered = {b.get("tool_use_id") for b in content if is_server_result(b["type"])}
        kept = [
            block
            for block in content
            if not (block["type"] == "server_tool_use" and block.get("id") not in answered)
            and not (is_server_result(block["type"]) and block.get("tool_use_id") not in called)
        ]
        if kept:
            last["content"] = kept
        else:
            self.transcript.pop()

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
        return any(
            block["type"] != "text" or block.get("citations")
            for turn in self.transcript
            for block in turn["content"]
        )

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
        """Token counts (and web searches) of every round so far, summed: what the answer
        costs. A round cut short never reports its searches: those whose results came count."""
        now = self._usage
        if self._searched > now.web_search_requests:
            now = replace(now, web_search_requests=self._searched)
        return self._earlier + now

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
            for cited in getattr(block, "citations", None) or ():
                self._cite(index, _as_dict(cited))
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
        elif kind == "server_tool_use":
            # As the API sent it (a call made from code execution says so in `caller`); its
            # input streams as JSON like a tool call's.
            self._blocks[index] = {**_as_dict(block), "input": {}}
            self._mark_first_token()
            opening = record.opening(block.id, block.name, server=True)
            return Piece(text=self._add(opening))
        elif is_server_result(kind):
            # A server tool's result comes whole: kept as sent (its encrypted content goes back
            # to the API on later turns), shown as what the answer shows of it.
            data = _as_dict(block)
            self._blocks[index] = data
            self._note_fetched(data)
            content = data.get("content")
            if kind == "web_search_tool_result" and isinstance(content, list):
                self._searched += 1
            return Piece(text=self._add(record.server_result(_summary(data))))
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
        elif kind == "input_json_delta" and block["type"] in ("tool_use", "server_tool_use"):
            self._pieces[index].append(delta.partial_json)
            return Piece(text=self._add(record.clean(delta.partial_json)))
        elif kind == "citations_delta" and block["type"] == "text":
            self._cite(index, _as_dict(delta.citation))
        return NOTHING

    def _stop_block(self, index: int) -> Piece:
        block = self._blocks.get(index)
        if block is None:
            return NOTHING
        self._complete.add(index)
        kind = block["type"]
        if kind == "text" and index in self._cited:
            return Piece(text=self._add(self._markers(index)))
        if kind not in ("tool_use", "server_tool_use"):
            return NOTHING
        raw = "".join(self._pieces[index])
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = None
        block["input"] = parsed if isinstance(parsed, dict) else {}
        if kind == "server_tool_use":  # Anthropic runs it; its result follows in the stream
            return Piece(text=self._add(record.server_call_done()))
        self._ready = ToolUse(block["id"], block["name"], parsed)
        return Piece(text=self._add(record.input_done()))

    def _text(self, index: int, text: str) -> str:
        if not text:
            return ""
        self._pieces[index].append(text)
        self._mark_first_token()
        if index in self._cited:
            text = self._held.pop(index, "") + text
            kept = text.rstrip()
            if len(kept) < len(text):
                self._held[index] = text[len(kept) :]
            if not kept:
                return ""
            text = kept
        return self._add(record.clean(text))

    # -- citations ------------------------------------------------------------------------------

    def _cite(self, index: int, citation: dict[str, Any]) -> None:
        """A citation of the text block `index`: kept with it for the API, and shown after
        its text."""
        self._blocks[index].setdefault("citations", []).append(citation)
        self._cited.setdefault(index, []).append(citation)

    def _markers(self, index: int) -> str:
        """The citation records of text block `index` (one per source), then the white space
        held back after its text."""
        records, seen = [], set()
        for cited in self._cited.get(index, ()):
            key, source = self._source(cited)
            number = self._sources.setdefault(key, len(self._sources) + 1)
            if number not in seen:
                seen.add(number)
                records.append(record.citation(number, source, _string(cited.get("cited_text"))))
        return "".join(records) + self._held.pop(index, "")

    def _source(self, cited: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """What a citation cites, as a key (one number per source in the answer) and as the
        list of sources shows it: a web page's title and address, or a document's name (by
        its title, else its place among the documents) and pages."""
        kind = cited.get("type")
        if kind == "web_search_result_location":
            url = _string(cited.get("url"))
            return ("url", url), {"url": url, "title": _string(cited.get("title")) or url}
        if kind == "search_result_location":
            source = _string(cited.get("source"))
            return ("url", source), {"url": source, "title": _string(cited.get("title"))}
        title = _string(cited.get("document_title"))
        index = cited.get("document_index")
        pages: list[int] | None = None
        if kind == "page_location":
            first = _number(cited.get("start_page_number"), 1)
            pages = [first, max(first, _number(cited.get("end_page_number"), first + 1) - 1)]
        fetched = self._fetched.get(title)
        if fetched is not None:  # a page web fetch read
            key: tuple[Any, ...] = ("url", fetched, *(pages or ()))
            return key, {"url": fetched, "title": title, **({"pages": pages} if pages else {})}
        name = title or (f"Document {index + 1}" if isinstance(index, int) else "Document")
        if pages is not None:
            return ("document", index, *pages), {"title": name, "pages": pages}
        return ("document", index), {"title": name}

    def _note_fetched(self, result: dict[str, Any]) -> None:
        """Remember the title of a page web fetch read, so its citations link to it."""
        content = result.get("content")
        if result.get("type") != "web_fetch_tool_result" or not isinstance(content, dict):
            return
        document = content.get("content")
        title = document.get("title") if isinstance(document, dict) else None
        url = content.get("url")
        if isinstance(title, str) and title and isinstance(url, str):
            self._fetched[title] = url

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
            if kind == "server_tool_use" and index not in self._complete:
                continue
            if is_server_result(kind) and index not in self._complete:
                continue
            content.append(dict(block))
        return content

    def _mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()


def is_server_result(kind: str) -> bool:
    """Whether a content block of this type is a server tool's result
    (`web_search_tool_result`, `web_fetch_tool_result`, `code_execution_tool_result`, ...)."""
    return kind.endswith("_tool_result")


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the answer shows of a server tool's result: an error code; a search's titles,
    addresses and ages; a fetched page's address and title. Never its encrypted content."""
    kind = result.get("type")
    summary: dict[str, Any] = {"tool_use_id": result.get("tool_use_id"), "type": kind}
    content = result.get("content")
    if isinstance(content, dict) and content.get("error_code") is not None:
        summary["error"] = str(content["error_code"])
    elif kind == "web_search_tool_result" and isinstance(content, list):
        summary["results"] = [
            {
                key: item[key]
                for key in ("title", "url", "page_age")
                if isinstance(item.get(key), str)
            }
            for item in content
            if isinstance(item, dict) and item.get("type") == "web_search_result"
        ]
    elif kind == "web_fetch_tool_result" and isinstance(content, dict):
        document = content.get("content")
        summary["url"] = content.get("url")
        summary["title"] = document.get("title") if isinstance(document, dict) else None
        summary["retrieved_at"] = content.get("retrieved_at")
    return summary


def _as_dict(value: Any) -> dict[str, Any]:
    """An SDK object as the API sent it (JSON types only)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        found = to_dict(mode="json")
        return dict(found) if isinstance(found, dict) else {}
    if isinstance(value, dict):
        return dict(value)
    return dict(vars(value))


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
