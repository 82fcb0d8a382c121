"""Sign-in attempts are limited: a few failures per username and address, then a pause.

`Throttle` counts failures in this worker's memory: right for one worker, the default.
With REDIS_URL, workers and hosts share them through Redis (`SharedThrottle`), so that
another worker behind the same proxy does not offer a fresh set of guesses; should Redis be
unreachable, each worker falls back to its own memory rather than to no limit at all.

What anyone can make the server remember is bounded. Keys are built from an address and a
username that passed the username rule (at most 80 characters), a key holds at most `limit`
failures, a key forgets them as they leave the window, and a worker keeps at most
`max_keys` keys: past that, those that failed longest ago are forgotten first. In Redis each
key expires with its window.

Flask-Limiter was weighed for this and not taken: it counts requests, where these limits count
failures and forget them on success (its `deduct_when` and reaching into its storage would do
that); and its in-memory storage, its default and its fallback while Redis is down, has no
bound on its size and sweeps every key on a timer thread every 10 ms, which under gevent is a
greenlet holding the hub for as long as the sweep takes. The attack this must survive, many
distinct keys, is what makes both grow.
"""

from __future__ import annotations

import logging
import time
import uuid
from array import array
from collections import OrderedDict

import redis

log = logging.getLogger(__name__)

MAX_KEYS = 10_000  # per throttle and worker: 3 to 8 MB at most (5 or 50 failures a key)


class Throttle:
    """Failed attempts in a sliding window, per key (in this worker's memory)."""

    def __init__(self, limit: int, window: float, *, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        # Times of failures, oldest first, as plain doubles (8 bytes each, not 24 for a float
        # object); keys least recently failed first, the first forgotten when there are too many.
        self._failures: OrderedDict[str, array[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str, now: float) -> array[float] | None:
        """The key's failures still in the window (None, and forgotten, if there are none)."""
        failures = self._failures.get(key)
        if failures is None:
            return None
        gone = next((i for i, t in enumerate(failures) if t > now - self.window), len(failures))
        del failures[:gone]
        if not failures:
            del self._failures[key]
            return None
        return failures

    def blocked_for(self, *keys: str) -> float:
        """Seconds until any of `keys` may try again (0 when all may)."""
        now = time.monotonic()
        waits = [
            failures[0] + self.window - now
            for key in keys
            if (failures := self._recent(key, now)) is not None and len(failures) >= self.limit
        ]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            failures = self._recent(key, now)
            if failures is None:
                failures = self._failures[key] = array("d")
            else:
                self._failures.move_to_end(key)
            failures.append(now)
            # Only the newest `limit` failures decide when the key may try again.
            del failures[: -self.limit]
        self._forget_oldest(now)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _forget_oldest(self, now: float) -> None:
        """Drop keys whose failures left the window, then the least recent beyond max_keys."""
        while self._failures:
            key, failures = next(iter(self._failures.items()))
            if failures[-1] > now - self.window and len(self._failures) <= self.max_keys:
                break
            del self._failures[key]


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
                pipe.zremrangebyrank(self._prefix + key, 0, -self.limit - 1)  # the newest only
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
