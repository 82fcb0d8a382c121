"""Markdown to safe HTML: CommonMark with tables and strikethrough, never live markup.

Model output is untrusted. Two layers keep it inert:
1. markdown-it with raw HTML off: any tag the model writes is shown as text. Links are kept only
   for http, https and mailto; images become links (loading them would tell the image's host who
   reads the answer, and when).
2. nh3 then cleans the HTML against a short list of tags and attributes, so no script, event
   handler, style, comment, or hx-*/sse-* attribute can survive, whatever layer 1 missed.

Reference-style link definitions are off: they would let a later block change an earlier one,
and the page renders finished blocks once, as they complete (see `live`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

from . import code

LINK_REL = "noopener noreferrer nofollow"
_ALLOWED_LINK = re.compile(r"(?:https?|mailto):", re.IGNORECASE)
_ALIGN = re.compile(r"text-align:\s*(left|center|right)")

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li",
    "em", "strong", "s", "del", "code", "pre", "a", "span", "div", "button",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "ol": {"start"},
    "span": {"class"},
    "div": {"class"},
    "pre": {"class"},
    "code": {"class"},
    "th": {"class"},
    "td": {"class"},
    "button": {"type", "class"},
}


def _allowed_link(url: str) -> bool:
    return bool(_ALLOWED_LINK.match(url))


def _render_fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    language = code.language_of(token.info)
    return code.frame(language, code.highlighted(token.content, language))


def _render_code_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return code.frame("", code.highlighted(tokens[idx].content, ""))


def _render_image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An image as a link to it: the reader decides whether to load it."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    href = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a class="image-link" href="{href}">Image: {escapeHtml(alt)}</a>'


def _cell(tag: str) -> Any:
    """Table cells align with a class: style attributes are not allowed through."""

    def render(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        match = _ALIGN.search(str(tokens[idx].attrGet("style") or ""))
        return f'<{tag} class="align-{match.group(1)}">' if match else f"<{tag}>"

    return render


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("reference")
    md.validateLink = _allowed_link  # type: ignore[method-assign]
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_code_block)
    md.add_render_rule("image", _render_image)
    md.add_render_rule("th_open", _cell("th"))
    md.add_render_rule("td_open", _cell("td"))
    return md


parser = _parser()


def sanitize(html: str) -> str:
    """The second layer: only our tags and attributes, only http(s) and mailto links."""
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render(text: str) -> str:
    """Markdown source (one or more whole blocks) as safe HTML."""
    return sanitize(parser.render(text))


@dataclass(frozen=True)
class Block:
    """A top-level block of a parse: where it starts (a line number) and, for a fence, how."""

    line: int
    fence: str = ""  # the opening fence of fenced code ("```", "~~~~"), else ""
    language: str = ""
    closed: bool = True


def blocks(text: str) -> list[Block]:
    """The top-level blocks of `text`, in order."""
    found = []
    lines: list[str] | None = None
    for token in parser.parse(text):
        if token.level != 0 or token.nesting < 0 or token.map is None:
            continue
        if token.type != "fence":
            found.append(Block(token.map[0]))
            continue
        if lines is None:
            lines = text.split("\n")
        start, end = token.map
        closed = end - 1 > start and end - 1 < len(lines) and _closes(lines[end - 1], token.markup)
        found.append(Block(start, token.markup, code.language_of(token.info), closed))
    return found


def _closes(line: str, fence: str) -> bool:
    """Whether `line` is a closing fence for `fence` (at most 3 spaces in, nothing after)."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return False
    run = len(stripped) - len(stripped.lstrip(fence[0]))
    return run >= len(fence) and not stripped[run:].strip(" \t")


def might_close(line: str, fence: str, *, complete: bool) -> bool:
    """Whether `line` could end a block fenced by `fence`; a partial line, once it is whole."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return False
    if complete:
        return stripped[:3] == fence[0] * 3
    return stripped[:3] == fence[0] * len(stripped[:3])
