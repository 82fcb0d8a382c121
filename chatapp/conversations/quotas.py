"""Optional limits per person: tokens or dollars a day, and answers a minute.

CHATAPP_DAILY_TOKEN_LIMIT (input, output and cache tokens of the day's answers, UTC),
CHATAPP_DAILY_COST_LIMIT (dollars, from CHATAPP_PRICES and CHATAPP_WEB_SEARCH_PRICE) and
CHATAPP_REQUESTS_PER_MINUTE (answers started); 0 turns each off. They are counted from the
database, so they hold across workers and hosts.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from .. import costs
from ..extensions import db
from ..models import Conversation, Message, User, utcnow
from .store import usages


class QuotaExceeded(Exception):
    """Over a limit; the message says which, and when it lifts, for the page."""


def check(user: User, config: dict[str, Any]) -> None:
    """Raise QuotaExceeded if `user` may not start another answer now."""
    now = utcnow()
    per_minute = int(config.get("REQUESTS_PER_MINUTE") or 0)
    if per_minute and _answers_since(user, now - timedelta(minutes=1)) >= per_minute:
        raise QuotaExceeded(
            f"You can start {per_minute} answer{'' if per_minute == 1 else 's'} a minute, and "
            "have. Wait a moment, then send again; your message is still here."
        )
    token_limit = int(config.get("DAILY_TOKEN_LIMIT") or 0)
    cost_limit = Decimal(str(config.get("DAILY_COST_LIMIT") or 0))
    if not token_limit and not cost_limit:
        return
    today = _today_usage(user, now)
    tomorrow = "00:00 UTC"
    if token_limit and sum(map(_tokens, today)) >= token_limit:
        raise QuotaExceeded(
            f"You have used today's {token_limit:,} tokens. The allowance renews at {tomorrow}."
        )
    spent = costs.total_cost(today, config["PRICES"], config["WEB_SEARCH_PRICE"]) or Decimal(0)
    if cost_limit and spent >= cost_limit:
        raise QuotaExceeded(
            f"You have used today's {costs.dollars(cost_limit)}. "
            f"The allowance renews at {tomorrow}."
        )


def _answers_since(user: User, since: datetime) -> int:
    return int(
        db.session.scalar(
            select(func.count(Message.id))
            .join(Conversation)
            .where(Conversation.user_id == user.id)
            .where(Message.role == "assistant")
            .where(Message.created_at >= since)
        )
        or 0
    )


def _today_usage(user: User, now: datetime) -> list[Any]:
    """The model and token counts of the person's answers today (not their text), and of the
    requests that named their conversations today."""
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    return usages(
        namings=[Conversation.user_id == user.id, Conversation.named_at >= midnight],
        answers=[Conversation.user_id == user.id, Message.updated_at >= midnight],
    )


def _tokens(usage: Any) -> int:
    return (
        (usage.input_tokens or 0)
        + (usage.output_tokens or 0)
        + (usage.cache_read_tokens or 0)
        + (usage.cache_creation_tokens or 0)
    )
