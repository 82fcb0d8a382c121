"""An answer's thinking: a collapsed "Thinking…" section, open while the model thinks.

Thinking is shown as the model wrote it, as escaped text; it is appended while it streams and
never rendered again, so its cost grows with its length only.
"""

from __future__ import annotations

from .text import render_text


def thinking_id(message_id: int) -> str:
    return f"m-{message_id}-thinking"


def thinking_text_id(message_id: int) -> str:
    """The element that holds the thinking text, appended to while it streams."""
    return f"m-{message_id}-thinking-text"


def thinking_section(
    message_id: int, text: str, *, thinking_now: bool = False, oob: bool = False
) -> str:
    """The section's HTML; hidden without thinking, open while the model is still thinking."""
    attributes = [f'class="thinking" id="{thinking_id(message_id)}"']
    if oob:
        attributes.append('hx-swap-oob="true"')
    if not text:
        attributes.append("hidden")
    if thinking_now:
        attributes.append("open")
    body = render_text(text)
    return (
        f"<details {' '.join(attributes)}><summary>Thinking…</summary>"
        f'<div class="thinking__text" id="{thinking_text_id(message_id)}">{body}</div></details>'
    )
