"""gunicorn settings for chatapp. Every value can be overridden on the command line.

`gunicorn --config python:chatapp.gunicorn_conf chatapp.wsgi:app` in an installed chatapp;
`gunicorn.conf.py` in a checkout reads them from here. gunicorn's master imports this module
before it starts its workers, and a gevent worker patches the standard library only after the
fork: so this module imports nothing but `os`, and `chatapp/__init__.py` imports no library
when it is imported (ssl imported before the patch could break Anthropic's TLS connections).
The hooks import what they need, in the worker, after the patch.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"

# One gevent worker serves hundreds of streams. More workers need a shared channel between
# them (REDIS_URL); with SQLite and the in-process channel keep the default of one.
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
if workers > 1 and not os.environ.get("REDIS_URL"):
    # Without a shared channel a stream opened on one worker would never see an answer written
    # on another, and Stop would miss it. Refuse rather than run half-broken.
    raise SystemExit(
        f"chatapp: WEB_CONCURRENCY={workers} needs REDIS_URL, so that workers share streams "
        "and Stop. Set REDIS_URL, or run one worker (one gevent worker serves many streams)."
    )
# Each open page holds one connection for its conversation's news and one per answer it
# follows: 4000 lets one worker serve 2000 pages with an answer each (DESIGN's N = 2000).
worker_connections = 4000

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

# gunicorn's control socket lives at one path per user; instances side by side (tests, a
# benchmark beside `make run`) would take it from each other. chatapp does not use it.
control_socket_disable = True

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


# gunicorn kills a worker graceful_timeout seconds after asking it to stop; answers still being
# written are interrupted this long before that, so their text is stored in time.
SHUTDOWN_MARGIN = 3


def post_worker_init(worker):  # noqa: ANN001 - gunicorn's hook signature
    """Set the garbage collector for many live answers (chatapp/collector.py); hold the lock
    that keeps `flask restore` off a served database (chatapp/backup.py). On SIGTERM (stop,
    reload), let answers finish, then store the rest as interrupted."""
    import signal

    import gevent

    from chatapp import backup, collector
    from chatapp.streaming import streams

    collector.tune()
    backup.hold_serving_lock(worker.wsgi)

    stop_accepting = worker.handle_exit

    def handle_exit(sig, frame):  # noqa: ANN001
        stop_accepting(sig, frame)
        grace = max(worker.cfg.graceful_timeout - SHUTDOWN_MARGIN, 0)
        gevent.spawn(streams(worker.wsgi).wind_down, grace)

    signal.signal(signal.SIGTERM, handle_exit)


def worker_int(worker):  # noqa: ANN001 - gunicorn's hook signature
    """On SIGINT or SIGQUIT (a quick stop), store what each live answer has at once."""
    from chatapp.streaming import streams

    streams(worker.wsgi).shutdown(timeout=2.0)
