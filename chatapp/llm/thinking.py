"""Thinking and effort as each model takes them.

Models differ (see `Model`'s capabilities): the newest take only adaptive thinking, where Claude
decides how much to think, steered by an effort level (`thinking: {type: "adaptive"}` with
`output_config: {effort: ...}`), and some of them always think; older ones take a budget of
thinking tokens (`thinking: {type: "enabled", budget_tokens: N}`); some do not think at all.
A conversation keeps what its person chose; `fit` keeps what its model takes, and the request
is built only from that, so it never carries an option the model would reject.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .catalogue import Model

# Extended thinking's budget: the API's least, and a ceiling that, with MAX_TOKENS on top,
# keeps a slip of the finger cheap.
BUDGET_RANGE = (1024, 32_000)
DEFAULT_BUDGET = 4096


@dataclass(frozen=True)
class Thinking:
    """What a conversation asks for."""

    on: bool = False
    effort: str | None = None  # None: the model's default effort
    budget: int = DEFAULT_BUDGET  # tokens, for models that take a budget


def fit(asked: Thinking, model: Model | None) -> tuple[Thinking, list[str]]:
    """What of `asked` the model takes, and a sentence for each thing it does not.

    A model the list does not know is asked for no thinking and no effort (nothing it could
    reject).
    """
    name = model.display_name if model else "This model"
    notes: list[str] = []
    fitted = asked
    thinks = model is not None and model.thinks
    if model is not None and model.thinking_required:
        fitted = replace(fitted, on=True)  # the form says so; it has no switch to turn off
    if asked.on and not thinks:
        fitted = replace(fitted, on=False)
        notes.append(f"{name} does not think before answering, so thinking is off.")
    efforts = model.efforts if model is not None and model.adaptive_thinking else ()
    if asked.effort is not None and asked.effort not in efforts:
        fitted = replace(fitted, effort=None)
        if efforts:
            notes.append(
                f"{name} has no “{asked.effort}” effort; it uses its default effort instead."
            )
        elif thinks:
            notes.append(f"{name} takes a thinking budget, not an effort level.")
    return fitted, notes


def options(
    asked: Thinking, model: Model | None, *, max_tokens: int, adaptive_tokens: int
) -> dict[str, Any]:
    """The request's `thinking`, `output_config` and `max_tokens` for this model.

    `max_tokens` is the answer's own allowance. Thinking counts against `max_tokens`, so with
    a budget the answer keeps its allowance on top of it, and with adaptive thinking on top of
    `adaptive_tokens`. Never more than the model allows.
    """
    thinking, _notes = fit(asked, model)
    ceiling = model.max_tokens if model is not None and model.max_tokens else None
    request: dict[str, Any] = {}
    if thinking.on and model is not None and model.adaptive_thinking:
        request["thinking"] = {"type": "adaptive"}
        if thinking.effort:
            request["output_config"] = {"effort": thinking.effort}
        max_tokens += adaptive_tokens
    elif thinking.on and model is not None and model.budget_thinking:
        budget = thinking.budget
        if ceiling is not None:
            # The budget must stay below max_tokens, which must stay within the model's limit.
            budget = min(budget, max(ceiling - max_tokens, BUDGET_RANGE[0]))
        request["thinking"] = {"type": "enabled", "budget_tokens": budget}
        max_tokens += budget
    request["max_tokens"] = min(max_tokens, ceiling) if ceiling is not None else max_tokens
    return request
