"""Model output to safe HTML.

Model output is untrusted: here it is escaped, never turned into markup. Carriage returns are
written as character references because an HTML parser would otherwise turn them into line
feeds, and the page must show exactly the stored text.
"""

from __future__ import annotations

from markupsafe import Markup, escape


def render_text(text: str) -> Markup:
    """The answer text as HTML text (shown with `white-space: pre-wrap`)."""
    return Markup(str(escape(text)).replace("\r", "&#13;"))


def content_dom_id(message_id: int) -> str:
    """The id of the element that holds a message's rendered text."""
    return f"m-{message_id}-content"


def append_fragment(message_id: int, text: str) -> str:
    """An out-of-band swap that appends `text` to a message's rendered text."""
    return f'<span hx-swap-oob="beforeend:#{content_dom_id(message_id)}">{render_text(text)}</span>'
