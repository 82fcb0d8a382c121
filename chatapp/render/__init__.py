"""Message text to safe HTML.

A person's message is shown as they typed it (escaped text, `white-space: pre-wrap`); Claude's
answer is markdown, rendered block by block as it streams (`live`, `markdown`, `code`).
"""

from __future__ import annotations

from .live import is_kept, render_answer, render_streaming
from .text import render_text

__all__ = ["is_kept", "render_answer", "render_streaming", "render_text"]
