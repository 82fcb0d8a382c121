"""Pins: the conversations and projects a person keeps at the top of their sidebar.

A pin is one person's: pinning a shared project pins it for nobody else. A conversation can be
pinned only by its author, a project by anyone who may see it.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Conversation, Pin, Project, User


def pin(
    user: User, *, conversation: Conversation | None = None, project: Project | None = None
) -> None:
    """Pin one of them for `user` (pinned already: nothing changes); committed."""
    if is_pinned(user, conversation=conversation, project=project):
        return
    db.session.add(
        Pin(
            user_id=user.id,
            conversation_id=conversation.id if conversation is not None else None,
            project_id=project.id if project is not None else None,
        )
    )
    try:
        db.session.commit()
    except IntegrityError:  # pinned meanwhile, from another tab
        db.session.rollback()


def unpin(
    user: User, *, conversation: Conversation | None = None, project: Project | None = None
) -> None:
    db.session.execute(delete(Pin).where(Pin.user_id == user.id, _which(conversation, project)))
    db.session.commit()


def is_pinned(
    user: User, *, conversation: Conversation | None = None, project: Project | None = None
) -> bool:
    found = db.session.scalar(
        select(Pin.id).where(Pin.user_id == user.id, _which(conversation, project)).limit(1)
    )
    return found is not None


def _which(conversation: Conversation | None, project: Project | None) -> ColumnElement[bool]:
    if conversation is not None:
        return Pin.conversation_id == conversation.id
    if project is not None:
        return Pin.project_id == project.id
    raise ValueError("pin a conversation or a project")
