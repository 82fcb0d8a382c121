"""gunicorn settings for chatapp. Every value can be overridden on the command line.

`gunicorn --config python:chatapp.gunicorn_conf chatapp.wsgi:app` in an installed chatapp;
`gunicorn.conf.py` in a checkout reads them from here. gunicorn's master imports this module
before it starts its workers, and a gevent worker patches the standard library only after the
fork: so this module imports nothing but a few modules of the standard library, and
`chatapp/__init__.py` imports no library when it is imported (ssl imported before the patch
could break Anthropic's TLS connections). The worker hooks import what they need, in the
worker, after the patch; the master's `child_exit` imports only prometheus_client.
"""

import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"

# One gevent worker serves hundreds of streams on one core. Workers share answers, Stop and
# news through Redis: with REDIS_URL, one worker per core (WEB_CONCURRENCY overrides it);
# without it, one.
worker_class = "gevent"
if os.environ.get("WEB_CONCURRENCY"):
    workers = int(os.environ["WEB_CONCURRENCY"])
    _why = "WEB_CONCURRENCY"
elif os.environ.get("REDIS_URL"):
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    workers = len(cores) if cores else (os.cpu_count() or 1)
    _why = "one per core, as REDIS_URL lets workers share streams"
else:
    workers = 1
    _why = (
        "one: without REDIS_URL a stream can only follow answers written by its own worker "
        "(set REDIS_URL for one worker per core)"
    )
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


# Every worker counts into files of one directory (prometheus_client's multiprocess mode), so
# that /metrics, whichever worker answers, reports the whole service (chatapp/metrics.py). One
# given in PROMETHEUS_MULTIPROC_DIR is emptied at start; else the master makes one (in
# XDG_RUNTIME_DIR if set, as systemd's RuntimeDirectory is), and removes it when it exits. Set
# here, in the master, so that every worker inherits it.
_metrics_dir_made = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_made:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="chatapp-metrics-", dir=os.environ.get("XDG_RUNTIME_DIR") or None
    )


def on_starting(server):  # noqa: ANN001 - gunicorn's hook signature
    """Say how many workers and why; start the metrics of this service from zero."""
    server.log.info("chatapp: %d worker%s: %s", workers, "" if workers == 1 else "s", _why)
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    """A worker is gone: its gauges leave the service's (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001 - gunicorn's hook signature
    if _metrics_dir_made:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


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
