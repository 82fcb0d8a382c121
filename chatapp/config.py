"""Embedded defaults. `instance/config.py` overrides them, then the environment does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import costs

DEFAULTS: dict[str, Any] = {
    # Claude
    "ANTHROPIC_API_KEY": None,
    "ANTHROPIC_BASE_URL": None,
    "MODEL": "claude-sonnet-4-6",
    "MODELS": ["claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5"],
    "MAX_TOKENS": 8192,
    "TITLE_MODEL": "claude-haiku-4-5",
    # Tools (chatapp/tools): the most rounds of tool calls in one answer, and modules to import
    # for more tools ("package.module,other.module"; importing one registers its tools).
    "MAX_TOOL_ROUNDS": 8,
    "TOOL_MODULES": "",  # names a conversation after its first answer; "" = off
    # Dollars per million tokens: input, output, cache write (5 min), cache read. Check them
    # against anthropic.com/pricing and override with CHATAPP_PRICES (JSON) when they change.
    "PRICES": {
        "claude-sonnet-4-6": [3, 15, 3.75, 0.30],
        "claude-opus-4-6": [5, 25, 6.25, 0.50],
        "claude-haiku-4-5": [1, 5, 1.25, 0.10],
    },
    # Input limits
    "MAX_PROMPT_CHARS": 100_000,
    # Per person; 0 = no limit (see chatapp/conversations/quotas.py)
    "DAILY_TOKEN_LIMIT": 0,
    "DAILY_COST_LIMIT": 0,  # dollars
    "REQUESTS_PER_MINUTE": 0,
    # Streaming
    "FRAME_INTERVAL": 0.05,  # at most ~20 frames/s per stream
    "WORKER_FRAMES_PER_SECOND": 1000,  # over all of a worker's answers; beyond, frames coalesce
    "FLUSH_INTERVAL": 0.15,  # group commit of streamed text
    "HEARTBEAT_SECONDS": 10.0,  # SSE comment while idle; proxies cut at 60 s
    "SSE_RETRY_MS": 1000,
    "LISTENER_QUEUE_FRAMES": 256,  # a reader further behind than this is dropped and reconnects
    "STREAM_WRITE_TIMEOUT": 30.0,  # a reader whose socket takes no bytes this long is dropped
    "ABANDON_AFTER": 0.0,  # seconds with nobody watching an answer before it is stopped; 0 = never
    "SWEEP_INTERVAL": 15.0,  # how often live answers are touched and orphans looked for
    "STALE_AFTER": 60.0,  # a `streaming` answer untouched this long is marked interrupted
    "UPSTREAM_IDLE_TIMEOUT": 90.0,
    "UPSTREAM_CONNECT_TIMEOUT": 10.0,
    "UPSTREAM_MAX_CONNECTIONS": 4000,
    "UPSTREAM_IDLE_CONNECTIONS": 16,
    "UPSTREAM_MAX_RETRIES": 2,
    # Demo upstream pace (used when there is no API key)
    "DEMO_FIRST_TOKEN_SECONDS": [0.5, 1.5],
    "DEMO_TOKENS_PER_SECOND": [50.0, 80.0],
    # Fan-out between workers (REDIS_URL)
    "REDIS_URL": None,
    "REDIS_PREFIX": "chatapp",  # keys and channels start with this; one per installation
    # Logging
    "LOG_FORMAT": "text",  # or "json": one JSON object per line
    # Storage
    "SQLALCHEMY_DATABASE_URI": None,  # set in create_app: SQLite in instance/
    "SQLALCHEMY_ENGINE_OPTIONS": {},
    # PostgreSQL: seconds to connect, and for each round trip of a query, before the database
    # counts as not reachable (0: wait for ever). Migrations are not limited.
    "DATABASE_TIMEOUT": 10.0,
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    # Accounts
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "TRUSTED_USER_HEADER": None,  # e.g. "X-Remote-User", set by nginx auth_request or oauth2-proxy
    "TRUSTED_PROXIES": "",  # addresses (or networks) whose TRUSTED_USER_HEADER is believed
}

# Environment variables read without the CHATAPP_ prefix, and the config key each sets.
PLAIN_ENVIRONMENT = {
    "ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL": "ANTHROPIC_BASE_URL",
    "DATABASE_URL": "SQLALCHEMY_DATABASE_URI",
    "REDIS_URL": "REDIS_URL",
    "SECRET_KEY": "SECRET_KEY",
}


def load_plain_environment(config: dict[str, Any]) -> None:
    """Copy the unprefixed variables (the SDK's own and the usual deploy ones) into config."""
    for variable, key in PLAIN_ENVIRONMENT.items():
        value = os.environ.get(variable)
        if value:
            config[key] = value


def normalise(config: dict[str, Any], instance_path: str) -> None:
    """Give derived settings their final shape once every source has been applied."""
    models = config["MODELS"]
    if isinstance(models, str):
        models = [name.strip() for name in models.split(",") if name.strip()]
    if config["MODEL"] not in models:
        models = [config["MODEL"], *models]
    config["MODELS"] = models

    config["PRICES"] = costs.price_table(config["PRICES"])

    uri = config.get("SQLALCHEMY_DATABASE_URI")
    if not uri:
        uri = f"sqlite:///{Path(instance_path) / 'chatapp.sqlite'}"
    elif uri.startswith("postgres://"):
        uri = "postgresql+psycopg://" + uri.removeprefix("postgres://")
    elif uri.startswith("postgresql://"):
        uri = "postgresql+psycopg://" + uri.removeprefix("postgresql://")
    config["SQLALCHEMY_DATABASE_URI"] = uri
    if uri.startswith("postgresql"):
        config["SQLALCHEMY_ENGINE_OPTIONS"] = _postgresql_engine_options(
            config["SQLALCHEMY_ENGINE_OPTIONS"], float(config["DATABASE_TIMEOUT"])
        )

    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(Path(instance_path))


def _postgresql_engine_options(given: dict[str, Any], timeout: float) -> dict[str, Any]:
    """`given`, plus what lets the pool live through the database going away: a pooled
    connection is pinged before use (one left over from before an outage is replaced, not
    handed to a request), and connecting gives up after `timeout` seconds (libpq takes whole
    seconds, at least 2). Values set in `given` win."""
    options = dict(given)
    options.setdefault("pool_pre_ping", True)
    if timeout > 0:
        connect_args = dict(options.get("connect_args") or {})
        connect_args.setdefault("connect_timeout", max(2, round(timeout)))
        options["connect_args"] = connect_args
    return options


def _instance_secret(instance: Path) -> str:
    """Read the generated secret key, creating it on first start."""
    path = instance / "secret_key"
    instance.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # another worker or an earlier start made it
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(32).hex())
    return path.read_text().strip()
