"""Tools Claude can call while it answers: the registry, and running a tool safely.

A tool is a plain function from its input (a dict) to a text result. It runs inside the
answer's greenlet, so pressing Stop kills it there; a timeout stops one that waits too long.
Built-ins (`builtin.py`) register first; modules named in config register more when imported.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
from flask import Flask

log = logging.getLogger(__name__)

RESULT_LIMIT = 8000  # characters of a result kept; longer results are cut, saying so


@dataclass(frozen=True)
class ToolContext:
    """Who is asking: a tool sees only this person's data, through a short app context."""

    app: Flask
    user_id: int | None  # None only for a conversation from before accounts
    conversation_id: int | None = None  # the conversation asking


class ToolError(Exception):
    """A tool's failure, in a sentence the model and the reader can act on."""


@dataclass(frozen=True)
class Tool:
    """A tool as the model sees it (name, description, input schema) and the code it runs."""

    name: str  # the API name, e.g. "calculator"
    title: str  # shown in the settings, e.g. "Calculator"
    description: str  # for the model
    input_schema: dict[str, Any]  # JSON schema of an object
    run: Callable[[dict[str, Any], ToolContext], str]
    timeout: float = 10.0  # seconds


@dataclass(frozen=True)
class Outcome:
    """What running a tool gave: its result (or what went wrong) and how long it took."""

    result: str
    is_error: bool
    ms: int


_registry: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    """Add the tool, or replace the one of the same name in its place; return it."""
    _registry[tool.name] = tool
    return tool


def unregister(name: str) -> None:
    """Remove the tool of this name, if there is one."""
    _registry.pop(name, None)


def registered() -> dict[str, Tool]:
    """Every tool by name, in the order they were registered (built-ins first)."""
    return dict(_registry)


def load(modules: Iterable[str]) -> None:
    """Import each module (a dotted name); importing one registers its tools."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise ImportError(
                f"Could not import the tool module {module!r}: {type(exc).__name__}: {exc}"
            ) from exc


def definitions(names: Iterable[str]) -> list[dict[str, Any]]:
    """The Messages API `tools` for those of `names` that are registered, in registry order."""
    wanted = set(names)
    return [
        {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
        for tool in _registry.values()
        if tool.name in wanted
    ]


def run(name: str, tool_input: Any, context: ToolContext) -> Outcome:
    """Run a tool and say how it went. Any failure becomes an error outcome; only a kill of
    the greenlet (GreenletExit, as Stop sends) goes through."""
    started = time.monotonic()
    result, is_error = _attempt(name, tool_input, context)
    ms = round((time.monotonic() - started) * 1000)
    return Outcome(_cut(result), is_error, ms)


def _attempt(name: str, tool_input: Any, context: ToolContext) -> tuple[str, bool]:
    tool = _registry.get(name)
    if tool is None:
        return f"There is no tool named {name}.", True
    if not isinstance(tool_input, dict):
        return f"The input of {name} must be a JSON object.", True
    timeout = gevent.Timeout(tool.timeout)
    timeout.start()
    try:
        result = tool.run(tool_input, context)
        if not isinstance(result, str):
            # Tools from other modules are not type-checked with ours.
            raise TypeError(f"it returned {type(result).__name__}, not text")
        return result, False
    except ToolError as exc:
        return str(exc), True
    except gevent.Timeout as exc:
        if exc is not timeout:
            raise  # someone else's deadline: theirs to handle
        return f"{name} took longer than {tool.timeout:g} s and was stopped.", True
    except Exception as exc:
        log.exception("tool %s failed", name)
        return f"{name} failed: {type(exc).__name__}: {exc}", True
    finally:
        timeout.close()


def _cut(result: str) -> str:
    if len(result) <= RESULT_LIMIT:
        return result
    return (
        result[:RESULT_LIMIT]
        + f"\n[Cut: the result was {len(result):,} characters; only the first "
        + f"{RESULT_LIMIT:,} are kept.]"
    )


def _register_builtins() -> None:
    # Imported here, once everything above exists, because builtin.py imports from this module.
    load([f"{__name__}.builtin"])


_register_builtins()
