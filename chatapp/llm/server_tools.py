"""Anthropic's server tools: web search and web fetch, run by Anthropic inside the answer.

A request names them in its `tools`; Claude calls them in the same streamed answer, Anthropic
runs them, and their results (and the citations of the text that uses them) stream back with
the answer (see `chatapp.llm.reply`). Nothing here runs them.

Each conversation switches them on in its settings, where the model supports them: the Models
API says so of web search (`capabilities.server_tools.web_search`) and has no flag of its own
for web fetch, which came to the same models, so web fetch is offered where web search is.
CHATAPP_SERVER_TOOLS lets an admin turn either off for everyone (an organisation may have them
disabled at Anthropic), and the other CHATAPP_WEB_* settings shape the definitions sent.

The tool versions are `web_search_20250305` and `web_fetch_20250910`: neither needs a beta
header, and every model that supports web search takes them. The newer versions (20260209 and
later) add dynamic filtering, in which Claude runs code on the results; the API documents them
for some models only, and the Models API does not say which, so they are a setting
(CHATAPP_WEB_SEARCH_TOOL, CHATAPP_WEB_FETCH_TOOL) rather than the default. The code execution
blocks they bring are kept and shown like any server tool's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .catalogue import Model

SEARCH, FETCH = "web_search", "web_fetch"
NAMES = (SEARCH, FETCH)
TITLES = {SEARCH: "Web search", FETCH: "Web fetch"}
SEARCH_VERSION = "web_search_20250305"
FETCH_VERSION = "web_fetch_20250910"
# Server tools the newer web tool versions call by themselves (dynamic filtering).
_CODE_EXECUTION = ("code_execution", "bash_code_execution", "text_editor_code_execution")
_LOCATION_FIELDS = ("city", "region", "country", "timezone")


def allowed(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The server tools this installation lets conversations use (CHATAPP_SERVER_TOOLS)."""
    return tuple(config.get("SERVER_TOOLS") or ())


def offered(model: Model | None, config: Mapping[str, Any]) -> tuple[str, ...]:
    """The server tools a person may switch on with `model`: those allowed here, if the model
    supports web search (and so web fetch, see above); none for a model the list does not
    know."""
    if model is None or not model.web_search:
        return ()
    return allowed(config)


def fit(
    chosen: Iterable[str], model: Model | None, config: Mapping[str, Any]
) -> tuple[tuple[str, ...], list[str]]:
    """The chosen server tools `model` can use here, in order, and a sentence for each it
    cannot."""
    can = offered(model, config)
    wanted = [name for name in NAMES if name in set(chosen)]
    notes = []
    for name in wanted:
        if name in can:
            continue
        if name not in allowed(config):
            notes.append(f"{TITLES[name]} is switched off on this server, so it stays off.")
        else:
            who = model.display_name if model else "This model"
            notes.append(f"{who} cannot use {TITLES[name]}, so it is off.")
    return tuple(name for name in wanted if name in can), notes


