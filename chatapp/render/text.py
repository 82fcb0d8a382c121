"""Plain text as HTML text."""

from __future__ import annotations

from markupsafe import Markup, escape


def render_text(text: str) -> Markup:
    """Plain text as HTML text.

    Carriage returns are written as character references because an HTML parser would
    otherwise turn them into line feeds, and the page must show exactly the stored text.
    """
    return Markup(str(escape(text)).replace("\r", "&#13;"))
