"""Sign-in attempts are limited: a few failures per username and address, then a pause."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class Throttle:
    """Failed attempts in a sliding window, per key (in this worker's memory)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def blocked_for(self, *keys: str) -> float:
        """Seconds until any of `keys` may try again (0 when all may)."""
        now = time.monotonic()
        waits = [
            failures[0] + self.window - now
            for key in keys
            if len(failures := self._recent(key, now)) >= self.limit
        ]
        if not any(self._failures[key] for key in keys):
            for key in keys:
                self._failures.pop(key, None)  # keep memory to the keys that failed lately
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
