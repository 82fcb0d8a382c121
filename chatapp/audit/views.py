"""The admins' page of the audit log: /admin/audit, filtered by person and kind, paged."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from . import KINDS, NAME_CHARS, events

bp = Blueprint("audit", __name__)

PER_PAGE = 50


class FilterError(ValueError):
    """A filter of the page that cannot be used; the message says why."""


@bp.get("/admin/audit")
def page() -> ResponseReturnValue:
    """The newest events first; `user` and `kind` filter, `before` and `after` page."""
    # Like the other admin pages: to anyone else there is nothing here.
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(404)
    person = " ".join(request.args.get("user", "").split())[:NAME_CHARS]
    kind = request.args.get("kind", "").strip()
    try:
        if kind and kind not in KINDS:
            raise FilterError(f"There is no kind of event called {kind[:40]!r}; pick one.")
        before, after = _position("before"), _position("after")
    except FilterError as exc:
        return render_template(
            "admin_audit.html", page=None, person=person, kind=kind, kinds=KINDS, error=exc
        ), 400
    found = events(
        username=person or None, kind=kind or None, before=before, after=after, limit=PER_PAGE
    )
    return render_template("admin_audit.html", page=found, person=person, kind=kind, kinds=KINDS)


def _position(name: str) -> int | None:
    """An event id to page from, if the query has one."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdecimal() or len(raw) > 18:
        raise FilterError(f"{name} must be an event number.")
    return int(raw)
