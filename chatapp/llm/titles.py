"""A conversation's title, named by a small model after its first answer."""

from __future__ import annotations

from typing import Any

import anthropic

INSTRUCTION = (
    "You name conversations. Reply with a title of at most six words for the conversation "
    "below: no quotes, no punctuation at the end, nothing else."
)
MAX_TOKENS = 24  # a title, not an answer
LONGEST = 60


def suggest(
    client: anthropic.Anthropic, model: str, question: str, answer: str
) -> tuple[str | None, Any]:
    """A short title for a conversation that starts with `question` and `answer` (or None),
    and the request's usage: it is billed whether or not its reply makes a title."""
    response = client.messages.create(
        model=model,
        max_tokens=MAX_TOKENS,
        system=INSTRUCTION,
        messages=[
            {
                "role": "user",
                "content": f"Question:\n{question[:2000]}\n\nStart of the answer:\n{answer[:1000]}",
            }
        ],
    )
    text = "".join(block.text for block in response.content if block.type == "text")
    return cleaned(text), response.usage


def cleaned(text: str) -> str | None:
    """The model's reply as a title: one line, without quotes or markdown, not too long."""
    line = next((part for part in text.splitlines() if part.strip()), "")
    line = " ".join(line.strip().strip("#*_`\"'“”‘’").split()).rstrip(".:;")
    if not line:
        return None
    return line if len(line) <= LONGEST else line[: LONGEST - 1].rstrip() + "…"
