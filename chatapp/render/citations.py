"""Citations in an answer: a small numbered marker right after the text a source supports, and
the list of sources under the answer, each marker linking to its entry there.

A citation is a record in the answer's text (see `chatapp.tools.record`). While the markdown
around it is rendered, the record is stood in for by one private-use character that encodes
its source's number (markdown sees an ordinary character there, so the paragraph stays one
paragraph); the rendered HTML then gets the marker in its place. Sources are numbered by their
first citation in the answer, so the list grows at its end as the answer streams.

Everything shown here comes from the API (page titles, addresses, document names) and is as
untrusted as the model's words: escaped where it is built, then cleaned like them
(`markdown.sanitize_sources`). Links go only to http and https addresses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape

from ..tools.record import MARKER_BASE
from . import anchors
from .markdown import sanitize_sources

MARKERS = re.compile("[\U000f0000-\U000ffffd]")


def marker_char(number: int) -> str:
    """The character that stands in for a citation of source `number` in the markdown."""
    return chr(MARKER_BASE + number)


def number_of(char: str) -> int:
    return ord(char) - MARKER_BASE


def web_link(url: Any) -> str | None:
    """`url` if it is an http or https address with a host, else None."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url.strip()


def site(url: str) -> str:
    """The host a link goes to, as a reader recognises it."""
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.")


def label(source: Mapping[str, Any]) -> str:
    """What a source is called, in plain text: a page's title (else its address), or a
    document's name with its pages."""
    title = _text(source.get("title"))
    pages = source.get("pages")
    if isinstance(pages, list) and len(pages) == 2 and all(isinstance(p, int) for p in pages):
        first, last = pages
        where = f"page {first}" if first == last else f"pages {first}–{last}"
        return f"{title or 'Document'}, {where}"
    return title or _text(source.get("url")) or "Source"


def marker(message_id: int, number: int, source: Mapping[str, Any] | None) -> str:
    """The marker of a citation of source `number`: its number, linking to its entry."""
    name = label(source or {})
    return sanitize_sources(
        f'<sup class="cite"><a class="cite__link" href="#{anchors.source(message_id, number)}"'
        f' title="{escape(name)}">{number}</a></sup>'
    )


def item(message_id: int, number: int, source: Mapping[str, Any]) -> str:
    """The entry of source `number` in the list: a page's title linking to it and its site,
    or a document's name and page."""
    link = web_link(source.get("url"))
    if link is not None:
        body = (
            f'<a class="source__link" href="{escape(link)}">{escape(label(source))}</a> '
            f'<span class="source__site">{escape(site(link))}</span>'
        )
    else:
        body = f'<span class="source__name">{escape(label(source))}</span>'
    return sanitize_sources(f'<li id="{anchors.source(message_id, number)}">{body}</li>')


def block(message_id: int, items: str) -> str:
    """The list of sources, with its (already built) entries."""
    return sanitize_sources(
        f'<div class="sources" id="{anchors.sources(message_id)}">'
        f'<p class="sources__title">Sources</p>'
        f'<ol class="sources__list" id="{anchors.sources_list(message_id)}">{items}</ol></div>'
    )


def footnote(label_id: str, source: Mapping[str, Any]) -> str:
    """A source as a markdown footnote definition (for exports)."""
    link = web_link(source.get("url"))
    name = " ".join(label(source).split())
    return f"[^{label_id}]: {name}" + (f", <{link}>" if link and link != name else "")


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""
