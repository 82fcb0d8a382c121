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
    # Which models exist and what each can do comes from the Models API (chatapp/llm/catalogue.py).
    "MODEL": None,  # a new chat's model; None (or one no longer offered): the newest Sonnet
    "MODELS": [],  # an allow-list of names or prefixes ("claude-opus,claude-sonnet-5-5"); [] = all
    "MAX_TOKENS": 8192,
    # With adaptive thinking on, max_tokens has this much more room: thinking counts against it.
    "ADAPTIVE_THINKING_TOKENS": 32_000,
    "TITLE_MODEL": None,  # names a conversation after its first answer; None: the newest Haiku
    # Tools (chatapp/tools): the most rounds of tool calls in one answer, and modules to import
    # for more tools ("package.module,other.module"; importing one registers its tools).
    "MAX_TOOL_ROUNDS": 8,
    "TOOL_MODULES": "",
    # Anthropic's server tools (chatapp/llm/server_tools.py), switched on per conversation:
    # which ones conversations may use (true: both; false: none; or "web_search,web_fetch"),
    # the tool versions sent, domains to keep to or to leave out (one or the other), the most
    # uses per request (None: the API's own), the user's approximate location for search
    # (None: not sent; {"city", "region", "country", "timezone"}), and what fetched pages may
    # add to the prompt (None: the API's own).
    "SERVER_TOOLS": True,
    "WEB_SEARCH_TOOL": "web_search_20250305",
    "WEB_FETCH_TOOL": "web_fetch_20250910",
    "WEB_ALLOWED_DOMAINS": [],
    "WEB_BLOCKED_DOMAINS": [],
    "WEB_SEARCH_MAX_USES": None,
    "WEB_FETCH_MAX_USES": None,
    "WEB_SEARCH_USER_LOCATION": None,
    "WEB_FETCH_MAX_CONTENT_TOKENS": None,
    # Dollars per million tokens: input, output, cache write (5 min), cache read. Check them
    # against anthropic.com/pricing and override with CHATAPP_PRICES (JSON) when they change.
    # A model takes the price of the longest name in the table its id starts with, so a dated
    # id (claude-haiku-4-5-20251001) is priced as its model. A model with no price shows its
    # tokens and "price unknown".
    "PRICES": {
        "claude-fable-5-1": [10, 50, 12.50, 0.25],
        "claude-opus-5-5": [4, 20, 5, 0.20],
        "claude-opus-5": [5, 25, 6.25, 0.50],
        "claude-opus-4-8": [5, 25, 6.25, 0.50],
        "claude-opus-4-7": [5, 25, 6.25, 0.50],
        "claude-opus-4-6": [5, 25, 6.25, 0.50],
        "claude-opus-4-5": [5, 25, 6.25, 0.50],
        "claude-sonnet-5": [2, 10, 2.50, 0.20],
        "claude-sonnet-4-6": [3, 15, 3.75, 0.30],
        "claude-sonnet-4-5": [3, 15, 3.75, 0.30],
        "claude-haiku-4-5": [1, 5, 1.25, 0.10],
    },
    # Dollars per 1,000 web searches (billed per search, on top of the tokens).
    "WEB_SEARCH_PRICE": 10,
    # Input limits. MAX_CONTENT_LENGTH is Flask's: the largest request body, in bytes; a larger
    # one is refused (413) before any of it is read. Keep it above the largest upload
    # (attachments, when there are any) and above a 100,000-character prompt, which form
    # encoding makes up to 12 bytes a character.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "MAX_PROMPT_CHARS": 100_000,
    # Attachments (chatapp/attachments): the largest file, the most files one question carries,
    # the most pages of a PDF; and whether files go to Claude through the Files API (uploaded
    # once, then referred to) or as base64 in every request.
    "MAX_FILE_MB": 30,
    "MAX_FILES": 10,
    "MAX_PDF_PAGES": 100,
    "FILES_API": True,
    "MAX_SYSTEM_PROMPT_CHARS": 50_000,
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
    # Retention (chatapp/retention.py): conversations untouched for longer than this many days
    # are deleted, and audit events older than theirs; 0 keeps them for good.
    "RETAIN_DAYS": 0,
    "AUDIT_RETAIN_DAYS": 0,
    # Accounts
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "TRUSTED_USER_HEADER": None,  # e.g. "X-Remote-User", set by nginx auth_request or oauth2-proxy
    "TRUSTED_PROXIES": "",  # addresses (or networks) whose TRUSTED_USER_HEADER is believed
    "ADMINS": "",  # with TRUSTED_USER_HEADER: the names (comma list) that are admins; "" = any
    "SESSION_CHECK_SECONDS": 5.0,  # how often open streams check that their session still holds
    # Behind a proxy
    "PROXY_COUNT": 0,  # proxies in front that set X-Forwarded-For and -Proto (nginx: 1)
    "METRICS_ALLOW": "127.0.0.1,::1",  # addresses or networks that may read /metrics
    # Response headers (chatapp/headers.py)
    "CONTENT_SECURITY_POLICY": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "HSTS_SECONDS": 31_536_000,  # Strict-Transport-Security on https responses; 0 = not sent
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
    models = config["MODELS"] or []
    if isinstance(models, str):
        models = models.split(",")
    config["MODELS"] = [name.strip() for name in models if name.strip()]

    config["PRICES"] = costs.price_table(config["PRICES"])
    config["WEB_SEARCH_PRICE"] = costs.search_price(config["WEB_SEARCH_PRICE"])

    from .llm import server_tools  # the checks of its settings live with it

    server_tools.normalise(config)

    uri = config.get("SQLALCHEMY_DATABASE_URI")
    if not uri:
        private_directory(Path(instance_path))
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

    for key in ("RETAIN_DAYS", "AUDIT_RETAIN_DAYS"):
        config[key] = _days(key, config[key])

    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(Path(instance_path))


def private_directory(path: Path) -> None:
    """Make `path` (and its parents) if missing; a directory made here is its owner's only."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def private_sqlite_file(uri: str) -> None:
    """Create the SQLite file of `uri` readable by its owner only, before SQLite does.

    SQLite would make it with the umask's mode (usually readable by everyone), and gives its
    -wal and -shm files the database file's mode.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return
    name = uri.removeprefix(prefix).split("?", 1)[0]
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # made before (its mode is the sysadmin's to keep)


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
    private_directory(instance)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # another worker or an earlier start made it
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(32).hex())
    return path.read_text().strip()
