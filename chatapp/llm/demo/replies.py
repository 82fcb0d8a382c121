"""What demo mode says: canned markdown that quotes the question and says plainly it is not
from Claude, calls of the switched-on tools that fit the question, made-up web searches and
fetches (on example.com pages) with cited answers, a refusal when asked for one, and titles
for conversations."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import titles
from . import wire
from .scenario import Block, Cited, FetchedPage, Found, SearchResults, ServerToolUse, ToolUse


@dataclass(frozen=True)
class Said:
    """A reply's words, and why it stops when the words alone do not say (None: its end)."""

    text: str
    tool_uses: list[ToolUse] = field(default_factory=list)
    stop_details: dict[str, Any] | None = None
    stop_reason: str | None = None
    blocks: list[Block] = field(default_factory=list)  # content blocks after the text


def answer(body: dict[str, Any]) -> Said:
    """Demo mode's reply to a request."""
    if body.get("system") == titles.INSTRUCTION:
        # Naming a conversation (chatapp/llm/titles.py): the question's first words.
        question = wire.last_user_text(body).removeprefix("Question:\n").split("\n\n")[0]
        return Said(topic(question).rstrip("…"))
    if asks_for_refusal(body):
        return Said(REFUSAL_START, stop_details=REFUSAL, stop_reason="refusal")
    if wire.tool_results(body):
        return Said(after_tools(body))
    if calls := tool_calls(body):
        text, uses = calls
        return Said(text, uses)
    if web := web_tools(body):
        return web
    text, truncated = reply_for(body)
    received = wire.last_user_files(body)
    if received:
        # Say what came with the question, so a newcomer sees the files arrive.
        listed = "\n".join(f"- {file}" for file in received)
        count = f"{len(received)} file{'s' if len(received) > 1 else ''}"
        text = f"I received {count} with your question:\n\n{listed}\n\n" + text
    return Said(text, stop_reason="max_tokens" if truncated else None)


_ARITHMETIC = re.compile(r"[-+(]*\d[\d.\s]*(?:[-+*/^%]+[\s(]*\d[\d.\s)]*)+")
_ZONE = re.compile(r"\b[A-Z][a-z]+/[A-Z][A-Za-z_]+\b")


def tool_calls(body: dict[str, Any]) -> tuple[str, list[ToolUse]] | None:
    """In demo mode, calls of the switched-on tools that can answer the question, or None."""
    offered = wire.offered_tools(body)
    prompt = wire.last_user_text(body)
    words = prompt.lower()
    uses = []
    if "calculator" in offered and (found := _ARITHMETIC.search(prompt)):
        expression = found.group().strip().replace("^", "**")
        uses.append(ToolUse("calculator", {"expression": expression}))
    if "current_time" in offered and any(w in words for w in ("time", "date", "today")):
        zone = _ZONE.search(prompt)
        uses.append(ToolUse("current_time", {"timezone": zone.group() if zone else "UTC"}))
    if "search_conversations" in offered and any(w in words for w in ("search", "earlier")):
        query = re.split(r"\b(?:for|about)\b", prompt, maxsplit=1)[-1].strip(" ?.!\"'")
        uses.append(ToolUse("search_conversations", {"query": query or prompt}))
    if not uses:
        return None
    names = " and ".join(use.name.replace("_", " ") for use in uses)
    return f"Let me ask the {names} tool{'s' if len(uses) > 1 else ''}.", uses


_URL = re.compile(r"https?://[^\s<>\"'()\[\]]+")
WEB_FOOTER = (
    "\n\n_The demo server made these results up (example.com pages, no real search or "
    "fetch); this is not Claude._"
)


def web_tools(body: dict[str, Any]) -> Said | None:
    """In demo mode, a web fetch of an address in the question (with Web fetch on), else a web
    search (with Web search on), with a cited answer; None without them."""
    offered = wire.server_tools(body)
    prompt = wire.last_user_text(body)
    address = _URL.search(prompt)
    if "web_fetch" in offered and address:
        return Said("", blocks=demo_fetch(address.group().rstrip(".,;:!?")))
    if "web_search" in offered:
        return Said("", blocks=demo_search(prompt))
    return None


