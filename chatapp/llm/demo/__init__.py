"""The demo upstream: a loopback server that speaks the Anthropic Messages API.

The official SDK talks to it through `base_url`, so it serves three purposes:

- demo mode (no API key): each gevent worker starts one in its own hub, and the replies are
  canned markdown that mentions the prompt and says plainly it is not from Claude (`replies`);
- the test double: `push(Scenario(...))` scripts the next reply, including faults
  (`scenario`), and `requests` / `counted` / `disconnects` record what the client did;
- the paced upstream for benchmarks (`python -m chatapp.llm.demo --port 9100`, `__main__`).

`upstream` is the emulator of the API itself, `wire` its wire format, `listing` its Models API
and the requests a listed model rejects.
"""

from __future__ import annotations

from .listing import DEMO_MODELS
from .scenario import (
    Cited,
    FetchedPage,
    Found,
    Pace,
    Scenario,
    SearchResults,
    ServerToolUse,
    ToolUse,
    page_citation,
)
from .upstream import FakeUpstream

__all__ = [
    "DEMO_MODELS",
    "Cited",
    "FakeUpstream",
    "FetchedPage",
    "Found",
    "Pace",
    "Scenario",
    "SearchResults",
    "ServerToolUse",
    "ToolUse",
    "page_citation",
]
