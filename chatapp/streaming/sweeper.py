"""Nothing spins forever: answers whose writer vanished are marked `interrupted`.

Every worker periodically touches the answers it is writing, and marks as interrupted any
`streaming` answer nobody has touched for STALE_AFTER seconds (its worker died or was killed).
Such an answer never got Claude's report of its output tokens; if the API had taken its
request (its prompt's tokens are stored), what it wrote is counted, as for any answer cut
short (`chatapp.llm.tokens`).

Each round also deletes what has outlived CHATAPP_RETAIN_DAYS and CHATAPP_AUDIT_RETAIN_DAYS
(`chatapp.retention`), a few small batches at a time.

While the database is away nobody can touch their answers, so after an outage a sweeper judges
nothing stale for STALE_AFTER seconds: the workers that live through it touch their answers
again first, and only the answers of a worker that died stay untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

import gevent
import redis
from flask import Flask
from gevent.pool import Pool
from sqlalchemy import select, update

from .. import retention
from ..database import background_lock_waits, unreachable
from ..extensions import db
from ..models import Message, Status, utcnow
from ..outage import Outage

log = logging.getLogger(__name__)

INTERRUPTED = "The server stopped while writing this answer. The text so far is kept."
COUNTS_AT_ONCE = 8  # orphans whose output tokens are counted at the same time
STOP_WAIT = 1.0  # seconds a stop waits for the sweeper to end before killing it again


class Sweeper:
    """A greenlet per worker that keeps live answers fresh and ends orphaned ones."""

    def __init__(
        self,
        app: Flask,
        live_ids: Callable[[], Collection[int]],
        on_interrupted: Callable[[list[int]], None],
        count_output: Callable[[str, str], int],
        delivered: Callable[[int], tuple[str, str] | None] = lambda _message_id: None,
        database: Outage | None = None,
    ) -> None:
        self._app = app
        self._live_ids = live_ids
        self._on_interrupted = on_interrupted
        self._delivered = delivered
        self._count_output = count_output  # (model, text) -> output tokens
        self._interval = float(app.config["SWEEP_INTERVAL"])
        self._stale_after = float(app.config["STALE_AFTER"])
        self._database = database or Outage("the database")
        self._judge_after = 0.0  # (monotonic) no answer is judged stale before this
        self._greenlet: gevent.Greenlet | None = None

    def ensure_running(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        greenlet, self._greenlet = self._greenlet, None
        # Killed again until it is dead: a kill that lands inside a library that swallows it
        # (seen once on PostgreSQL: the sweeper went back to sleep) must not hang the stop.
        while greenlet is not None and not greenlet.dead:
            greenlet.kill(timeout=STOP_WAIT)

    def sweep(self) -> int:
        """Touch this worker's live answers; interrupt stale ones. Returns how many ended."""
        live = list(self._live_ids())
        now = utcnow()
        judging = time.monotonic() >= self._judge_after
        with self._app.app_context():
            with background_lock_waits(db.session.connection()):
                if live:
                    # Rows are locked in id order, as the group commit writes them: two writers
                    # that lock in the same order never deadlock.
                    locked = (
                        select(Message.id)
                        .where(Message.id.in_(live))
                        .order_by(Message.id)
                        .with_for_update()
                    )
                    db.session.execute(
                        update(Message)
                        .where(Message.id.in_(list(db.session.scalars(locked))))
                        .values(updated_at=now)
                    )
                ended = []
                if judging:
                    stale = (
                        select(Message.id)
                        .where(Message.status == Status.STREAMING.value)
                        .where(Message.updated_at < now - timedelta(seconds=self._stale_after))
                    )
                    if live:
                        stale = stale.where(Message.id.not_in(live))
                    ended = list(db.session.scalars(stale))
            db.session.commit()
        uncounted = {}
        for message_id in ended:
            what = self._interrupt(message_id, now)
            if what is not None:
                uncounted[message_id] = what
        if ended:
            log.warning(
                "marked %d answers interrupted: no progress for %gs", len(ended), self._stale_after
            )
            self._on_interrupted(ended)
        self._count(uncounted)  # after listeners have their answers' end: counting takes a while
        return len(ended)

    def _interrupt(self, message_id: int, now: datetime) -> tuple[str, str] | None:
        """End one orphan, keeping every character a reader may have seen; return the model
        and the text whose output tokens are still to be counted, if any."""
        delivered = self._delivered(message_id)
        with self._app.app_context():
            message = db.session.get(Message, message_id)
            if message is None or message.status != Status.STREAMING.value:
                return None
            thinking, text = message.thinking, message.content
            if delivered is not None:
                # Readers may have seen more than the last group commit stored before the
                # worker died.
                thinking = max(thinking, delivered[0], key=len)
                text = max(text, delivered[1], key=len)
            message.content, message.thinking = text, thinking
            message.status = Status.INTERRUPTED.value
            message.error = INTERRUPTED
            message.updated_at = now
            unreported = message.input_tokens is not None and message.output_tokens is None
            model = message.model or ""
            with background_lock_waits(db.session.connection()):
                db.session.flush()
            db.session.commit()
        return (model, thinking + text) if unreported and (thinking or text) else None

    def _count(self, uncounted: dict[int, tuple[str, str]]) -> None:
        """Store the output tokens of orphans, counted a few at a time."""

        def count(message_id: int, model: str, text: str) -> None:
            tokens = self._count_output(model, text)
            try:
                with self._app.app_context():
                    db.session.execute(
                        update(Message)
                        .where(Message.id == message_id)
                        .where(Message.output_tokens.is_(None))
                        .values(output_tokens=tokens)
                    )
                    db.session.commit()
            except Exception:
                log.exception("could not store the output tokens of answer %s", message_id)

        pool = Pool(COUNTS_AT_ONCE)
        for message_id, (model, text) in uncounted.items():
            pool.spawn(count, message_id, model, text)
        pool.join()

    def _run(self) -> None:
        failing = False
        while True:
            try:
                self.sweep()
            except Exception as exc:
                if unreachable(exc):
                    self._database.failed(exc)
                    self._judge_after = float("inf")  # until a sweep works again
                elif isinstance(exc, redis.RedisError):
                    pass  # Redis holds an orphan's text; the relay says it is away
                else:
                    if not failing:
                        log.exception("sweep failed; trying again every %gs", self._interval)
                    failing = True
            else:
                if failing:
                    log.info("sweeping works again")
                failing = False
                if self._judge_after == float("inf"):
                    self._judge_after = time.monotonic() + self._stale_after
                self._database.succeeded()
            try:
                retention.sweep(self._app)  # CHATAPP_RETAIN_DAYS, CHATAPP_AUDIT_RETAIN_DAYS
            except Exception as exc:
                if not unreachable(exc):
                    log.exception("retention failed; trying again in %gs", self._interval)
            gevent.sleep(self._interval)
