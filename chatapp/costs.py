"""What answers cost, from the tokens the API reported and a price table.

Prices are US dollars per million tokens, per model: input, output, cache writes and cache
reads. CHATAPP_PRICES replaces the table (JSON: {"model": [input, output, cache_write,
cache_read], ...}). A model takes the price of the longest name in the table that its id
starts with (`claude-haiku-4-5` prices `claude-haiku-4-5-20251001`); a model with none shows
its tokens and "price unknown", never $0.00. Web searches are billed per search, on top:
CHATAPP_WEB_SEARCH_PRICE dollars per 1,000 (default 10).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

MILLION = Decimal(1_000_000)
THOUSAND = Decimal(1_000)
SEARCH_PRICE = Decimal(10)  # dollars per 1,000 web searches, as Anthropic bills them


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
    @property
    def web_search_requests(self) -> int | None: ...


def price_table(raw: Any) -> dict[str, Price]:
    """The configured table (a mapping or its JSON) as Prices."""
    table = json.loads(raw) if isinstance(raw, str) else raw
    return {
        model: Price(*(Decimal(str(value)) for value in values))
        for model, values in (table or {}).items()
    }


def search_price(raw: Any) -> Decimal:
    """The configured price of 1,000 web searches, in dollars."""
    price = Decimal(str(raw))
    if not price.is_finite() or price < 0:
        raise ValueError("CHATAPP_WEB_SEARCH_PRICE must be a number of dollars, 0 or more.")
    return price


def cost(
    usage: Usage, prices: Mapping[str, Price], searches: Decimal = SEARCH_PRICE
) -> Decimal | None:
    """What one answer cost, its web searches (at `searches` dollars per 1,000) included;
    None without usage or without a price for its model."""
    if usage.input_tokens is None or usage.model is None:
        return None
    price = price_of(usage.model, prices)
    if price is None:
        return None
    total = (
        usage.input_tokens * price.input
        + (usage.output_tokens or 0) * price.output
        + (usage.cache_creation_tokens or 0) * price.cache_write
        + (usage.cache_read_tokens or 0) * price.cache_read
    )
    return total / MILLION + (usage.web_search_requests or 0) * searches / THOUSAND


def price_of(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The model's price: its own, else that of the longest name its id starts with."""
    price = prices.get(model)
    if price is not None:
        return price
    names = [name for name in prices if model.startswith(name)]
    return prices[max(names, key=len)] if names else None


def unpriced(usages: Iterable[Usage], prices: Mapping[str, Price]) -> list[str]:
    """The models, among these usages, that used tokens but have no price."""
    return sorted(
        {
            u.model
            for u in usages
            if u.model is not None
            and u.input_tokens is not None
            and price_of(u.model, prices) is None
        }
    )


def total_cost(
    usages: Iterable[Usage], prices: Mapping[str, Price], searches: Decimal = SEARCH_PRICE
) -> Decimal | None:
    """What a conversation cost so far; None when no answer has a known cost."""
    known = [c for c in (cost(u, prices, searches) for u in usages) if c is not None]
    return sum(known, Decimal(0)) if known else None


def total_label(
    usages: Iterable[Usage], prices: Mapping[str, Price], searches: Decimal = SEARCH_PRICE
) -> str:
    """What a conversation cost, as its header says it: "$0.42", "$0.42 + price unknown" when
    some of its models have no price, "price unknown" when none has; "" before any usage."""
    usages = list(usages)
    total = dollars(total_cost(usages, prices, searches))
    if not unpriced(usages, prices):
        return total
    return f"{total} + price unknown" if total else "price unknown"


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
