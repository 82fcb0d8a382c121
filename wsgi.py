"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from gevent import monkey

# Before anything else is imported: sockets, ssl, threading and time must be cooperative.
monkey.patch_all()

from chatapp import create_app  # noqa: E402

app = create_app()
