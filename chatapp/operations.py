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
from .outage import describe
from .streaming import sse, streams
from .streaming.views import STREAM_HEADERS

bp = Blueprint("operations", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str | int], int]:
    """200 when the database (and Redis, if configured) answer; 503 naming what does not, with
    what it said, otherwise ("writes failing" when the database reads but this worker's last
    write failed). Answers whose text waits for the database are counted."""
    registry = streams()
    report: dict[str, str | int] = {"status": "ok", "database": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means unhealthy
        report.update(status="unhealthy", database=type(exc).__name__, database_error=describe(exc))
        registry.database.failed(exc)
    else:
        if registry.database.down:
            # It reads, but this worker's last write failed (SQLite locked or its disk full,
            # say): streamed text is piling up in memory.
            report.update(
                status="unhealthy",
                database="writes failing",
                database_error=registry.database.error,
            )
    finally:
        db.session.close()
    relay = registry.relay
    if relay is not None:
        try:
            relay.ping()
            report["redis"] = "ok"
        except Exception as exc:  # any failure to reach Redis means unhealthy
            report.update(status="unhealthy", redis=type(exc).__name__, redis_error=describe(exc))
    if registry.flusher.waiting or registry.ends_waiting:
        report.update(
            answers_unstored=registry.flusher.waiting, answer_ends_waiting=registry.ends_waiting
        )
    return report, 200 if report["status"] == "ok" else 503


@bp.get("/metrics")
def metrics() -> Response:
    """The service's gauges, counters and histograms in Prometheus' text format: of every
    worker (chatapp.metrics), whichever answers.

    Only for the addresses in CHATAPP_METRICS_ALLOW (loopback by default): to anyone else it
    does not exist (404), like anything that is not theirs.
    """
    if not clients.listed(request.remote_addr, current_app.config["METRICS_ALLOW"]):
        abort(404)
    registry = streams()
    registry.meter.set_gauges(registry.gauges())
    return Response(registry.meter.exposition(), mimetype="text/plain; version=0.0.4")


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
