"""A tool call as a compact block in the answer: the tool's name, its input, its result and
how long it took. It streams in place: the page replaces the block as its record grows."""

from __future__ import annotations

from ..tools.record import ToolCall, parse
from .text import render_text


def tool_id(message_id: int, index: int) -> str:
    """The block of the answer's `index`th tool call (counting from 0)."""
    return f"m-{message_id}-tool-{index}"


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
        f'<div class="tool tool--{state}" id="{tool_id(message_id, index)}"{swap}>',
        f'<div class="tool__head"><span class="tool__name">{name}</span>'
        f'<span class="tool__status">{status}</span></div>',
        f'<pre class="tool__input">{render_text(call.input)}</pre>',
    ]
    if call.closed:
        parts.append(f'<pre class="tool__result">{render_text(call.result)}</pre>')
    parts.append("</div>")
    return "".join(parts)


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
