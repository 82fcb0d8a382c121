"""What a sysadmin's tools ask the service: is it up, and what is it holding."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import text

from .extensions import db
from .streaming import streams

bp = Blueprint("operations", __name__)

# name: (type, help). Values are this worker's; each gunicorn worker answers for itself.
_METRICS = {
    "answers_live": ("gauge", "Answers this worker is writing now."),
    "streams_open": ("gauge", "Server-sent event responses this worker is writing now."),
    "answer_subscriptions": ("gauge", "Listeners subscribed to live answers."),
    "conversation_subscriptions": ("gauge", "Open pages subscribed to their conversation."),
    "db_flushes": ("counter", "Group commits of streamed text."),
    "db_connections_in_use": ("gauge", "Database connections checked out of the pool."),
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
    """This worker's gauges and counters in Prometheus' text format."""
    values = dict(streams().counts())
    pool = db.engine.pool
    values["db_connections_in_use"] = int(getattr(pool, "checkedout", lambda: 0)())
    lines = []
    for name, (kind, help_text) in _METRICS.items():
        metric = f"chatapp_{name}" + ("_total" if kind == "counter" else "")
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", f"{metric} {values[name]}"]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
