"""A tool call as a compact block in the answer: the tool's name, its input, its result and
how long it took. It streams in place: the page replaces the block as its record grows.

Server tools (web search, web fetch, run by Anthropic) have blocks of their own words:
"Searching the web for …" while Claude writes and the search runs, then the results (title,
site, link), or the page fetched, or what went wrong, in a sentence. The result comes as a
record of its own; the page shows it in its call's block.
"""

from __future__ import annotations

import json
import re

from markupsafe import escape

from ..tools.record import ServerResult, ToolCall, parse
from . import anchors
from .citations import site, web_link
from .markdown import sanitize_sources
from .text import render_text

SEARCH, FETCH = "web_search", "web_fetch"

# The API's error codes of web search and web fetch results, for the reader.
ERRORS = {
    "invalid_tool_input": "Claude asked in a way the tool does not take.",
    "unavailable": "The tool is unavailable right now.",
    "max_uses_exceeded": "Claude has used this tool as often as one request may "
    "(CHATAPP_WEB_SEARCH_MAX_USES, CHATAPP_WEB_FETCH_MAX_USES).",
    "too_many_requests": "Too many requests to the tool at once; it did not run.",
    "query_too_long": "The search was too long.",
    "request_too_large": "The request was too large for the tool.",
    "url_too_long": "The address was too long.",
    "url_not_allowed": "That site may not be fetched here.",
    "url_not_in_prior_context": "Claude may only fetch addresses that appeared in the "
    "conversation or in search results.",
    "url_not_accessible": "The page could not be reached.",
    "unsupported_content_type": "The page is of a kind the tool cannot read.",
    "content_too_large": "The page is too large to read.",
}


def tool_block(
    message_id: int, index: int, record: str, *, ended: bool = False, oob: bool = False
) -> str:
    """The block for a record or any prefix of one; `ended`: the answer is over, so a call
    without a result never got one."""
    call = parse(record)
    state, status = _state(call, ended)
    swap = ' hx-swap-oob="true"' if oob else ""
    name = render_text(call.name or "tool")
    parts = [
        f'<div class="tool tool--{state}" id="{anchors.tool(message_id, index)}"{swap}>',
        f'<div class="tool__head"><span class="tool__name">{name}</span>'
        f'<span class="tool__status">{status}</span></div>',
        f'<pre class="tool__input">{render_text(call.input)}</pre>',
    ]
    if call.closed:
        parts.append(f'<pre class="tool__result">{render_text(call.result)}</pre>')
    parts.append("</div>")
    return "".join(parts)


def server_block(
    message_id: int,
    index: int,
    call: ToolCall | None,
    result: ServerResult | None,
    *,
    ended: bool = False,
    oob: bool = False,
) -> str:
    """The block of a server tool's call (or any prefix of it) and, once it came, its result.

    `ended`: the answer is over, so a call without a result never got one. A result whose
    call is not in the answer is shown on its own (`call` None).
    """
    name = call.name if call is not None else _name_of(result)
    tool_input = call.input if call is not None else ""
    if name == SEARCH:
        query = _input_field(tool_input, "query")
        said = f"“{escape(query)}”" if query else ""
        head = f"Searching the web for {said}" if said else "Searching the web…"
        if result is not None:
            head = f"Searched the web for {said}" if said else "Searched the web"
    elif name == FETCH:
        url = _input_field(tool_input, "url")
        head = f"Fetching {_link(url)}" if url else "Fetching a page…"
        if result is not None:
            head = f"Fetched {_link(url)}" if url else "Fetched a page"
    else:
        head = f'<span class="tool__name">{render_text(name or "tool")}</span>'
    state, status = _server_state(call, result, ended)
    swap = ' hx-swap-oob="true"' if oob else ""
    block_id = anchors.tool(message_id, index)
    parts = [
        f'<div class="tool tool--server tool--{state}" id="{block_id}"{swap}>',
        f'<div class="tool__head"><span class="tool__what">{head}</span>'
        f'<span class="tool__status">{status}</span></div>',
    ]
    if name not in (SEARCH, FETCH) and tool_input:
        parts.append(f'<pre class="tool__input">{render_text(tool_input)}</pre>')
    if result is not None:
        parts.append(_result(result))
    parts.append("</div>")
    return "".join(parts)


def _server_state(
    call: ToolCall | None, result: ServerResult | None, ended: bool
) -> tuple[str, str]:
    if result is not None:
        if result.error is not None:
            return "error", "Failed"
        if result.type == "web_search_tool_result":
            count = len(result.results)
            return "done", f"{count} result{'' if count == 1 else 's'}"
        return "done", "Done"
    if ended:
        return "error", "Did not finish"
    if call is not None and call.input_done:
        return "running", "Running…" if call.name not in (SEARCH, FETCH) else "Waiting…"
    return "writing", "Preparing…"


def _result(result: ServerResult) -> str:
    """What a server tool's result shows: what went wrong, the results found, or the page."""
    if result.error is not None:
        sentence = ERRORS.get(result.error, f"The tool failed ({result.error}).")
        return f'<p class="tool__error">{escape(sentence)}</p>'
    if result.type == "web_search_tool_result":
        if not result.results:
            return '<p class="tool__note">Nothing found.</p>'
        items = "".join(
            f"<li>{_titled_link(found.get('url'), found.get('title'))}</li>"
            for found in result.results
        )
        return sanitize_sources(f'<ul class="tool__results">{items}</ul>')
    if result.type == "web_fetch_tool_result":
        page = _titled_link(result.url, result.title)
        return sanitize_sources(f'<p class="tool__page">{page}</p>')
    return ""


def _titled_link(url: str | None, title: str | None) -> str:
    """A result: its title, linking to it if it is a web address, and its site."""
    link = web_link(url)
    name = " ".join((title or "").split()) or (url or "") or "Untitled"
    if link is None:
        return f'<span class="tool__title">{escape(name)}</span>'
    return (
        f'<a class="tool__link" href="{escape(link)}">{escape(name)}</a> '
        f'<span class="tool__site">{escape(site(link))}</span>'
    )


def _link(url: str) -> str:
    """An address Claude wrote: a link if it is a web address, else text."""
    link = web_link(url)
    if link is None:
        return f'<span class="tool__title">{escape(url)}</span>'
    return sanitize_sources(f'<a class="tool__link" href="{escape(link)}">{escape(link)}</a>')


def _name_of(result: ServerResult | None) -> str:
    if result is None:
        return ""
    return result.type.removesuffix("_tool_result")


def _input_field(partial_json: str, key: str) -> str:
    """A string field of an input that may still be arriving: what there is of it so far."""
    found = re.search(rf'"{key}"\s*:\s*"((?:[^"\\]|\\.)*)(\\?)', partial_json)
    if found is None:
        return ""
    try:
        value = json.loads(f'"{found.group(1)}"')
    except ValueError:  # an escape cut in half (\u00e)
        value = found.group(1).rsplit("\\", 1)[0]
    return str(value)


def _state(call: ToolCall, ended: bool) -> tuple[str, str]:
    """The block's state (a class) and what its head says about it."""
    if call.closed:
        took = _duration(call.ms)
        return ("error", f"Failed · {took}") if call.is_error else ("done", took)
    if ended:
        return "error", "Did not finish"
    if call.input_done:
        return "running", "Running…"
    return "writing", "Preparing…"


def _duration(ms: int) -> str:
    if ms < 1:
        return "<1 ms"
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
