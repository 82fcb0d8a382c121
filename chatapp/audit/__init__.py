"""The audit log: one row for each thing an admin may have to account for.

Who did what, to which account or conversation, when, and from where: sign-ins (and failed
ones), sign-outs, account changes, deleted conversations, exports, backups. Never the text of
a conversation, nor its title (titles are made from what people typed).

Features record their events with one call, `record(kind, actor=..., target=...)`; a new
kind of event is added to KINDS first. Admins read the log at /admin/audit, and
`flask --app wsgi audit` prints it.
"""

from __future__ import annotations

import logging
import os
import pwd
from dataclasses import dataclass
from datetime import timedelta

import click
from flask import has_request_context, request
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import AuditEvent, User, utcnow

__all__ = ["KINDS", "Kind", "Page", "command_line", "events", "purge_older_than", "record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """How a kind of event reads on the admins' page, and what its target is."""

    label: str
    target: str | None = None  # "account", "conversation", "project": what `target_id` names


KINDS: dict[str, Kind] = {
    "sign_in": Kind("Signed in"),
    "sign_in_failed": Kind("Sign-in failed"),  # who: the username typed
    "sign_out": Kind("Signed out"),
    "user_created": Kind("Account created", "account"),
    "user_disabled": Kind("Account disabled", "account"),
    "user_enabled": Kind("Account enabled", "account"),
    "password_reset": Kind("Password reset", "account"),
    "conversation_deleted": Kind("Conversation deleted", "conversation"),
    "export": Kind("Conversation exported", "conversation"),
    "user_deleted": Kind("Account deleted", "account"),
    "project_created": Kind("Project created", "project"),
    "project_sharing": Kind("Project sharing changed", "project"),  # detail: private, use, edit
    "project_handed_over": Kind("Project handed over", "project"),  # detail: the new owner
    "project_deleted": Kind("Project deleted", "project"),
    "conversation_shared": Kind("Conversation shared", "conversation"),
    "share_public": Kind("Public link changed", "conversation"),
    "share_ended": Kind("Sharing stopped", "conversation"),
    "admin_backup": Kind("Backup written"),
    "admin_restore": Kind("Backup restored"),
}

# Column sizes (chatapp.models.AuditEvent): longer values are cut, never refused.
NAME_CHARS = 80
DETAIL_CHARS = 200
ADDRESS_CHARS = 64


def record(
    kind: str,
    *,
    actor: User | str | None,
    target: int | None = None,
    detail: str | None = None,
    commit: bool = True,
) -> None:
    """Add one event to the audit log and commit it (with whatever else the session holds).

    `actor` is the account that did it; a plain name for someone not signed in (the username
    typed at a failed sign-in); None for the command line or the server itself. Where it came
    from is found here: the request's client address, or the command line's system user.
    With `commit=False` the row joins the caller's transaction, to be committed with the
    change it records. A failure to write is logged, not raised: the action is done already.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}; add it to chatapp.audit.KINDS")
    user_id: int | None = None
    username: str | None = None
    if isinstance(actor, User):
        user_id, username = actor.id, actor.username
    else:
        username = actor
    where = _where()
    db.session.add(
        AuditEvent(
            kind=kind,
            user_id=user_id,
            username=username[:NAME_CHARS] if username is not None else None,
            target_id=target,
            detail=(detail or "")[:DETAIL_CHARS],
            address=where[:ADDRESS_CHARS] if where is not None else None,
            created_at=utcnow(),
        )
    )
    if not commit:
        return
    try:
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("could not write %s (%s) to the audit log", kind, username or where)


def _where() -> str | None:
    """Where the event came from: the client's address in a request, the command line in a
    `flask` command, nothing for the server's own work (retention)."""
    # The audit log is about requests: reading the address here keeps each hook to one call.
    if has_request_context():
        return request.remote_addr
    if click.get_current_context(silent=True) is not None:
        return command_line()
    return None


def command_line() -> str:
    """The address of events from the command line: "cli:" and the system user running it."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return f"cli:{name}"


@dataclass(frozen=True)
class Page:
    """Events newest first, and the ids to page on from: newer ones (`after`), older ones
    (`before`); None where there are none."""

    events: list[AuditEvent]
    newer: int | None
    older: int | None


def events(
    *,
    username: str | None = None,
    kind: str | None = None,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> Page:
    """One page of the log, newest first: older than `before`, or else newer than `after`
    (the page just before it), or else the newest; of one person, and of one kind."""
    query = select(AuditEvent)
    if username:
        query = query.where(AuditEvent.username == username)
    if kind:
        query = query.where(AuditEvent.kind == kind)
    if before is None and after is not None:
        rows = list(
            db.session.scalars(
                query.where(AuditEvent.id > after).order_by(AuditEvent.id).limit(limit + 1)
            )
        )
        more_newer = len(rows) > limit
        found = rows[:limit][::-1]
        return Page(
            found,
            newer=found[0].id if more_newer else None,
            older=found[-1].id if found else None,
        )
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    found = rows[:limit]
    return Page(
        found,
        newer=found[0].id if found and before is not None else None,
        older=found[-1].id if len(rows) > limit else None,
    )


def purge_older_than(days: float, *, batch: int) -> int:
    """Delete up to `batch` of the oldest events older than `days` days, and commit; return
    how many went."""
    cutoff = utcnow() - timedelta(days=days)
    oldest = (
        select(AuditEvent.id)
        .where(AuditEvent.created_at < cutoff)
        .order_by(AuditEvent.created_at)
        .limit(batch)
    )
    ids = list(db.session.scalars(oldest))
    if ids:
        db.session.execute(
            delete(AuditEvent).where(AuditEvent.id.in_(ids)),
            execution_options={"synchronize_session": False},
        )
    db.session.commit()
    return len(ids)
