"""chatapp: a self-hosted chat page that streams Claude's answers into a plain browser.

Importing the package imports no library: gunicorn's master imports chatapp.gunicorn_conf
before its gevent workers patch the standard library, and Flask (which imports ssl) must come
after the patch. So the libraries are imported inside the functions below.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

# Where the instance folder (SQLite database, secret_key, config.py) lives, if not where Flask
# puts it: <checkout>/instance in a checkout, <venv>/var/chatapp-instance when installed.
INSTANCE_PATH_VARIABLE = "CHATAPP_INSTANCE_PATH"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then instance/config.py, then the environment (or test_config)."""
    from flask import Flask, make_response, render_template, request
    from flask.typing import ResponseReturnValue
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, ServiceUnavailable

    from . import clients, costs, database, headers, htmx, ids
    from . import config as defaults

    app = Flask(__name__, instance_path=instance_path(), instance_relative_config=True)
    app.url_map.converters["id"] = ids.IdConverter  # before any route uses it
    app.config.from_mapping(defaults.DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        defaults.load_plain_environment(app.config)
        app.config.from_prefixed_env("CHATAPP")
    else:
        app.config.from_mapping(test_config)
    defaults.normalise(app.config, app.instance_path)
    defaults.private_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
    _configure_logging(app)
    clients.trust_forwarded(app)
    headers.init_app(app)
    app.after_request(htmx.vary_on_htmx)

    from .extensions import csrf, db, migrate

    db.init_app(app)
    with app.app_context():
        database.limit_round_trips(db.engine, float(app.config["DATABASE_TIMEOUT"]))
    migrate.init_app(app, db, directory=_migrations_directory())
    from .attachments.store import limit_request_size
    from .text_input import refuse_nul_characters

    # Before the CSRF check, which reads the form: a question may carry files.
    app.before_request(limit_request_size)
    app.before_request(refuse_nul_characters)
    csrf.init_app(app)

    from . import attachments, auth, conversations, htmx, operations, streaming, tools
    from .conversations import store
    from .conversations.views import bp as conversations_bp
    from .llm import errors, server_tools
    from .llm.catalogue import catalogue
    from .llm.thinking import Thinking
    from .projects.views import bp as projects_bp
    from .render import anchors, render_answer, render_streaming, render_text
    from .render.thinking import thinking_section
    from .sharing.views import bp as sharing_bp
    from .streaming import streams

    app.register_blueprint(conversations_bp)
    app.register_blueprint(projects_bp)
    app.register_blueprint(attachments.bp)
    app.register_blueprint(streaming.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(sharing_bp)
    _add_sysadmin_duties(app)
    auth.init_app(app)
    app.session_interface = auth.SessionCookies()
    streaming.Streams(app)
    tools.load(name.strip() for name in app.config["TOOL_MODULES"].split(",") if name.strip())
    del conversations

    app.jinja_env.filters["render_text"] = render_text
    app.jinja_env.filters["filesize"] = attachments.filesize
    app.jinja_env.globals["describe_file"] = attachments.describe
    app.jinja_env.globals["render_answer"] = render_answer
    app.jinja_env.globals["render_streaming"] = render_streaming
    app.jinja_env.globals["thinking_section"] = thinking_section
    app.jinja_env.globals["anchors"] = anchors
    app.jinja_env.globals["registered_tools"] = tools.registered
    app.jinja_env.globals.update(
        server_tools_offered=lambda model: server_tools.offered(model, app.config),
        server_tools_allowed=lambda: server_tools.allowed(app.config),
        server_tool_titles=server_tools.TITLES,
    )
    app.jinja_env.globals["models"] = lambda: catalogue(app)
    app.jinja_env.globals["thinking_of"] = store.thinking_of
    app.jinja_env.globals["default_thinking"] = Thinking()
    app.jinja_env.globals["cut_short"] = errors.cut_short
    prices, searches = app.config["PRICES"], app.config["WEB_SEARCH_PRICE"]
    app.jinja_env.globals.update(
        answer_cost=lambda message: costs.dollars(costs.cost(message, prices, searches)),
        conversation_cost=lambda usages: costs.total_label(usages, prices, searches),
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
            return htmx.retarget(response, "#notice", "outerHTML")
        message = too_large(exc) if isinstance(exc, RequestEntityTooLarge) else None
        return render_template("error.html", error=exc, message=message), exc.code or 500

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
        return response

    for unreachable in database.UNREACHABLE:
        app.register_error_handler(unreachable, database_unreachable)

    return app


def _add_sysadmin_duties(app: Flask) -> None:
    """The audit log's page and command, and the backup and restore commands."""
    from . import backup
    from .audit.cli import audit_command
    from .audit.views import bp as audit_bp

    app.register_blueprint(audit_bp)
    app.cli.add_command(audit_command)
    app.cli.add_command(backup.backup_command)
    app.cli.add_command(backup.restore_command)


def instance_path() -> str | None:
    """The instance folder named by CHATAPP_INSTANCE_PATH (made absolute), or None for Flask's."""
    path = os.environ.get(INSTANCE_PATH_VARIABLE, "").strip()
    return os.path.abspath(os.path.expanduser(path)) if path else None


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
    from flask_wtf.csrf import CSRFError
    from werkzeug.exceptions import NotFound, RequestEntityTooLarge

    if isinstance(exc, CSRFError):
        return (
            "This page has expired, so the server could not accept that. Reload the page and "
            "try again; copy any text you typed first."
        )
    if isinstance(exc, NotFound):
        return "That conversation or message no longer exists. Reload the page to see what is."
    if isinstance(exc, RequestEntityTooLarge):
        return too_large(exc)
    return exc.description or exc.name


def too_large(exc: RequestEntityTooLarge) -> str:
    """What to tell someone whose request was over its limit (CHATAPP_MAX_CONTENT_LENGTH, or
    what a question's files may take)."""
    from flask import request

    limit = request.max_content_length or 0
    return (
        f"That was more than the server takes in one request ({limit / 1024 / 1024:g} MB), "
        "so nothing was saved. Shorten it and try again; copy any text you typed first."
    )


def _migrations_directory() -> str:
    """The Alembic scripts: shipped inside the package by a wheel (setup.py copies them), else
    the checkout's `migrations/`."""
    from pathlib import Path

    package = Path(__file__).resolve().parent
    shipped = package / "migrations"
    return str(shipped if shipped.is_dir() else package.parent / "migrations")


def _configure_logging(app: Flask) -> None:
    import logging

    from . import logs

    logs.configure(app.config["LOG_FORMAT"])
    app.logger.setLevel(logging.INFO)
    # One line per answer comes from chatapp; the libraries' per-request lines are noise here.
    for noisy in ("httpx2", "httpcore2", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
