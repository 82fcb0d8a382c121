"""The WSGI entry point in a checkout: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from gevent import monkey

# Before anything else is imported: sockets, ssl, threading and time must be cooperative.
monkey.patch_all()

from chatapp.wsgi import app  # noqa: E402, F401
