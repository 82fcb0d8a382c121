"""Admission: a worker that is saturated takes new answers through a short, bounded queue.

A worker's one core writes the answers already streaming and opens new ones. Opened faster
than it can, everything queues behind the openings: first tokens come seconds late and live
answers stall. So a worker watches how late its own timer fires (how long greenlets wait for
the core): while that is over BUSY_LAG, a new send waits in a queue, first come first served,
for at most SEND_WAIT seconds; with SEND_QUEUE sends waiting already, or when the wait is up,
it is refused as busy (503 and Retry-After), and the page says so and sends it again by itself.
Answers already streaming keep their pace meanwhile.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import Event

PROBE = 0.05  # seconds between looks at the worker's lag
RELEASE = 5  # waiting sends let in a probe while the worker keeps up (100 a second at most)
RETRY_AFTER = 1  # seconds a refused send waits before it is sent again


@dataclass(frozen=True)
class Limits:
    busy_lag: float  # seconds late a timer may fire before the worker counts as busy
    queue: int  # sends that may wait for a turn
    wait: float  # seconds a send may wait

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Limits:
        return cls(
            busy_lag=float(config["BUSY_LAG_MS"]) / 1000,
            queue=int(config["SEND_QUEUE"]),
            wait=float(config["SEND_WAIT"]),
        )


class Admission:
    """Lets sends in while the worker keeps up, and in turn when it does not."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.lag = 0.0  # how late the worker's timer fired last (seconds)
        self._waiting: deque[Event] = deque()
        self._probe: gevent.Greenlet | None = None

    @property
    def busy(self) -> bool:
        return self.lag > self.limits.busy_lag

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def ensure_running(self) -> None:
        if self._probe is None or self._probe.dead:
            self._probe = gevent.spawn(self._watch)

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.kill()
            self._probe = None

    def admit(self) -> bool:
        """Wait for this send's turn; False if the worker is too busy to take it now."""
        if not self.busy and not self._waiting:
            return True
        if len(self._waiting) >= self.limits.queue:
            return False
        turn = Event()
        self._waiting.append(turn)
        try:
            return turn.wait(self.limits.wait)
        finally:
            if turn in self._waiting:
                self._waiting.remove(turn)

    def _watch(self) -> None:
        """Measure the lag; while the worker keeps up, let a few waiting sends in at each
        probe (the next probe then measures what they cost)."""
        while True:
            started = time.monotonic()
            gevent.sleep(PROBE)
            self.lag = max(time.monotonic() - started - PROBE, 0.0)
            for _turn in range(min(RELEASE, len(self._waiting)) if not self.busy else 0):
                self._waiting.popleft().set()
