"""What a sysadmin's tools ask the service: is it up, and what is it holding."""

from __future__ import annotations

import json
from collections.abc import Iterator

import gevent
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    stream_with_context,
)
from sqlalchemy import text

from . import clients
from .extensions import db
from .streaming import sse, streams
from .streaming.views import STREAM_HEADERS

bp = Blueprint("operations", __name__)

# Gauges: name -> help. Values are this worker's; each gunicorn worker answers for itself.
_GAUGES = {
    "answers_live": "Answers this worker is writing now.",
    "streams_open": "Server-sent event responses this worker is writing now.",
    "answer_subscriptions": "Listeners subscribed to live answers.",
    "conversation_subscriptions": "Open pages subscribed to their conversation.",
    "db_connections_in_use": "Database connections checked out of the pool.",
}


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """200 when the database (and Redis, if configured) answer; 503 with the reason otherwise."""
    report = {"status": "ok", "database": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means unhealthy
        report.update(status="unhealthy", database=type(exc).__name__)
    finally:
        db.session.close()
    relay = streams().relay
    if relay is not None:
        try:
            relay.ping()
            report["redis"] = "ok"
        except Exception as exc:  # any failure to reach Redis means unhealthy
            report.update(status="unhealthy", redis=type(exc).__name__)
    return report, 200 if report["status"] == "ok" else 503


@bp.get("/metrics")
def metrics() -> Response:
    """This worker's gauges, counters and histograms in Prometheus' text format.

    Only for the addresses in CHATAPP_METRICS_ALLOW (loopback by default): to anyone else it
    does not exist (404), like anything that is not theirs.
    """
    if not clients.listed(request.remote_addr, current_app.config["METRICS_ALLOW"]):
        abort(404)
    hub = streams()
    values = dict(hub.counts())
    values["db_connections_in_use"] = int(getattr(db.engine.pool, "checkedout", lambda: 0)())
    gauges = {name: (help_text, float(values[name])) for name, help_text in _GAUGES.items()}
    body = hub.meter.render(gauges)
    return Response(body, mimetype="text/plain; version=0.0.4")


@bp.get("/connection-check")
def connection_check() -> str:
    """A page that tells whether something between browser and server buffers or cuts streams."""
    return render_template("connection_check.html")


@bp.get("/connection-check/stream")
def connection_check_stream() -> Response:
    """Timed test events: `ticks` events `interval` seconds apart, after `quiet` silent seconds.

    During the quiet part only heartbeat comments flow, as while Claude thinks: a proxy with a
    short idle timeout that ignores them would cut the stream there.
    """
    ticks = min(max(request.args.get("ticks", 10, type=int), 1), 60)
    interval = min(max(request.args.get("interval", 1.0, type=float), 0.05), 5.0)
    quiet = min(max(request.args.get("quiet", 0.0, type=float), 0.0), 300.0)
    heartbeat = streams().app.config["HEARTBEAT_SECONDS"]
    body = _ticks(ticks, interval, quiet, float(heartbeat))
    return Response(stream_with_context(body), mimetype="text/event-stream", headers=STREAM_HEADERS)


def _ticks(ticks: int, interval: float, quiet: float, heartbeat: float) -> Iterator[str]:
    yield sse.event(json.dumps({"quiet": quiet}), name="hello")
    while quiet > 0:
        pause = min(heartbeat, quiet)
        gevent.sleep(pause)
        quiet -= pause
        yield sse.comment("keep-alive")
    for n in range(ticks):
        yield sse.event(json.dumps({"n": n, "interval": interval}), name="tick", id=str(n))
        if n < ticks - 1:
            gevent.sleep(interval)
    yield sse.event(json.dumps({"ticks": ticks}), name="done")
