"""What a person's sidebar lists: what they pinned, their projects with their own
conversations in each, then their other conversations, a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ..conversations.store import SidebarPage, recent_conversations
from ..extensions import db
from ..models import Conversation, Pin, Project, Sharing, User
from .store import visible_to

PER_PROJECT = 5  # a project's most recent conversations shown under it; its page has them all
MOST_IN_PROJECTS = 500  # conversations read for the projects' lists


@dataclass
class ProjectGroup:
    """A project in the sidebar, with the person's most recent conversations in it."""

    id: int
    name: str
    shared: bool
    conversations: list[Any] = field(default_factory=list)  # rows with `id` and `title`
    more: bool = False  # the project has more of theirs than are shown


@dataclass(frozen=True)
class Sidebar:
    pinned_projects: Sequence[ProjectGroup]
    pinned_conversations: Sequence[Any]  # rows with `id` and `title`
    projects: Sequence[ProjectGroup]
    recent: SidebarPage


def sidebar_context(user: User, page: int = 1) -> dict[str, object]:
    """What the sidebar's templates take: `sidebar` (the page of other conversations) and
    `side` (all of it)."""
    side = sidebar_of(user, page)
    return {"sidebar": side.recent, "side": side}


def sidebar_of(user: User, page: int = 1) -> Sidebar:
    """The sidebar of `user`, in five short queries."""
    pins = db.session.execute(
        select(Pin.conversation_id, Pin.project_id)
        .where(Pin.user_id == user.id)
        .order_by(Pin.created_at, Pin.id)
    ).all()
    pinned_conversation_ids = [row[0] for row in pins if row[0] is not None]
    pinned_project_ids = [row[1] for row in pins if row[1] is not None]
    groups = {
        row.id: ProjectGroup(row.id, row.name, row.sharing != Sharing.PRIVATE.value)
        for row in db.session.execute(
            select(Project.id, Project.name, Project.sharing)
            .where(visible_to(user))
            .order_by(func.lower(Project.name), Project.id)
        )
    }
    for row in db.session.execute(
        select(Conversation.id, Conversation.title, Conversation.project_id)
        .where(Conversation.user_id == user.id)
        .where(Conversation.project_id.is_not(None))
        .where(Conversation.id.not_in(pinned_conversation_ids))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(MOST_IN_PROJECTS)
    ):
        group = groups.get(row.project_id)
        if group is None:
            continue
        if len(group.conversations) < PER_PROJECT:
            group.conversations.append(row)
        else:
            group.more = True
    pinned_conversations = []
    if pinned_conversation_ids:
        titles = dict(
            db.session.execute(
                select(Conversation.id, Conversation.title)
                .where(Conversation.user_id == user.id)
                .where(Conversation.id.in_(pinned_conversation_ids))
            ).all()
        )
        pinned_conversations = [
            _Row(conversation_id, titles[conversation_id])
            for conversation_id in pinned_conversation_ids
            if conversation_id in titles
        ]
    return Sidebar(
        pinned_projects=[groups[i] for i in pinned_project_ids if i in groups],
        pinned_conversations=pinned_conversations,
        projects=[g for i, g in groups.items() if i not in pinned_project_ids],
        # A conversation in a project its author may no longer see (made private while it
        # was being started in it) is listed with the others.
        recent=recent_conversations(
            user, page=page, besides=pinned_conversation_ids, grouped=list(groups)
        ),
    )


@dataclass(frozen=True)
class _Row:
    id: int
    title: str
