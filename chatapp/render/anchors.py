"""The DOM ids of a message and its parts: the one place they are spelled.

Templates (as the Jinja global `anchors`), the renderers, the stream's out-of-band swaps and the
tests all name a message's elements through these functions, so a page, a frame and a test
can never disagree about where something is.
"""

from __future__ import annotations


def article(message_id: int) -> str:
    """The message's `<article>`."""
    return f"m-{message_id}"


def message_of(dom_id: str) -> int:
    """The message id of an article's DOM id (`m-12` is 12)."""
    return int(dom_id.removeprefix("m-"))


def content(message_id: int) -> str:
    """The element that holds the message's rendered text (`data-content`)."""
    return f"m-{message_id}-content"


def tail(message_id: int) -> str:
    """The block of a streaming answer being written, rendered again on each frame."""
    return f"m-{message_id}-tail"


def code(message_id: int) -> str:
    """The `<code>` of a code block still being written (its new lines are appended)."""
    return f"m-{message_id}-code"


def thinking(message_id: int) -> str:
    """The answer's Thinking section."""
    return f"m-{message_id}-thinking"


def thinking_text(message_id: int) -> str:
    """The element that holds the thinking text, appended to while it streams."""
    return f"m-{message_id}-thinking-text"


def tool(message_id: int, index: int) -> str:
    """The block of the answer's `index`-th tool call (client or server tool)."""
    return f"m-{message_id}-tool-{index}"


def sources(message_id: int) -> str:
    """The list of sources under a cited answer."""
    return f"m-{message_id}-sources"


def sources_list(message_id: int) -> str:
    """The `<ol>` of the sources, appended to as citations stream in."""
    return f"m-{message_id}-sources-list"


def source(message_id: int, number: int) -> str:
    """Source `number` in the list, which its markers link to."""
    return f"m-{message_id}-source-{number}"
