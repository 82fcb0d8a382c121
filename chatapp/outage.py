"""Something the worker depends on (the database, Redis) that may go away for a while.

Whatever keeps failing against it (group commits every tick, each request) reports here, and
the log says it once: one line when it starts failing, one when it answers again, never one
per try. /metrics and /healthz read the same state.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class Outage:
    """Whether `name` answers, as this worker last found it."""

    def __init__(self, name: str, *, consequence: str = "") -> None:
        self.name = name
        self._consequence = consequence  # what the worker does meanwhile, for the first line
        self.since: float | None = None  # when it started failing (monotonic); None: it answers
        self.error = ""  # what the first failure said
        self.failures = 0  # failed tries during this outage

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException | str) -> None:
        """A try failed; the first failure of an outage is logged."""
        self.failures += 1
        if self.since is not None:
            return
        self.since = time.monotonic()
        self.error = error if isinstance(error, str) else describe(error)
        log.warning(
            "%s is not reachable (%s)%s",
            self.name,
            self.error,
            f"; {self._consequence}" if self._consequence else "",
        )

    def succeeded(self) -> None:
        """A try worked; the first success after an outage is logged."""
        if self.since is None:
            return
        log.warning(
            "%s answers again after %.1fs (%d failed tries meanwhile)",
            self.name,
            time.monotonic() - self.since,
            self.failures,
        )
        self.since, self.error, self.failures = None, "", 0


def describe(error: BaseException) -> str:
    """A one-line account of `error`: the driver's own exception and the first line of what it
    said (not the statement and parameters SQLAlchemy adds to its message)."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    said = lines[0].strip() if lines else ""
    name = type(cause).__name__
    return f"{name}: {said}" if said else name
