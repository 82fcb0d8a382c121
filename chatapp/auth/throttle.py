"""Sign-in attempts are limited: a few failures per username and address, then a pause.

`Throttle` counts failures in this worker's memory: right for one worker, the default.
With REDIS_URL, workers and hosts share them through Redis (`SharedThrottle`), so that
another worker behind the same proxy does not offer a fresh set of guesses; should Redis be
unreachable, each worker falls back to its own memory rather than to no limit at all.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict, deque

import redis

log = logging.getLogger(__name__)


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


class SharedThrottle:
    """The same limits, counted in Redis for every worker and host of this installation.

    Each key is a sorted set of its failures' times (wall clock, which hosts share), trimmed
    to the window and expiring with it.
    """

    def __init__(self, client: redis.Redis, prefix: str, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._redis = client
        self._prefix = f"{prefix}:login-failures:{limit}:{window:g}:"
        self._fallback = Throttle(limit, window)
        self._warned = False

    def blocked_for(self, *keys: str) -> float:
        now = time.time()
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.zremrangebyscore(self._prefix + key, "-inf", now - self.window)
                pipe.zrange(self._prefix + key, 0, -self.limit, withscores=True)
            replies = pipe.execute()
        except redis.RedisError as exc:
            self._unreachable(exc)
            return self._fallback.blocked_for(*keys)
        # For each key, the failures all but the newest limit - 1: the oldest of them must
        # leave the window before this key may try again.
        waits = [held[0][1] + self.window - now for held in replies[1::2] if held]
        return max(max(waits, default=0.0), self._fallback.blocked_for(*keys))

    def failed(self, *keys: str) -> None:
        now = time.time()
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.zadd(self._prefix + key, {uuid.uuid4().hex: now})
                pipe.expire(self._prefix + key, int(self.window) + 1)
            pipe.execute()
        except redis.RedisError as exc:
            self._unreachable(exc)
            self._fallback.failed(*keys)

    def succeeded(self, *keys: str) -> None:
        self._fallback.succeeded(*keys)
        try:
            self._redis.delete(*(self._prefix + key for key in keys))
        except redis.RedisError as exc:
            self._unreachable(exc)

    def _unreachable(self, exc: redis.RedisError) -> None:
        if not self._warned:
            log.warning("Redis is unreachable (%r); sign-in limits count in this worker", exc)
            self._warned = True
