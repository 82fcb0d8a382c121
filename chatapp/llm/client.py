"""The Anthropic client this worker uses: Claude itself, or the demo upstream without a key."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anthropic
import httpx2

from .tokens import OutputCounter

log = logging.getLogger(__name__)


class Claude:
    """Hands out one SDK client per worker, made on first use (after gunicorn forks)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config
        self._client: anthropic.Anthropic | None = None
        self._counter: OutputCounter | None = None
        self._demo_upstream: Any = None

    @property
    def demo(self) -> bool:
        """True when no API key is set: replies come from the built-in demo upstream."""
        return not self._config.get("ANTHROPIC_API_KEY")

    @property
    def client(self) -> anthropic.Anthropic:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    @property
    def counter(self) -> OutputCounter:
        """Counts the output tokens of answers cut short (see `chatapp.llm.tokens`)."""
        if self._counter is None:
            self._counter = OutputCounter(self.client)
        return self._counter

    def close(self) -> None:
        """Release connections and stop the demo upstream, if one runs."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._counter = None
        if self._demo_upstream is not None:
            self._demo_upstream.stop()
            self._demo_upstream = None

    def _make_client(self) -> anthropic.Anthropic:
        config = self._config
        api_key: str
        base_url: str | None
        if self.demo:
            api_key, base_url = "demo", self._start_demo_upstream()
        else:
            api_key, base_url = config["ANTHROPIC_API_KEY"], config.get("ANTHROPIC_BASE_URL")
        idle = float(config["UPSTREAM_IDLE_TIMEOUT"])
        timeout = httpx2.Timeout(idle, connect=float(config["UPSTREAM_CONNECT_TIMEOUT"]))
        # One connection per live answer: the pool must not make answers queue for a slot.
        # Few idle ones: the pool probes every idle connection's socket each time a request
        # starts or a response closes (gevent's poll, tens of µs each), so 100 idle connections
        # cost several ms of CPU per answer; answers starting reuse what answers ending left.
        limits = httpx2.Limits(
            max_connections=int(config["UPSTREAM_MAX_CONNECTIONS"]),
            max_keepalive_connections=int(config["UPSTREAM_IDLE_CONNECTIONS"]),
        )
        return anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=int(config["UPSTREAM_MAX_RETRIES"]),
            timeout=timeout,
            http_client=httpx2.Client(timeout=timeout, limits=limits),
        )

    def _start_demo_upstream(self) -> str:
        from .demo import FakeUpstream, Pace

        first = self._config["DEMO_FIRST_TOKEN_SECONDS"]
        rate = self._config["DEMO_TOKENS_PER_SECOND"]
        self._demo_upstream = FakeUpstream(
            Pace(first_token_seconds=_span(first), tokens_per_second=_span(rate))
        )
        url: str = self._demo_upstream.start()
        log.info("demo mode: replies come from the built-in upstream at %s, not from Claude", url)
        return url


def _span(value: Any) -> tuple[float, float]:
    """Accept a single number or a [low, high] pair from config."""
    if isinstance(value, int | float):
        return (float(value), float(value))
    low, high = value
    return (float(low), float(high))
