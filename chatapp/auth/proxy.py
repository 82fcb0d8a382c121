"""Sign-in by a trusted proxy: nginx auth_request, oauth2-proxy, Authelia...

With CHATAPP_TRUSTED_USER_HEADER set, a request that comes straight from an address in
CHATAPP_TRUSTED_PROXIES and names a user in that header is that user (created on first sight,
without a password). From anywhere else the header is ignored, so nobody can claim a name.
With CHATAPP_ADMINS set, the people it names are admins and nobody else is; each one's flag
follows the list at their next request.
"""

from __future__ import annotations

from flask import current_app, request
from sqlalchemy.exc import IntegrityError

from .. import audit, clients
from ..extensions import db
from ..models import User
from . import accounts


def user_from_trusted_header() -> User | None:
    header = current_app.config.get("TRUSTED_USER_HEADER")
    if not header:
        return None
    username = (request.headers.get(header) or "").strip()
    # The connection's own peer: behind CHATAPP_PROXY_COUNT proxies, request.remote_addr is the
    # client they speak for, and a client must never vouch for itself.
    if not username or not clients.listed(
        clients.peer_address(), current_app.config.get("TRUSTED_PROXIES")
    ):
        return None
    admin = _named_admin(username)
    user = accounts.find(username)
    if user is None:
        try:
            user = accounts.create(username, None, admin=bool(admin))
        except accounts.AccountError:
            return None
        except IntegrityError:  # another request created it just now
            db.session.rollback()
            user = accounts.find(username)
            if user is None:
                return None
        else:
            detail = f"{user.username}, named by the trusted proxy's {header}"
            audit.record("user_created", actor=None, target=user.id, detail=detail)
    if user.disabled:
        return None
    if admin is not None and user.is_admin != admin:
        accounts.set_admin(user, admin)
    return user


def _named_admin(username: str) -> bool | None:
    """Whether CHATAPP_ADMINS names `username` (None when it is not set: the accounts' own
    flags count, as `flask users create --admin` set them)."""
    raw = current_app.config.get("ADMINS") or ""
    names = raw if isinstance(raw, list | tuple) else raw.split(",")
    admins = {str(name).strip().lower() for name in names if str(name).strip()}
    return username.lower() in admins if admins else None
