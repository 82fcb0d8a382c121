"""Deleting an account, with everything that is theirs alone.

Their conversations go (with their messages and files, and the Files API copies), and so do
their private projects. Their shared projects hold others' work, so the admin decides: hand
them over to another person, or delete them (the conversations in them, everyone's, stay,
outside any project).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from sqlalchemy import select

from .. import audit
from ..conversations import store as conversations
from ..extensions import db
from ..models import Project, User
from ..projects import store as projects


class SharedProjects(enum.StrEnum):
    """What becomes of the shared projects of someone whose account is deleted."""

    HAND_OVER = "hand_over"
    DELETE = "delete"


class DeletionError(ValueError):
    """An account that cannot be deleted as asked; the message says why, for the page."""


def delete_account(
    user: User,
    *,
    by: User,
    shared: str | None,
    to: User | None,
    stop: Callable[[int], object],
    pause: Callable[[], None],
) -> None:
    """Delete `user` and all that is theirs; their shared projects are handed over `to`
    someone else or deleted, as `shared` says (it must say, if they have any). `stop` ends an
    answer still being written."""
    shared_projects = [p.id for p in projects.shared_projects_of(user)]
    if shared_projects:
        if shared not in {choice.value for choice in SharedProjects}:
            raise DeletionError(
                f"{user.username} owns shared projects: choose whether to hand them over "
                "or to delete them."
            )
        if shared == SharedProjects.HAND_OVER:
            if to is None or to.id == user.id or to.disabled:
                raise DeletionError("Choose an active account to hand the projects over to.")
            projects.hand_over(shared_projects, to, by=by)
        else:
            projects.delete_projects(shared_projects, by=by)
    for answer_id in conversations.streaming_answers(user):
        stop(answer_id)
    conversations.delete_all(user, pause=pause, by=by, detail="their account was deleted")
    private = list(db.session.scalars(select(Project.id).where(Project.user_id == user.id)))
    projects.delete_projects(private, by=by)
    # The last rows of theirs (pins, files never sent) go by their foreign keys' ON DELETE
    # CASCADE.
    user_id, described = user.id, user.username
    db.session.delete(user)
    audit.record("user_deleted", actor=by, target=user_id, detail=described, commit=False)
    db.session.commit()
