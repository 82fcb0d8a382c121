"""An answer's thinking: a collapsed "Thinking…" section, open while the model thinks.

Thinking is shown as the model wrote it, as escaped text; it is appended while it streams and
never rendered again, so its cost grows with its length only.
"""

from __future__ import annotations

from . import anchors
from .text import render_text


def thinking_section(
    message_id: int, text: str, *, thinking_now: bool = False, oob: bool = False
) -> str:
    """The section's HTML; hidden without thinking, open while the model is still thinking."""
    attributes = [f'class="thinking" id="{anchors.thinking(message_id)}"']
    if oob:
        attributes.append('hx-swap-oob="true"')
    if not text:
        attributes.append("hidden")
    if thinking_now:
        attributes.append("open")
    body = render_text(text)
    text_id = anchors.thinking_text(message_id)
    return (
        f"<details {' '.join(attributes)}><summary>Thinking…</summary>"
        f'<div class="thinking__text" id="{text_id}">{body}</div></details>'
    )
