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
from typing import Any, cast

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
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
_HTML = cast(RendererHTML, parser.renderer)


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


# What the page adds around the model's words, citation markers, the list of sources and the
# results of a web search, is built from what the API sent (page titles, addresses, document
# names): as untrusted as the words themselves, it is escaped where it is built and then goes
# through the same cleaner, which here also lets through the ids that markers link to.
_SOURCE_TAGS = _TAGS | {"sup"}
_SOURCE_ATTRIBUTES = {
    **_ATTRIBUTES,
    "sup": {"class"},
    "p": {"class"},
    "div": {"class", "id"},
    "ol": {"class", "id"},
    "ul": {"class"},
    "li": {"class", "id"},
}


def sanitize_sources(html: str) -> str:
    """`sanitize` for citation markers, sources and search results: ids allowed, and links
    only to the web (http and https) or within the page."""
    return nh3.clean(
        html,
        tags=_SOURCE_TAGS,
        attributes=_SOURCE_ATTRIBUTES,
        url_schemes={"http", "https"},
        link_rel=LINK_REL,
        strip_comments=True,
    )


# A one-line paragraph of plain prose: it starts with a letter and holds no character that
# markdown gives a meaning to (nor "&", "<", ">", which HTML escapes, nor control characters
# or spaces other than " ", which trimming treats apart).
_PLAIN_LINE = re.compile(
    r"[^\W\d_][^*_`\[\]<>&!\\~|#\x00-\x1f\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f\u3000]*"
)


# Inline text that a later character could still give a meaning to: an unmatched emphasis or
# strikethrough delimiter, bracket or backtick run. No settled point can lie after it. (An
# entity, autolink or escape cannot reach across the space a settled point lies at.)
_OPEN_ENDED = re.compile(r"[*_~`\[\]]")


def inline(text: str) -> tuple[str, int]:
    """A paragraph's inline content (or the rest of it, after a settled point) as HTML, not yet
    sanitized; and the length of its settled start: a prefix whose HTML nothing written after
    it can change (0 if there is none).

    The settled point lies inside the last run of plain text, at a space after a non-space,
    when every delimiter before it is matched: the HTML of the text is then the HTML of the
    part before the point followed by that of the part from it.
    """
    tokens = parser.parseInline(text, {})
    html = parser.renderer.render(tokens, parser.options, {})
    children = tokens[0].children or []
    if not children or any(
        child.type in ("text", "text_special") and _OPEN_ENDED.search(child.content)
        for child in children
    ):
        return html, 0
    last = children[-1]
    if last.type != "text" or last.level != 0 or not text.endswith(last.content):
        return html, 0
    space = last.content.rfind(" ")
    if space <= 0 or last.content[space - 1] == " ":
        return html, 0
    return html, len(text) - len(last.content) + space


class Rerenderer:
    """Renders a block being written, again on every frame, parsing again only what changed.

    Each time, the block structure is parsed again (that is cheap); the HTML of every run of
    inline text that the last time also had (finished list items, table cells, paragraphs) is
    reused, and the one run that grows is rendered from its settled point on.
    """

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}
        self._settled = ""
        self._settled_html = ""

    def render(self, text: str) -> str:
        plain = _plain_paragraph(text)
        if plain is not None:
            return plain
        if "\x00" in text:
            return render(text)  # markdown-it's own normalizing applies
        tokens: list[Token] = []
        env: dict[str, Any] = {}
        parser.block.parse(text, parser, env, tokens)
        growing = max((i for i, t in enumerate(tokens) if t.type == "inline"), default=-1)
        renderer, options = _HTML, parser.options
        memo: dict[str, str] = {}
        out = []
        for i, token in enumerate(tokens):
            if token.type == "inline":
                html = self._memo.get(token.content)
                if html is None:
                    html = self._grow(token.content) if i == growing else inline(token.content)[0]
                memo[token.content] = html
                out.append(html)
            elif token.type in renderer.rules:
                out.append(renderer.rules[token.type](tokens, i, options, env))
            else:
                out.append(renderer.renderToken(tokens, i, options, env))
        self._memo = memo
        return sanitize("".join(out))

    def _grow(self, content: str) -> str:
        if not content.startswith(self._settled):
            self._settled = self._settled_html = ""
        rest = content[len(self._settled) :]
        html, settled = inline(rest)
        shown = self._settled_html + html
        if settled:
            # From the settled point on, the text is the end of a plain text token: its HTML
            # is its escaped self, at the end of `html`, and the rest is the settled part's.
            self._settled += rest[:settled]
            self._settled_html += html[: -len(escapeHtml(rest[settled:]))]
        return shown


def render(text: str) -> str:
    """Markdown source (one or more whole blocks) as safe HTML."""
    plain = _plain_paragraph(text)
    return plain if plain is not None else sanitize(parser.render(text))


def _plain_paragraph(text: str) -> str | None:
    """What markdown-it and nh3 make of a line of plain prose (the common tail of an answer),
    without parsing it; None for anything else."""
    return f"<p>{text.rstrip(' ')}</p>\n" if _PLAIN_LINE.fullmatch(text) else None


@dataclass(frozen=True)
class Block:
    """A top-level block of a parse: where it starts (a line number) and, for a fence, how."""

    line: int
    end: int  # the line after it
    fence: str = ""  # the opening fence of fenced code ("```", "~~~~"), else ""
    language: str = ""
    closed: bool = True


def blocks(text: str) -> list[Block]:
    """The top-level blocks of `text`, in order."""
    found = []
    lines: list[str] | None = None
    tokens: list[Token] = []
    parser.block.parse(text.replace("\x00", "\ufffd"), parser, {}, tokens)  # no inline parse
    for token in tokens:
        if token.level != 0 or token.nesting < 0 or token.map is None:
            continue
        if token.type != "fence":
            found.append(Block(token.map[0], token.map[1]))
            continue
        if lines is None:
            lines = text.split("\n")
        start, end = token.map
        closed = end - 1 > start and end - 1 < len(lines) and _closes(lines[end - 1], token.markup)
        found.append(Block(start, end, token.markup, code.language_of(token.info), closed))
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