def demo_search(prompt: str) -> list[Block]:
    """A made-up search for the question, three example.com results, and an answer that
    cites them."""
    about = topic(prompt).rstrip("…")
    slug = re.sub(r"[^a-z0-9]+", "-", about.lower()).strip("-")[:40] or "question"
    found = [
        Found(
            f"{about}: an overview (demo page)",
            f"https://example.com/demo/{slug}",
            "2 days ago",
            f"An overview of {about}, written by the demo server.",
        ),
        Found(
            f"What changed lately in {about} (demo page)",
            f"https://example.com/demo/{slug}/news",
            "1 week ago",
        ),
        Found(
            f"Questions people ask about {about} (demo page)",
            f"https://docs.example.com/demo/{slug}/faq",
            "3 months ago",
        ),
    ]
    use = ServerToolUse("web_search", {"query": about})
    return [
        "Let me search the web for that.",
        use,
        SearchResults(use.id, found, seconds=0.8),
        "Here is what the search found. ",
        Cited(
            f"The overview page describes “{about}” in a few short paragraphs",
            [found[0].cite(f"An overview of {about}")],
        ),
        ", and ",
        Cited(
            "the news page lists what changed most recently",
            [found[1].cite("What changed lately")],
        ),
        ".\n\n- ",
        Cited(
            "Common questions have a page of their own",
            [found[2].cite("Questions people ask")],
        ),
        "\n- ",
        Cited(
            "Every one of these pages is a made-up example.com address",
            [found[0].cite("demo page"), found[2].cite("demo page")],
        ),
        WEB_FOOTER,
    ]


DEMO_PAGE = (
    "This page is a stand-in kept by chatapp's demo server. Addresses on example.com are "
    "reserved for examples, so nothing real is shown here. Nothing was fetched from the "
    "internet."
)


def demo_fetch(address: str) -> list[Block]:
    """A made-up fetch of `address`: an example.com page is read (and cited), any other
    address cannot be reached."""
    use = ServerToolUse("web_fetch", {"url": address})
    host = urlsplit(address).hostname or ""
    if host != "example.com" and not host.endswith(".example.com"):
        failed = FetchedPage(use.id, address, error="url_not_accessible", seconds=0.3)
        return [
            "Let me read that page.",
            use,
            failed,
            "I could not read it: the demo server reads only example.com pages." + WEB_FOOTER,
        ]
    page = FetchedPage(use.id, address, "A demo page on example.com", DEMO_PAGE, seconds=0.6)
    return [
        "Let me read that page.",
        use,
        page,
        "The page says that ",
        Cited(
            "it is a stand-in kept by the demo server, and that nothing was fetched",
            [page.cite("This page is a stand-in kept by chatapp's demo server.")],
        ),
        "." + WEB_FOOTER,
    ]


def after_tools(body: dict[str, Any]) -> str:
    """In demo mode, the reply once the tools have answered: what they said."""
    lines = ["Here is what the tools said:", ""]
    for result in wire.tool_results(body):
        said = wire.content_text(result.get("content")).strip() or "(nothing)"
        failed = " (it failed)" if result.get("is_error") else ""
        lines.append(f"- {said}{failed}")
    return "\n".join(lines) + FOOTER


def asks_for_refusal(body: dict[str, Any]) -> bool:
    """Demo mode refuses a question that asks it to, so a newcomer can see a refusal."""
    return re.search(r"\brefuse\b", wire.last_user_text(body), re.IGNORECASE) is not None


REFUSAL_START = "I can start on that, but "
REFUSAL = {
    "type": "refusal",
    "category": None,
    "explanation": "The demo server refuses any question with the word “refuse” in it.",
}


def topic(prompt: str, words: int = 6, limit: int = 60) -> str:
    """The first few words of the prompt, to quote in the reply."""
    full = " ".join(prompt.split())
    short = " ".join(full.split(" ")[:words])[:limit].rstrip()
    if not short:
        return "your question"
    return short if short == full else short + "…"


# -- demo replies -----------------------------------------------------------------------------


def reply_for(body: dict[str, Any]) -> tuple[str, bool]:
    """The demo reply for a request, cut to `max_tokens`; and whether it was cut."""
    prompt = wire.last_user_text(body)
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    template = REPLIES[digest[0] % len(REPLIES)]
    text = template.replace("{topic}", topic(prompt))
    limit = body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit * wire.CHARS_PER_TOKEN < len(text):
        return text[: limit * wire.CHARS_PER_TOKEN], True
    return text, False


