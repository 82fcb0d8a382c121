"""The admins' view of what the team's answers cost: the token totals by person and model read
from the database, their cost by person and by model, and a bar chart of the cost by person,
drawn as SVG on the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import func, literal, select

from .. import costs
from ..extensions import db
from ..models import Conversation, Message, User

CHART_WIDTH = 480
BAR_HEIGHT = 22
LABEL_WIDTH = 120


@dataclass(frozen=True)
class UsageRow:
    """What one person's answers with one model used, all time."""

    username: str
    model: str | None
    answers: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    web_search_requests: int = 0


def usage_by_person_and_model() -> list[UsageRow]:
    """Token totals of every answer, by person and model (for the admins' usage page); the
    requests that named conversations count as tokens, not as answers."""
    rows = db.session.execute(
        select(
            User.username,
            Message.model,
            func.count(Message.id),
            func.coalesce(func.sum(Message.input_tokens), 0),
            func.coalesce(func.sum(Message.output_tokens), 0),
            func.coalesce(func.sum(Message.cache_read_tokens), 0),
            func.coalesce(func.sum(Message.cache_creation_tokens), 0),
            func.coalesce(func.sum(Message.web_search_requests), 0),
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(User, User.id == Conversation.user_id)
        .where(Message.role == "assistant")
        .where(Message.input_tokens.is_not(None))
        .group_by(User.username, Message.model)
    )
    namings = db.session.execute(
        select(
            User.username,
            Conversation.naming_model,
            literal(0),
            func.coalesce(func.sum(Conversation.naming_input_tokens), 0),
            func.coalesce(func.sum(Conversation.naming_output_tokens), 0),
            literal(0),
            literal(0),
            literal(0),
        )
        .join(User, User.id == Conversation.user_id)
        .where(Conversation.naming_input_tokens.is_not(None))
        .group_by(User.username, Conversation.naming_model)
    )
    found = [UsageRow(row[0], row[1], *(int(v or 0) for v in row[2:])) for row in [*rows, *namings]]
    return sorted(found, key=lambda row: (row.username, row.model or ""))


@dataclass
class Total:
    name: str
    answers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0
    web_searches: int = 0
    cost: Decimal | None = None
    unpriced: set[str] = field(default_factory=set)  # models without a price

    def add(self, row: UsageRow, cost: Decimal | None) -> None:
        self.answers += row.answers
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.cache_tokens += row.cache_read_tokens + row.cache_creation_tokens
        self.web_searches += row.web_search_requests
        if cost is None:
            self.unpriced.add(row.model or "?")
        else:
            self.cost = (self.cost or Decimal(0)) + cost


@dataclass(frozen=True)
class Bar:
    label: str
    value: str
    y: int
    width: float


def totals(
    rows: list[UsageRow],
    prices: dict[str, costs.Price],
    searches: Decimal = costs.SEARCH_PRICE,
) -> tuple[list[Total], list[Total], Total]:
    """Totals by person, by model, and over all (web searches priced at `searches` dollars per
    1,000)."""
    people: dict[str, Total] = {}
    models: dict[str, Total] = {}
    everyone = Total("Everyone")
    for row in rows:
        cost = costs.cost(row, prices, searches)
        for table, name in ((people, row.username), (models, row.model or "?")):
            table.setdefault(name, Total(name)).add(row, cost)
        everyone.add(row, cost)
    return list(people.values()), list(models.values()), everyone


def chart(people: list[Total]) -> tuple[list[Bar], int]:
    """Bars of each person's cost (longest first), and the chart's height."""
    ranked = sorted(people, key=lambda t: t.cost or Decimal(0), reverse=True)
    top = max((t.cost or Decimal(0) for t in ranked), default=Decimal(0))
    room = CHART_WIDTH - LABEL_WIDTH - 70
    bars = [
        Bar(
            label=total.name,
            value=costs.dollars(total.cost) or "no price",
            y=i * (BAR_HEIGHT + 6),
            width=float((total.cost or 0) / top * room) if top else 0.0,
        )
        for i, total in enumerate(ranked)
    ]
    return bars, max(len(bars), 1) * (BAR_HEIGHT + 6)
