"""What a sysadmin's tools ask the service: is it up, and what is it holding."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import text

from .extensions import db
from .streaming import streams

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
    """This worker's gauges, counters and histograms in Prometheus' text format."""
    hub = streams()
    values = dict(hub.counts())
    values["db_connections_in_use"] = int(getattr(db.engine.pool, "checkedout", lambda: 0)())
    gauges = {name: (help_text, float(values[name])) for name, help_text in _GAUGES.items()}
    body = hub.meter.render(gauges)
    return Response(body, mimetype="text/plain; version=0.0.4")
