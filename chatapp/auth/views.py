"""Sign in, sign out, the first admin, and the admin's page of accounts."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

import redis
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import audit, ids
from ..conversations import store
from ..cooperate import let_streams_run
from ..models import User
from ..projects import store as projects
from ..sharing import store as shares
from . import accounts, deletion, usage
from .throttle import SharedThrottle, Throttle

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

MAX_NEXT = 2000  # the longest `next` address followed after signing in


def _throttles() -> tuple[Throttle | SharedThrottle, Throttle | SharedThrottle]:
    """This app's limits: five failures a minute for one username from one address, fifty
    from one address; shared by every worker through Redis when REDIS_URL is set."""
    found = current_app.extensions.get("chatapp.login_throttles")
    if found is None:
        limits = ((5, 60.0), (50, 60.0))
        url = current_app.config.get("REDIS_URL")
        if url:
            # Without Redis, sign-in falls back to this worker's memory at once, not after
            # the client's usual retries with backoff (seconds).
            client = redis.Redis.from_url(
                url, socket_timeout=2.0, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 1)
            )
            prefix = current_app.config["REDIS_PREFIX"]
            found = tuple(SharedThrottle(client, prefix, *limit) for limit in limits)
        else:
            found = tuple(Throttle(*limit) for limit in limits)
        current_app.extensions["chatapp.login_throttles"] = found
    return found


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if not accounts.any_user():
        return redirect(url_for("auth.setup"))
    if request.method == "GET":
        return render_template("login.html", next=_next_page())
    # What was typed is checked against the username rule before anything else: a name that
    # cannot be an account is not looked up, and nothing is kept that is keyed on it.
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    shown = username[: accounts.MAX_USERNAME]
    if not accounts.valid_username(username):
        return _login_refused(accounts.USERNAME_RULE, shown, 422)
    if len(password) > accounts.MAX_PASSWORD:
        error = f"A password has at most {accounts.MAX_PASSWORD:,} characters."
        return _login_refused(error, shown, 422)
    address = request.remote_addr or "?"
    keys = (f"{address}|{username.lower()}",)
    per_account, per_address = _throttles()
    wait = max(per_account.blocked_for(*keys), per_address.blocked_for(address))
    if wait:
        error = f"Too many attempts. Wait {math.ceil(wait)} seconds, then try again."
        return _login_refused(error, shown, 429)
    user = accounts.check(username, password)
    if user is None:
        per_account.failed(*keys)
        per_address.failed(address)
        _sign_in_failed(username, address)
        error = "Wrong username or password (or the account is disabled)."
        return _login_refused(error, shown, 401)
    per_account.succeeded(*keys)
    _signed_in(user, address)
    return redirect(_next_page())


def _login_refused(error: str, username: str, status: int) -> ResponseReturnValue:
    return render_template("login.html", error=error, username=username, next=_next_page()), status


def _signed_in(user: User, address: str) -> None:
    """Start a session for `user`: the one place a sign-in by password succeeds."""
    _new_session()
    login_user(user)
    audit.record("sign_in", actor=user)
    log.info("signed in", extra={"fields": {"user": user.username, "address": address}})


def _sign_in_failed(username: str, address: str) -> None:
    """The one place a sign-in by password fails (wrong password, unknown or disabled)."""
    audit.record("sign_in_failed", actor=username.strip())
    log.info("sign-in failed", extra={"fields": {"user": username, "address": address}})


def _new_session() -> None:
    """Forget everything the session held, the CSRF token included: a form or a token copied
    from before signing in or out is no good after it."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out everywhere: every session of this person ends, on every browser.

    A session lives in its cookie; the server cannot forget one copy of it and keep the others,
    so signing out moves the person's session version on, which ends them all.
    """
    if current_user.is_authenticated:
        user: User = current_user._get_current_object()
        audit.record("sign_out", actor=user)
        accounts.end_sessions(user)
        log.info(
            "signed out",
            extra={"fields": {"user": user.username, "address": request.remote_addr}},
        )
    logout_user()
    _new_session()
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> ResponseReturnValue:
    """The first visit: create the first admin (only while there is no account at all)."""
    if accounts.any_user():
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("setup.html")
    username = request.form.get("username", "").strip()
    try:
        user = accounts.create_first_admin(username, request.form.get("password", ""))
    except accounts.AccountError as exc:
        shown = username[: accounts.MAX_USERNAME]
        return render_template("setup.html", error=str(exc), username=shown), 422
    audit.record("user_created", actor=user, target=user.id, detail=accounts.described(user))
    _signed_in(user, request.remote_addr or "?")
    return redirect(url_for("conversations.index"))


@bp.route("/admin/users", methods=["GET", "POST"])
def users() -> ResponseReturnValue:
    """Admins add accounts here, and disable or enable them."""
    _admin_only()
    admin = current_user._get_current_object()
    error, status = None, 200
    if request.method == "POST":
        try:
            user = accounts.create(
                request.form.get("username", ""),
                request.form.get("password", ""),
                admin=request.form.get("admin") == "on",
            )
        except accounts.AccountError as exc:
            error, status = str(exc), 422
        else:
            audit.record(
                "user_created", actor=admin, target=user.id, detail=accounts.described(user)
            )
    return render_template(
        "admin_users.html",
        users=accounts.all_users(),
        projects=projects.projects_owned(),
        share_counts=shares.counts(),
        error=error,
    ), status


@bp.get("/admin/usage")
def usage_page() -> ResponseReturnValue:
    """What the team's answers cost, by person and by model, with a chart."""
    _admin_only()
    people, models, everyone = usage.totals(
        usage.usage_by_person_and_model(),
        current_app.config["PRICES"],
        current_app.config["WEB_SEARCH_PRICE"],
    )
    bars, height = usage.chart(people)
    return render_template(
        "admin_usage.html",
        people=people,
        models=models,
        everyone=everyone,
        bars=bars,
        chart_height=height,
        chart_width=usage.CHART_WIDTH,
        label_width=usage.LABEL_WIDTH,
    )


