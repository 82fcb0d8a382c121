"""Taking turns in a gevent worker: long work in one greenlet pauses so the others can run.

`gevent.sleep(0)` runs only the greenlets that are ready already. A stream waiting on its
socket is not: it runs after the loop has polled the sockets again, which a timer makes it do.
"""

from __future__ import annotations

import gevent

TURN_SECONDS = 0.0001


def let_streams_run() -> None:
    """Pause until the worker's other greenlets, those waiting on sockets or timers
    included, have had their turn."""
    gevent.sleep(TURN_SECONDS)
