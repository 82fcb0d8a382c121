"""gunicorn settings for `make run`: the package's own (chatapp/gunicorn_conf.py), which an
installed wheel uses as `gunicorn --config python:chatapp.gunicorn_conf chatapp.wsgi:app`."""

from chatapp.gunicorn_conf import *  # noqa: F403