def definitions(
    names: Iterable[str], model: Model | None, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The Messages API `tools` entries for the server tools of `names` that `model` can use
    here (built from what it takes now, whatever the conversation once chose)."""
    chosen = set(names)
    found = []
    for name in offered(model, config):
        if name not in chosen:
            continue
        tool: dict[str, Any] = {
            "type": str(config.get("WEB_SEARCH_TOOL" if name == SEARCH else "WEB_FETCH_TOOL")),
            "name": name,
        }
        if config.get("WEB_ALLOWED_DOMAINS"):
            tool["allowed_domains"] = list(config["WEB_ALLOWED_DOMAINS"])
        elif config.get("WEB_BLOCKED_DOMAINS"):
            tool["blocked_domains"] = list(config["WEB_BLOCKED_DOMAINS"])
        most = config.get("WEB_SEARCH_MAX_USES" if name == SEARCH else "WEB_FETCH_MAX_USES")
        if most:
            tool["max_uses"] = int(most)
        if name == SEARCH and config.get("WEB_SEARCH_USER_LOCATION"):
            tool["user_location"] = {"type": "approximate", **config["WEB_SEARCH_USER_LOCATION"]}
        if name == FETCH:
            tool["citations"] = {"enabled": True}  # fetched pages can be cited like search results
            if config.get("WEB_FETCH_MAX_CONTENT_TOKENS"):
                tool["max_content_tokens"] = int(config["WEB_FETCH_MAX_CONTENT_TOKENS"])
        found.append(tool)
    return found


def covered(tools: Iterable[Mapping[str, Any]]) -> set[str]:
    """The server tools whose calls a request with these `tools` may carry in its history:
    the ones it names, and code execution when a web tool version that runs code is among
    them."""
    names = set()
    for tool in tools:
        kind = str(tool.get("type") or "")
        if not kind.startswith((SEARCH, FETCH)):
            continue
        names.add(str(tool.get("name")))
        if kind not in (SEARCH_VERSION, FETCH_VERSION):
            names.update(_CODE_EXECUTION)
    return names


def normalise(config: dict[str, Any]) -> None:
    """Give the CHATAPP_SERVER_TOOLS and CHATAPP_WEB_* settings their final shape, or say in a
    sentence what is wrong with them (at start, not at the first answer)."""
    raw = config.get("SERVER_TOOLS")
    if raw is True:
        names: list[str] = list(NAMES)
    elif raw in (False, None, "", "false", "0", "off", "none"):
        names = []
    else:
        names = _list(raw, "SERVER_TOOLS")
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise ValueError(
            f"CHATAPP_SERVER_TOOLS names {unknown[0]!r}; it takes true, false, or a list of "
            f"{', '.join(NAMES)}."
        )
    config["SERVER_TOOLS"] = tuple(name for name in NAMES if name in names)
    for key in ("WEB_ALLOWED_DOMAINS", "WEB_BLOCKED_DOMAINS"):
        config[key] = _list(config.get(key), key)
    if config["WEB_ALLOWED_DOMAINS"] and config["WEB_BLOCKED_DOMAINS"]:
        raise ValueError(
            "Set CHATAPP_WEB_ALLOWED_DOMAINS or CHATAPP_WEB_BLOCKED_DOMAINS, not both: "
            "the API takes one or the other."
        )
    for key in ("WEB_SEARCH_MAX_USES", "WEB_FETCH_MAX_USES", "WEB_FETCH_MAX_CONTENT_TOKENS"):
        value = config.get(key)
        if value in (None, "", 0):
            config[key] = None
        elif not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"CHATAPP_{key} must be a whole number above 0 (or empty: none).")
    for key, prefix in (("WEB_SEARCH_TOOL", SEARCH), ("WEB_FETCH_TOOL", FETCH)):
        if not str(config.get(key) or "").startswith(prefix + "_"):
            raise ValueError(f"CHATAPP_{key} must be a {prefix} tool version, like {prefix}_…")
    config["WEB_SEARCH_USER_LOCATION"] = _location(config.get("WEB_SEARCH_USER_LOCATION"))


def _list(raw: Any, key: str) -> list[str]:
    """A comma list or a JSON list of names."""
    if raw in (None, ""):
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.lstrip().startswith("[") else raw.split(",")
        except ValueError:
            raise ValueError(f"CHATAPP_{key} is not a valid JSON list.") from None
    if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
        raise ValueError(f"CHATAPP_{key} must be a comma list or a JSON list of names.")
    return [item.strip() for item in raw if item.strip()]


def _location(raw: Any) -> dict[str, str] | None:
    """The user's approximate location for search, or None (then none is sent)."""
    if raw in (None, "", {}):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            'CHATAPP_WEB_SEARCH_USER_LOCATION must be a JSON object such as {"city": "London", '
            '"country": "GB", "timezone": "Europe/London"}.'
        )
    unknown = [key for key in raw if key not in _LOCATION_FIELDS]
    if unknown or not all(isinstance(value, str) and value for value in raw.values()):
        raise ValueError(
            "CHATAPP_WEB_SEARCH_USER_LOCATION takes city, region, country (two letters) and "
            "timezone (an IANA name), each as text."
        )
    return {key: raw[key] for key in _LOCATION_FIELDS if key in raw}
