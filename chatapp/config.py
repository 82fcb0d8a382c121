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
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    # A directory of files the app keeps beside the database: backups copy it, restore puts
    # it back. None: there is none.
    "FILES_DIR": None,
    # Retention (chatapp/retention.py): conversations untouched for longer than this many days
    # are deleted, and audit events older than theirs; 0 keeps them for good.
    "RETAIN_DAYS": 0,
    "AUDIT_RETAIN_DAYS": 0,
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

    for key in ("RETAIN_DAYS", "AUDIT_RETAIN_DAYS"):
        config[key] = _days(key, config[key])

    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(Path(instance_path))


def _days(key: str, value: Any) -> float:
    """A retention period in days: a number, 0 or more (0 or empty: keep for good)."""
    try:
        days = float(value or 0)
    except (TypeError, ValueError):
        days = -1.0
    if not days >= 0 or days == float("inf"):
        raise ValueError(
            f"CHATAPP_{key} must be a number of days, 0 or more (0 keeps everything); "
            f"it is {value!r}."
        )
    return days


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
