"""The `chatapp` command of an installed chatapp: Flask's command line for this app.

`chatapp db upgrade`, `chatapp users create NAME --admin`, `chatapp routes`... are
`flask --app wsgi ...` of a checkout, without naming the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def _app() -> Flask:
    # The app of chatapp.wsgi: gevent patches the standard library first, as under gunicorn.
    from .wsgi import app

    return app


def main() -> None:
    """Run the command line (the console script `chatapp`)."""
    from flask.cli import FlaskGroup

    cli = FlaskGroup(
        name="chatapp",
        create_app=_app,
        help="chatapp's commands: `chatapp db upgrade`, `chatapp users ...` and Flask's own.",
    )
    cli.main(prog_name="chatapp")
