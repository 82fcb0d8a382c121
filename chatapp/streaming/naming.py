"""Naming a conversation after its first answer: a small model (CHATAPP_TITLE_MODEL) suggests
a title; what that request used is stored, billed like an answer; open pages get the new title,
unless someone renamed the conversation meanwhile. A failure leaves the title as it was."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2
from flask import Flask
from sqlalchemy import CursorResult, func, update

from ..conversations.store import title_from
from ..database import unreachable
from ..extensions import db
from ..llm import titles
from ..models import Conversation, utcnow

if TYPE_CHECKING:
    from .generation import AnswerServices

log = logging.getLogger(__name__)


def name_conversation(
    services: AnswerServices, conversation_id: int, model: str | None, question: str, answer: str
) -> None:
    """Ask `model` (None: the newest Haiku offered, else the default model; "": nobody) for a
    title of the conversation that began with `question` and `answer`, store it and what it
    used, and tell open pages."""
    if model is None:
        model = services.catalogue.newest("haiku") or services.catalogue.default()
    if not model:
        return
    try:
        title, usage = titles.suggest(services.claude.client, model, question, answer)
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        log.info("no title for conversation %s: %r", conversation_id, exc)
        return
    services.meter.count_tokens(
        model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
    )
    try:
        store_naming(services.app, conversation_id, model, usage)
        renamed = title and retitle(services.app, conversation_id, question, title)
    except Exception as exc:
        if not unreachable(exc):
            raise
        services.database.failed(exc)
        log.info("conversation %s keeps its title: the database did not answer", conversation_id)
        return
    if renamed:
        services.send_news(conversation_id, "title", (), None, title)


def store_naming(app: Flask, conversation_id: int, model: str, usage: Any) -> None:
    """Add what a request to name the conversation used (its `usage` from the API). A first
    answer written again asks again, and each request is billed."""
    table = Conversation.__table__
    with app.app_context():
        db.session.execute(
            update(table)
            .where(table.c.id == conversation_id)
            .values(
                naming_model=model,
                naming_input_tokens=func.coalesce(table.c.naming_input_tokens, 0)
                + usage.input_tokens,
                naming_output_tokens=func.coalesce(table.c.naming_output_tokens, 0)
                + usage.output_tokens,
                named_at=utcnow(),
            )
        )
        db.session.commit()


def retitle(app: Flask, conversation_id: int, question: str, title: str) -> bool:
    """Give the conversation `title`, unless someone renamed it meanwhile."""
    with app.app_context():
        done: CursorResult[Any] = db.session.execute(  # type: ignore[assignment]
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .where(Conversation.title == title_from(question))
            .values(title=title)
        )
        db.session.commit()
        return bool(done.rowcount)
