"""What answers cost, from the tokens the API reported and a price table.

Prices are US dollars per million tokens, per model: input, output, cache writes and cache
reads. CHATAPP_PRICES replaces the table (JSON: {"model": [input, output, cache_write,
cache_read], ...}); a model missing from it shows its tokens but no cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal


class Usage(Protocol):
    """What an answer reports about its tokens (a Message or a MessageState)."""

    @property
    def model(self) -> str | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cache_read_tokens(self) -> int | None: ...
    @property
    def cache_creation_tokens(self) -> int | None: ...


def price_table(raw: Any) -> dict[str, Price]:
    """The configured table (a mapping or its JSON) as Prices."""
    table = json.loads(raw) if isinstance(raw, str) else raw
    return {
        model: Price(*(Decimal(str(value)) for value in values))
        for model, values in (table or {}).items()
    }


def cost(usage: Usage, prices: Mapping[str, Price]) -> Decimal | None:
    """What one answer cost; None without usage or without a price for its model."""
    if usage.input_tokens is None or usage.model is None:
        return None
    price = prices.get(usage.model)
    if price is None:
        return None
    total = (
        usage.input_tokens * price.input
        + (usage.output_tokens or 0) * price.output
        + (usage.cache_creation_tokens or 0) * price.cache_write
        + (usage.cache_read_tokens or 0) * price.cache_read
    )
    return total / MILLION


def total_cost(usages: Iterable[Usage], prices: Mapping[str, Price]) -> Decimal | None:
    """What a conversation cost so far; None when no answer has a known cost."""
    known = [c for c in (cost(u, prices) for u in usages) if c is not None]
    return sum(known, Decimal(0)) if known else None


def dollars(amount: Decimal | None) -> str:
    """$0.0042 for small amounts, $1.27 for larger ones; "" for an unknown one."""
    if amount is None:
        return ""
    if 0 < amount < Decimal("0.0001"):
        return "<$0.0001"
    if amount < Decimal("0.01"):
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def tokens_per_second(usage: Usage, ttft_ms: int | None, duration_ms: int | None) -> float | None:
    """Output tokens over the time they took to arrive (after the first)."""
    if not usage.output_tokens or ttft_ms is None or duration_ms is None:
        return None
    writing = (duration_ms - ttft_ms) / 1000
    return usage.output_tokens / writing if writing > 0.05 else None
