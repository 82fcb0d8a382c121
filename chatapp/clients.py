"""Who is asking: the client's address, the peer's, and lists of addresses.

Behind a reverse proxy every request comes from the proxy. With CHATAPP_PROXY_COUNT set to
the number of proxies in front of gunicorn, the client's address (and scheme) is read from the
`X-Forwarded-For` (and `X-Forwarded-Proto`) those proxies set, by Werkzeug's ProxyFix: from
then on `request.remote_addr` is the client's, for the sign-in limits, the logs and the access
log. Values a client put there itself, before the first proxy, are never believed.

The peer (the address that opened the connection) stays at hand for the one check that must
ask who is talking to us, not who they say they speak for: whether a trusted proxy names the
signed-in user (chatapp.auth.proxy).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trust_forwarded(app: Flask) -> None:
    """Read the client's address and scheme from the last PROXY_COUNT proxies' headers."""
    count = int(app.config["PROXY_COUNT"] or 0)
    if count > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=0, x_port=0, x_prefix=0
        )


def peer_address() -> str | None:
    """The address this request's connection came from (the proxy's, behind one)."""
    original = request.environ.get("werkzeug.proxy_fix.orig")
    if original is not None:
        address: str | None = original.get("REMOTE_ADDR")
        return address
    return request.remote_addr


@lru_cache(maxsize=32)
def networks(raw: str) -> tuple[Network, ...]:
    """Addresses or networks from a comma list ("127.0.0.1, 10.0.0.0/8, ::1")."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip()
    )


def listed(address: str | None, raw: str | list[str] | tuple[str, ...] | None) -> bool:
    """Whether `address` is in the comma list `raw` (a list or tuple of entries works too)."""
    if isinstance(raw, list | tuple):
        raw = ",".join(raw)
    if not address or not raw:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks(raw))
