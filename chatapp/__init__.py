"""chatapp: a self-hosted chat page that streams Claude's answers into a plain browser."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, make_response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, NotFound, ServiceUnavailable

from . import config as defaults
from . import costs


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then instance/config.py, then the environment (or test_config)."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(defaults.DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        defaults.load_plain_environment(app.config)
        app.config.from_prefixed_env("CHATAPP")
    else:
        app.config.from_mapping(test_config)
    defaults.normalise(app.config, app.instance_path)
    _configure_logging(app)

    from . import database
    from .extensions import csrf, db, migrate

    db.init_app(app)
    with app.app_context():
        database.limit_round_trips(db.engine, float(app.config["DATABASE_TIMEOUT"]))
    migrate.init_app(app, db, directory=_migrations_directory())
    csrf.init_app(app)

    from . import auth, conversations, htmx, operations, streaming, tools
    from .conversations.views import bp as conversations_bp
    from .render import render_answer, render_streaming, render_text
    from .render.thinking import thinking_section
    from .streaming import streams

    app.register_blueprint(conversations_bp)
    app.register_blueprint(streaming.bp)
    app.register_blueprint(operations.bp)
    auth.init_app(app)
    app.session_interface = auth.SessionCookies()
    streaming.Streams(app)
    tools.load(name.strip() for name in app.config["TOOL_MODULES"].split(",") if name.strip())
    del conversations

    app.jinja_env.filters["render_text"] = render_text
    app.jinja_env.globals["render_answer"] = render_answer
    app.jinja_env.globals["render_streaming"] = render_streaming
    app.jinja_env.globals["thinking_section"] = thinking_section
    app.jinja_env.globals["registered_tools"] = tools.registered
    prices = app.config["PRICES"]
    app.jinja_env.globals.update(
        answer_cost=lambda message: costs.dollars(costs.cost(message, prices)),
        conversation_cost=lambda usages: costs.dollars(costs.total_cost(usages, prices)),
        tokens_per_second=costs.tokens_per_second,
        dollars=costs.dollars,
    )
    app.jinja_env.globals["demo_mode"] = not app.config.get("ANTHROPIC_API_KEY")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if htmx.is_htmx(request):
            # An action on the page failed: say so in the page's notice, not as a new page.
            response = make_response(
                render_template("_notice.html", notice=_notice(exc)), exc.code or 500
            )
            return htmx.vary_on_htmx(htmx.retarget(response, "#notice", "outerHTML"))
        return render_template("error.html", error=exc), exc.code or 500

    def database_unreachable(exc: Exception) -> ResponseReturnValue:
        """The database did not answer (or refused the write for now): say so plainly, with a
        503 and Retry-After, instead of an error page with a traceback behind it."""
        streams(app).database.failed(exc)  # said once in the log, not once a request
        error = ServiceUnavailable(_database_notice(request.method))
        # Rendered without the context processors: the one that offers `current_user` would
        # ask the database who is signed in, again.
        if htmx.is_htmx(request):
            body = app.jinja_env.get_template("_notice.html").render(notice=error.description)
            response = htmx.retarget(make_response(body), "#notice", "outerHTML")
        else:
            response = make_response(app.jinja_env.get_template("error.html").render(error=error))
        response.status_code = 503
        response.headers["Retry-After"] = str(database.RETRY_AFTER)
        return htmx.vary_on_htmx(response)

    for unreachable in database.UNREACHABLE:
        app.register_error_handler(unreachable, database_unreachable)

    return app


def _database_notice(method: str) -> str:
    """What to tell the person whose page or action needed the database while it was away."""
    if method in ("GET", "HEAD"):
        return (
            "The database is not reachable right now, so this page cannot be shown. "
            "Try again in a moment."
        )
    return (
        "The database is not reachable right now, so that could not be done. "
        "Try again in a moment; what you typed is still here."
    )


def _notice(exc: HTTPException) -> str:
    """What to tell the person whose action failed."""
    if isinstance(exc, CSRFError):
        return (
            "This page has expired, so the server could not accept that. Reload the page and "
            "try again; copy any text you typed first."
        )
    if isinstance(exc, NotFound):
        return "That conversation or message no longer exists. Reload the page to see what is."
    return exc.description or exc.name


def _migrations_directory() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent / "migrations")


def _configure_logging(app: Flask) -> None:
    from . import logs

    logs.configure(app.config["LOG_FORMAT"])
    app.logger.setLevel(logging.INFO)
    # One line per answer comes from chatapp; the libraries' per-request lines are noise here.
    for noisy in ("httpx2", "httpcore2", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
