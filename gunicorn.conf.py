"""gunicorn settings for chatapp. Every value can be overridden on the command line."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"

# One gevent worker serves hundreds of streams. More workers need a shared channel between
# them (REDIS_URL); with SQLite and the in-process channel keep the default of one.
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_connections = 1000

# For gevent workers `timeout` is a heartbeat: a worker whose hub is blocked this long is killed.
# It does not limit how long a request or a stream may last.
timeout = 30
# On SIGTERM or a reload, answers get this long to finish before they are stored as interrupted.
graceful_timeout = 25
keepalive = 5

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# A stream's access line is written when it ends; %(D)s is its duration in microseconds.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus "%(a)s"'

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def worker_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """Store what each live answer has before the worker goes away."""
    from chatapp.streaming import streams

    app = getattr(worker, "wsgi", None)
    if app is not None:
        streams(app).shutdown(timeout=5.0)
