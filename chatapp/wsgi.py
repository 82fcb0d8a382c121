"""The WSGI entry point of an installed chatapp: `gunicorn ... chatapp.wsgi:app`."""

from gevent import monkey

# Before anything else is imported: sockets, ssl, threading and time must be cooperative.
# (A gevent worker of gunicorn has patched already; patching again changes nothing.)
monkey.patch_all()

from chatapp import create_app  # noqa: E402

app = create_app()
