"""What a person may send and set: a prompt, and a conversation's settings (model, system
prompt, tools, thinking), checked against the model's capabilities; each refusal a sentence for
the page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..llm import server_tools
from ..llm.catalogue import EFFORT_LEVELS, Catalogue
from ..llm.thinking import BUDGET_RANGE, DEFAULT_BUDGET, Thinking, fit


class PromptError(ValueError):
    """A prompt that cannot be sent; the message says why, for the page."""


def clean_prompt(text: str, *, limit: int) -> str:
    """The prompt to send, or PromptError saying what is wrong with it."""
    if not text.strip():
        raise PromptError("Type a message first.")
    if len(text) > limit:
        raise PromptError(
            f"That message is {len(text):,} characters long; the limit is {limit:,}. "
            "Shorten it and send again."
        )
    return text


class SettingsError(ValueError):
    """Settings that cannot be saved; the message says why, for the page."""


@dataclass(frozen=True)
class Settings:
    """How a conversation asks Claude: the model, system prompt, tools (its own and
    Anthropic's server tools) and thinking."""

    model: str
    system_prompt: str = ""
    tools: tuple[str, ...] = ()
    thinking: Thinking = Thinking()
    server_tools: tuple[str, ...] = ()


def clean_settings(
    *,
    model: str,
    system_prompt: str,
    tools: list[str],
    thinking: bool,
    thinking_budget: str,
    effort: str,
    catalogue: Catalogue,
    known_tools: list[str],
    max_system_prompt: int,
    server: list[str] | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[Settings, list[str]]:
    """Settings from a form, kept to what the model takes (and, of the server tools in
    `server`, what this installation's `config` allows), with a sentence for each thing it
    does not take; or SettingsError saying what is wrong with them."""
    chosen_model = catalogue.get(model)
    if chosen_model is None or chosen_model not in catalogue.offered():
        raise SettingsError(
            f"There is no model called {_quoted(model)} here; pick one from the list."
        )
    unknown = [name for name in tools if name not in known_tools]
    unknown += [name for name in server or [] if name not in server_tools.NAMES]
    if unknown:
        raise SettingsError(f"There is no tool called {_quoted(unknown[0])} here.")
    system_prompt = system_prompt.strip()
    if len(system_prompt) > max_system_prompt:
        raise SettingsError(
            f"The system prompt is {len(system_prompt):,} characters long; the limit is "
            f"{max_system_prompt:,}. Shorten it and try again."
        )
    low, high = BUDGET_RANGE
    try:
        if len(thinking_budget) > 20:
            raise ValueError(thinking_budget)
        budget = int(thinking_budget.strip() or DEFAULT_BUDGET)
    except ValueError:
        raise SettingsError("The thinking budget must be a whole number of tokens.") from None
    if not low <= budget <= high:
        raise SettingsError(f"The thinking budget must be between {low:,} and {high:,} tokens.")
    effort = effort.strip()
    if effort and effort not in EFFORT_LEVELS:
        raise SettingsError(
            f"There is no effort level called {_quoted(effort)}; pick one from the list."
        )
    asked = Thinking(on=thinking, effort=effort or None, budget=budget)
    fitted, notes = fit(asked, chosen_model)
    chosen = tuple(name for name in known_tools if name in tools)
    web, dropped = server_tools.fit(server or [], chosen_model, config or {})
    return Settings(model, system_prompt, chosen, fitted, web), notes + dropped


def _quoted(name: str, most: int = 60) -> str:
    """A name someone sent, quoted for a message, and cut should it be long."""
    return repr(name if len(name) <= most else name[: most - 1] + "…")
