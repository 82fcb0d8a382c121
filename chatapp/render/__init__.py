"""Message text to safe HTML.

A person's message is shown as they typed it (escaped text, `white-space: pre-wrap`); Claude's
answer is markdown, rendered block by block as it streams (`live`, `markdown`, `code`).
"""

from __future__ import annotations

from markupsafe import Markup, escape

from .live import render_answer, render_streaming

__all__ = ["render_answer", "render_streaming", "render_text"]


def render_text(text: str) -> Markup:
    """Plain text as HTML text.

    Carriage returns are written as character references because an HTML parser would
    otherwise turn them into line feeds, and the page must show exactly the stored text.
    """
    return Markup(str(escape(text)).replace("\r", "&#13;"))
