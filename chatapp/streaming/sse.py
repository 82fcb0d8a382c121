"""Server-sent events framing: the only place that knows the wire format."""

from __future__ import annotations

import re

_LINE_END = re.compile(r"\r\n|\r|\n")


def event(
    data: str, *, name: str | None = None, id: str | None = None, retry: int | None = None
) -> str:
    """Frame one event: one `data:` line per line of `data`, then a blank line."""
    lines = []
    if name:
        lines.append(f"event: {name}")
    if id is not None:
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    # Only CR, LF and CRLF end a line in SSE (str.splitlines would also split on U+2028 etc.).
    for line in _LINE_END.split(data):
        lines.append(f"data: {line}")
    return "\n".join(lines) + "\n\n"


def comment(text: str = "") -> str:
    """A comment line: keeps proxies from closing an idle stream, ignored by EventSource."""
    return f": {text}\n\n"


def retry(milliseconds: int, *, id: str | None = None) -> str:
    """Tell the browser how long to wait before reconnecting, and (with `id`) where it stands.

    The `id` settles the browser's last event id at the start of each connection, so a half
    event left over from a dropped one can never move it.
    """
    return (f"id: {id}\n" if id is not None else "") + f"retry: {milliseconds}\n\n"


def event_id(message_id: int, offset: int) -> str:
    """The `id:` of a frame: which message, and how many characters of it the listener has."""
    return f"{message_id}:{offset}"


def parse_event_id(value: str | None, message_id: int) -> int | None:
    """The character offset in a `Last-Event-ID` for `message_id`; None if it is not ours."""
    if not value:
        return None
    owner, _, offset = value.strip().partition(":")
    if owner != str(message_id) or not offset.isdigit():
        return None
    return int(offset)
