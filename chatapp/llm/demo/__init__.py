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

import importlib
from typing import Any

# Where each name lives. They are imported on first use, not with the package: the command
# (`python -m chatapp.llm.demo`) must patch with gevent before anything imports `ssl`.
_HOMES = {
    "DEMO_MODELS": "listing",
    "Cited": "scenario",
    "FakeUpstream": "upstream",
    "FetchedPage": "scenario",
    "Found": "scenario",
    "Pace": "scenario",
    "Scenario": "scenario",
    "SearchResults": "scenario",
    "ServerToolUse": "scenario",
    "ToolUse": "scenario",
    "page_citation": "scenario",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