@bp.post("/admin/users/<id:user_id>/disable")
def disable(user_id: int) -> ResponseReturnValue:
    return _set_disabled(user_id, True)


@bp.post("/admin/users/<id:user_id>/enable")
def enable(user_id: int) -> ResponseReturnValue:
    return _set_disabled(user_id, False)


def _set_disabled(user_id: int, disabled: bool) -> ResponseReturnValue:
    _admin_only()
    user = accounts.get(user_id)
    if user is None or user.id == current_user.id:
        abort(404)  # no such account (or your own: an admin cannot lock themselves out)
    accounts.set_disabled(user, disabled)
    kind = "user_disabled" if disabled else "user_enabled"
    audit.record(
        kind, actor=current_user._get_current_object(), target=user.id, detail=user.username
    )
    return redirect(url_for("auth.users"))


@bp.route("/admin/users/<id:user_id>/delete", methods=["GET", "POST"])
def delete_user(user_id: int) -> ResponseReturnValue:
    """Delete an account and all that is theirs: GET asks to confirm and, if they own shared
    projects, whether to hand those over (to whom) or delete them; POST does it."""
    _admin_only()
    user = accounts.get(user_id)
    admin = current_user._get_current_object()
    if user is None or user.id == admin.id:
        abort(404)  # no such account (or your own)
    error = None
    if request.method == "POST" and request.form.get("confirm") == "yes":
        # Imported here: the streaming package imports this one (through attachments).
        from ..streaming import streams

        to = accounts.get(ids.parse(request.form.get("to")) or 0)
        try:
            deletion.delete_account(
                user,
                by=admin,
                shared=request.form.get("shared"),
                to=to,
                stop=streams().stop,
                pause=let_streams_run,
            )
        except deletion.DeletionError as exc:
            error = str(exc)
        else:
            return redirect(url_for("auth.users"), code=303)
    body = render_template(
        "admin_delete_user.html",
        user=user,
        conversations=store.count_conversations(user),
        shared=projects.shared_projects_of(user),
        owned=projects.projects_owned().get(user.id, 0),
        others=[u for u in accounts.all_users() if u.id != user.id and not u.disabled],
        error=error,
    )
    return body, 422 if error else 200


def _admin_only() -> None:
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(404)


def _next_page() -> str:
    """Where to go after signing in: a path on this site, never another one."""
    target = request.values.get("next", "")
    if len(target) > MAX_NEXT or "\\" in target:
        return url_for("conversations.index")
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.netloc or parts.scheme:
        return url_for("conversations.index")
    return target
