"""Accounts: who is signed in, and the gate every page and stream passes.

People sign in with a username and password (Flask-Login keeps the session, which ends
everywhere at sign-out, a new password or disabling: chatapp.auth.sessions), or, when
CHATAPP_TRUSTED_USER_HEADER is set, through a proxy in CHATAPP_TRUSTED_PROXIES that names them
in that header. With no account yet, every page leads to creating the first admin.
"""

from __future__ import annotations

from typing import cast

from flask import Flask, make_response, redirect, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user

from .. import htmx
from ..models import User
from . import accounts, proxy
from .sessions import SessionWatch, session_watch
from .views import bp

__all__ = ["SessionCookies", "bp", "init_app", "session_watch", "signed_in_user"]

# Reachable without signing in. A shared conversation's page and files decide for themselves
# (chatapp/sharing): a public link reads signed out, any other sends you to sign in.
OPEN_ENDPOINTS = {
    "auth.login",
    "auth.setup",
    "static",
    "operations.healthz",
    "operations.metrics",
    "sharing.page",
    "sharing.file",
    "sharing.download",
}

login_manager = LoginManager()


def signed_in_user() -> User:
    """The person this request is for (every view past the gate has one)."""
    return cast(User, current_user._get_current_object())


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    return accounts.session_user(session_id)


@login_manager.request_loader
def _load_from_proxy(_request: object) -> User | None:
    return proxy.user_from_trusted_header()


class SessionCookies(SecureCookieSessionInterface):
    """The session cookie: HttpOnly, SameSite=Lax, and Secure whenever the page came over
    https (directly, or through a proxy that says so in X-Forwarded-Proto)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        return (
            bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure or forwarded == "https"
        )


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    SessionWatch(app)
    app.register_blueprint(bp)
    app.before_request(_gate)
    app.cli.add_command(accounts.users_cli)


def _gate() -> ResponseReturnValue | None:
    """Send anyone not signed in to sign in (or, before any account exists, to create one)."""
    if request.endpoint in OPEN_ENDPOINTS or current_user.is_authenticated:
        return None
    target = url_for("auth.setup") if not accounts.any_user() else url_for("auth.login")
    if htmx.is_htmx(request):
        return htmx.redirect(make_response("", 401), target)
    if request.accept_mimetypes.best == "text/event-stream" or request.path.endswith(
        ("/stream", "/events")
    ):
        return "Sign in first.", 401
    return redirect(target)
