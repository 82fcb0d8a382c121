"""Open streams end when their person's session does.

Every request checks the session as it comes in (chatapp.auth.accounts.session_user), but an
event stream is one request that may stay open for hours. So each worker keeps a list of its
open streams with whose they are and the session version they started under, and every
CHATAPP_SESSION_CHECK_SECONDS reads those people's versions in one query: a stream whose
person was disabled, signed out everywhere or given a new password since is ended (its `ended`
event is set, as when the browser leaves). Its browser then reconnects, and is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
from flask import Flask, current_app
from gevent.event import Event
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import User
from ..outage import describe

log = logging.getLogger(__name__)

EXTENSION_KEY = "chatapp.session_watch"
IDS_PER_QUERY = 500


class SessionWatch:
    """This worker's open streams, by whose session they belong to."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._interval = float(app.config["SESSION_CHECK_SECONDS"])
        self._open: dict[Event, tuple[int, int]] = {}  # ended -> (user id, session version)
        self._greenlet: gevent.Greenlet | None = None
        app.extensions[EXTENSION_KEY] = self

    def __len__(self) -> int:
        return len(self._open)

    def watch(self, user_id: int, version: int, ended: Event) -> Callable[[], None]:
        """Set `ended` once the session (`user_id`, `version`) no longer holds; call the
        returned function when the stream ends anyway."""
        self._open[ended] = (user_id, version)
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

        def release() -> None:
            self._open.pop(ended, None)

        return release

    def _run(self) -> None:
        failing = False
        while self._open:
            gevent.sleep(self._interval)
            try:
                self.check()
            except SQLAlchemyError as exc:
                # The database is away for a moment: the streams go on until a check works.
                # Said once, in a line (an outage is not a bug, and comes with no traceback).
                if not failing:
                    log.warning("could not check open streams' sessions (%s)", describe(exc))
                failing = True
            else:
                if failing:
                    log.info("open streams' sessions are checked again")
                failing = False

    def check(self) -> int:
        """End the streams whose session no longer holds; return how many."""
        if not self._open:
            return 0
        ids = sorted({user_id for user_id, _version in self._open.values()})
        now: dict[int, tuple[int, bool]] = {}
        with self._app.app_context():
            for start in range(0, len(ids), IDS_PER_QUERY):
                rows = db.session.execute(
                    select(User.id, User.session_version, User.disabled).where(
                        User.id.in_(ids[start : start + IDS_PER_QUERY])
                    )
                )
                now.update((row.id, (row.session_version, row.disabled)) for row in rows)
                db.session.close()  # hold no connection between the queries
        ended = 0
        for event, (user_id, version) in list(self._open.items()):
            if now.get(user_id) != (version, False):
                event.set()
                self._open.pop(event, None)
                ended += 1
        if ended:
            log.info("ended %d streams whose session ended", ended)
        return ended

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None


def session_watch(app: Flask | None = None) -> SessionWatch:
    """The current app's watch."""
    target = app if app is not None else current_app
    watch: SessionWatch = target.extensions[EXTENSION_KEY]
    return watch
