"""The demo upstream's Models API: what it lists, and the requests a listed model rejects.

`GET /v1/models` lists `DEMO_MODELS` (or a test's own list) with their capabilities, and a
request to `/v1/messages` is held to what its model takes, with the API's own errors: a budget
of thinking tokens for a model that takes only adaptive thinking is a 400, a retired model a
404. Models the list does not name are taken as they come, as an Anthropic-compatible server
would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..catalogue import BUILT_IN, Model, model_info
from . import wire

# What demo mode's Models API lists: today's models, one of them deprecated, an older one that
# does not think and takes no PDFs, and a retired one (never offered).
DEMO_MODELS: tuple[dict[str, Any], ...] = (
    *(
        {**info, "lifecycle": "deprecated", "deprecated_at": "2026-10-20T00:00:00Z"}
        if info["id"] == "claude-opus-4-6"
        else info
        for info in BUILT_IN
    ),
    model_info(
        "claude-3-haiku-20240307",
        "Claude Haiku 3",
        "2024-03-07T00:00:00Z",
        lifecycle="deprecated",
        line="haiku",
        max_tokens=4096,
        pdfs=False,
        citations=False,
    ),
    model_info(
        "claude-3-7-sonnet-20250219",
        "Claude Sonnet 3.7",
        "2025-02-19T00:00:00Z",
        lifecycle="retired",
        line="sonnet",
        enabled=True,
    ),
)


Listing = Sequence[dict[str, Any]]


def find(models: Listing, model: Any) -> dict[str, Any] | None:
    """The listed model named `model`, if any."""
    return next((m for m in models if m["id"] == model), None)


def page(models: Listing, limit: int, after: str | None) -> dict[str, Any]:
    """One page of the listing, newest first, after the model `after` (as the API pages)."""
    listing = sorted(models, key=lambda m: m["created_at"], reverse=True)
    if after is not None:
        ids = [m["id"] for m in listing]
        listing = listing[ids.index(after) + 1 :] if after in ids else []
    shown = listing[: max(1, min(limit, 1000))]
    return {
        "data": shown,
        "has_more": len(listing) > len(shown),
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
    }


def rejection(models: Listing, body: dict[str, Any]) -> tuple[int, str, str] | None:
    """The API's error for a request its listed model does not take, as (status, type,
    message); None if it takes it."""
    model = body.get("model")
    info = find(models, model)
    if info is None:
        return None
    if info.get("lifecycle") == "retired":
        return 404, "not_found_error", f"model: {model}"
    abilities = Model.from_info(info)
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    max_tokens = body.get("max_tokens")
    most = abilities.max_tokens
    if most and isinstance(max_tokens, int) and max_tokens > most:
        return _invalid(
            f"max_tokens: {max_tokens} > {most}, which is the maximum allowed number of "
            f"output tokens for {model}"
        )
    if kind == "enabled" and not abilities.budget_thinking:
        return _invalid(
            '"thinking.type.enabled" is not supported for this model. Use '
            '"thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
        )
    if kind == "adaptive" and not abilities.adaptive_thinking:
        return _invalid('"thinking.type.adaptive" is not supported for this model.')
    if kind == "enabled" and isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024 or budget >= (max_tokens or 0):
            return _invalid(
                "thinking.budget_tokens: must be at least 1024 and less than max_tokens"
            )
    for number, tool in enumerate(body.get("tools") or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith("web_") and not abilities.web_search:
            return _invalid(f"tools.{number}: {kind!r} is not supported by {model}.")
    output = body.get("output_config")
    effort = output.get("effort") if isinstance(output, dict) else None
    if effort is not None and effort not in abilities.efforts:
        return _invalid(f"output_config.effort: {effort!r} is not supported for this model")
    window = abilities.max_input_tokens
    prompt = wire.estimate_input_tokens(body)
    if window and prompt > window:
        return _invalid(f"prompt is too long: {prompt} tokens > {window} maximum")
    return None


def room(models: Listing, body: dict[str, Any]) -> int | None:
    """Tokens left in the listed model's context window after the prompt, if it has one."""
    info = find(models, body.get("model"))
    window = info.get("max_input_tokens") if info else None
    if not isinstance(window, int):
        return None
    return max(window - wire.estimate_input_tokens(body), 0)


def _invalid(message: str) -> tuple[int, str, str]:
    return 400, "invalid_request_error", message
