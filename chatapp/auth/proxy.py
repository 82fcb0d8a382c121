"""Sign-in by a trusted proxy: nginx auth_request, oauth2-proxy, Authelia...

With CHATAPP_TRUSTED_USER_HEADER set, a request that comes straight from an address in
CHATAPP_TRUSTED_PROXIES and names a user in that header is that user (created on first sight,
without a password). From anywhere else the header is ignored, so nobody can claim a name.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import current_app, request
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..extensions import db
from ..models import User
from . import accounts


@lru_cache(maxsize=32)
def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip()
    )


def _trusted(address: str | None) -> bool:
    raw = current_app.config.get("TRUSTED_PROXIES") or ""
    if isinstance(raw, list | tuple):
        raw = ",".join(raw)
    if not address or not raw:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _networks(raw))


def user_from_trusted_header() -> User | None:
    header = current_app.config.get("TRUSTED_USER_HEADER")
    if not header:
        return None
    username = (request.headers.get(header) or "").strip()
    if not username or not _trusted(request.remote_addr):
        return None
    user = accounts.find(username)
    if user is None:
        try:
            user = accounts.create(username, None)
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
    return None if user.disabled else user