def thinking_for(prompt: str) -> str:
    return (
        f"The user asks about “{topic(prompt)}”. This is the demo server, so I will give a "
        "structured overview: a short answer first, then steps, a small example and a caveat."
    )


FOOTER = "\n\n_This is a demo reply from the built-in demo server, not from Claude._"

REPLIES: tuple[str, ...] = (
    """## A quick overview

You asked about “{topic}”. Here is how I would approach it, in three steps:

1. **Pin down the goal.** Write one sentence that says what “done” looks like.
2. **Start small.** Get the simplest version working end to end before polishing anything.
3. **Measure, then improve.** Change one thing at a time and keep notes.

### A small example

```python
def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("no values")
    return sum(values) / len(values)
```

The guard clause matters: an empty list would otherwise raise `ZeroDivisionError`, which says \
little about the real problem.

**In short:** clarify, build the smallest thing that works, then iterate."""
    + FOOTER,
    """# Short answer: it depends — but usually yes

On “{topic}”, the honest answer is that the trade-offs decide. Things to weigh:

- **Simplicity** → fewer moving parts, fewer surprises at 3 a.m.
- **Performance** → matters only once you have measured a bottleneck.
- **Team familiarity** → the naïve solution your team understands beats the clever one nobody \
can maintain.

## How to check

Run this and compare the numbers before and after your change:

```bash
time ./run-benchmark --iterations 1000
```

> Premature optimisation is the root of much wasted effort.

If the difference is under ~5 %, keep the simpler version. 🙂"""
    + FOOTER,
    """## Step by step

Let's work through “{topic}” together.

### 1. Set up

Create a fresh environment so nothing leaks in from other projects:

```bash
python -m venv .venv && . .venv/bin/activate
```

### 2. Try the core idea

- Keep the first version under **50 lines**.
- Print intermediate values; don't guess.
- Write down every assumption you make.

### 3. Check the edge cases

Empty input, very large input, and input with unicode such as “café”, “Ünïcødé” or “東京”.

**Tip:** when something fails, reduce it to the smallest input that still fails — that input is \
usually the whole explanation."""
    + FOOTER,
    """# Checklist

Before you go further with “{topic}”, walk through this list:

- [ ] **Inputs** are validated at the edge, not deep inside.
- [ ] **Errors** say what happened *and* what to do next.
- [ ] **Logs** carry enough context to debug without a debugger.
- [ ] **Tests** cover the unhappy paths too.

## Example: a clear error

```javascript
if (!response.ok) {
  throw new Error(`Upload failed (${response.status}): try a smaller file`);
}
```

Compare that with a bare `throw new Error("failed")`: the first tells the reader what to do, \
the second tells them nothing.

**Rule of thumb:** if you would have to open the source to understand an error, rewrite the \
message."""
    + FOOTER,
    """## Thinking it through

“{topic}” is a good question, and a common one. A few points:

1. **Start from the data.** What do you actually have, and in what shape?
2. **Name things well.** `user_count` says more than `n`; `is_active` more than `flag`.
3. **Prefer boring tools.** A plain SQL query often beats a clever cache.

### For example

```sql
SELECT country, COUNT(*) AS users
FROM accounts
WHERE created_at >= DATE '2024-01-01'
GROUP BY country
ORDER BY users DESC
LIMIT 5;
```

This answers “where do new users come from?” in one readable statement — no ORM gymnastics \
needed. Mind the details: `COUNT(*)` counts rows, `COUNT(column)` skips `NULL`s."""
    + FOOTER,
    """# Pros and cons

Here is a balanced look at “{topic}”.

## Pros ✅

- **Fast to start** — you can have something running in minutes.
- **Easy to explain** to newcomers.
- Works well up to a few thousand users → which is most projects.

## Cons ⚠️

- Harder to change once other systems depend on it.
- The “obvious” default settings are rarely the right ones in production.

## A minimal config

```toml
[server]
workers = 2
timeout_seconds = 30
```

**My suggestion:** try it on a small, real task first; keep what works and drop the rest. \
Good luck! 🚀"""
    + FOOTER,
)
