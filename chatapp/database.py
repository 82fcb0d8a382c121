"""The database as something that can go away or stall: time limits, lock waits, and which
errors mean that it is not reachable.

PostgreSQL: psycopg waits for the server cooperatively, so a query to a dead or hung server
holds only its own greenlet; but with no limit it holds it for ever, since a server that took
the connection and then went silent (a hung host, a network that drops everything) never says
no. So every round trip (a query, a commit, the pool's ping) ends after DATABASE_TIMEOUT
seconds without an answer, and so does connecting (libpq's `connect_timeout`, set in
`config.normalise`). The connection is then closed, and the pool makes a new one when the
database answers again. Migrations may rightly take longer; they run without the limit.

SQLite: a write that finds another process's lock waits in SQLite's own code, which holds the
whole worker and every stream in it. Requests wait up to LOCK_WAIT_MS. Background writes (group
commits, an answer's end, the sweeper) retry by themselves, so they wait at most
BACKGROUND_LOCK_WAIT_MS and try again later instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import gevent
import psycopg
from psycopg.abc import PQGen
from sqlalchemy import Connection, Engine, event
from sqlalchemy import exc as sa_exc

from .extensions import LOCK_WAIT_MS

# Errors that say the database did not answer, or refused the work for now (SQLite: locked,
# disk full): the work is kept or retried, and a person is told to try again.
UNREACHABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # no pooled connection came free in time
)
# A background write waits at most this long for another process's lock (SQLite).
BACKGROUND_LOCK_WAIT_MS = 20
# Seconds a person (or a client) is asked to wait before trying again, in the 503's Retry-After.
RETRY_AFTER = 5

Result = TypeVar("Result")


def unreachable(error: BaseException) -> bool:
    """True when `error` means the database is not answering (rather than a bug)."""
    return isinstance(error, UNREACHABLE)


class TimedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every round trip to the server ends after
    `round_trip_limit` seconds without an answer (None: no limit).

    psycopg sends every exchange with the server (a query, a commit or rollback, a pipeline's
    sync, the pool's ping) through `Connection.wait`, and gives none of them a timeout: this
    gives them one. A timeout psycopg does pass is kept. (`interval` is psycopg's default.)
    """

    round_trip_limit: float | None = None

    def wait(
        self, gen: PQGen[Result], interval: float = 0.1, timeout: float | None = None
    ) -> Result:
        limit = self.round_trip_limit
        if limit is None or timeout is not None:
            return super().wait(gen, interval, timeout)
        timer = gevent.Timeout(limit)
        timer.start()
        try:
            return super().wait(gen, interval)
        except gevent.Timeout as raised:
            if raised is not timer:
                raise
            # The server is somewhere in the middle of the exchange: nothing more can be sent
            # on this connection. Closed, it is invalidated by the pool, not reused.
            self.close()
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:g}s"
            ) from None
        finally:
            timer.close()


class _ClosedPipelines(logging.Filter):
    """psycopg warns when it cannot end a pipeline (a group commit's) on a connection that is
    closed already, given up on: once a try, while the outage is said once (`Outage`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


_quiet_pipelines = _ClosedPipelines()


def limit_round_trips(engine: Engine, seconds: float) -> None:
    """Make `engine`'s PostgreSQL connections give up on a round trip after `seconds`
    (0: never). Other databases are left as they are."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg" or seconds <= 0:
        return
    logging.getLogger("psycopg").addFilter(_quiet_pipelines)  # once: filters are a set

    @event.listens_for(engine, "do_connect")
    def _connect(
        _dialect: object, _record: object, cargs: tuple[Any, ...], cparams: dict[str, Any]
    ) -> TimedConnection:
        connection = TimedConnection.connect(*cargs, **cparams)
        connection.round_trip_limit = seconds
        return connection


@contextmanager
def without_round_trip_limit(connection: Connection) -> Iterator[None]:
    """Within the block, statements on `connection` take as long as they need (migrations);
    the limit is back when the connection returns to the pool."""
    raw = connection.connection.dbapi_connection
    if not isinstance(raw, TimedConnection):
        yield
        return
    limit, raw.round_trip_limit = raw.round_trip_limit, None
    try:
        yield
    finally:
        raw.round_trip_limit = limit


@contextmanager
def background_lock_waits(connection: Connection) -> Iterator[None]:
    """Within the block, a write on `connection` waits at most BACKGROUND_LOCK_WAIT_MS for
    another process's lock (SQLite); the caller retries later. Other databases wait as usual."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql(f"PRAGMA busy_timeout = {BACKGROUND_LOCK_WAIT_MS}")
    try:
        yield
    finally:
        if not connection.invalidated:  # an invalidated one is closed, not handed out again
            try:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}")
            except sa_exc.SQLAlchemyError:
                connection.invalidate()  # never hand a request one that waits too little
