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
        uri = f"sqlite:///{Path(instance_path) / 'chatapp.sqlite'}"
    elif uri.startswith("postgres://"):
        uri = "postgresql+psycopg://" + uri.removeprefix("postgres://")
    elif uri.startswith("postgresql://"):
        uri = "postgresql+psycopg://" + uri.removeprefix("postgresql://")
    config["SQLALCHEMY_DATABASE_URI"] = uri

    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(Path(instance_path))


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
