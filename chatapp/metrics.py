"""The service's counters, gauges and histograms, in Prometheus' own library.

Under gunicorn every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode; chatapp/gunicorn_conf.py makes the directory and
marks dead workers), and a scrape of `/metrics`, whichever worker answers it, adds up the
whole service: counters of every worker since the service started, gauges of the workers
alive now. Without that variable (tests, `flask run`) each app counts in a registry of its
own.
"""

from __future__ import annotations

import os
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The `_created` series (when each counter began) say nothing here, and multiprocess mode has
# none: one exposition either way.
disable_created_metrics()

# Gauges: name -> (help, how the workers' values add up in multiprocess mode).
GAUGES: dict[str, tuple[str, Literal["livesum", "livemin"]]] = {
    "answers_live": ("Answers being written now.", "livesum"),
    "streams_open": ("Server-sent event responses being written now.", "livesum"),
    "answer_subscriptions": ("Listeners subscribed to live answers.", "livesum"),
    "conversation_subscriptions": ("Open pages subscribed to their conversation.", "livesum"),
    "db_connections_in_use": ("Database connections checked out of the pools.", "livesum"),
    "answers_unstored": ("Answers with streamed text the database does not have yet.", "livesum"),
    "answer_ends_waiting": (
        "Answers that ended and wait for the database to store their end.",
        "livesum",
    ),
    "database_reachable": (
        "1 if the database answered every worker's last try, else 0.",
        "livemin",
    ),
    "redis_reachable": (
        "1 if Redis answered every worker's last try (or is not used), else 0.",
        "livemin",
    ),
}


def multiprocess() -> bool:
    """True when the workers share their values through PROMETHEUS_MULTIPROC_DIR."""
    return bool(os.environ.get(MULTIPROCESS_DIR))


class Meter:
    """What the answers of this service did, and what its workers hold now."""

    def __init__(self) -> None:
        # Metrics register with this app's own registry, unless the values go to the shared
        # files: a scrape then reads those, and nothing needs registering.
        self._registry = CollectorRegistry()
        own = None if multiprocess() else self._registry
        self.frames = Counter("chatapp_frames", "Frames sent to listeners.", registry=own)
        self.characters = Counter(
            "chatapp_characters", "Answer characters received from the API.", registry=own
        )
        self.answers = Counter(
            "chatapp_answers", "Answers ended, by status.", ["status"], registry=own
        )
        self.upstream_errors = Counter(
            "chatapp_upstream_errors",
            "Answers that failed upstream, by kind.",
            ["kind"],
            registry=own,
        )
        self.tool_calls = Counter(
            "chatapp_tool_calls",
            "Tool calls run for Claude, by tool and outcome.",
            ["tool", "outcome"],
            registry=own,
        )
        self.tokens = Counter(
            "chatapp_tokens",
            "Tokens billed by the API (answers and namings), by model and kind.",
            ["model", "kind"],
            registry=own,
        )
        self.first_token = Histogram(
            "chatapp_first_token_seconds",
            "Time from asking Claude to its first token.",
            buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30),
            registry=own,
        )
        self.db_flushes = Counter(
            "chatapp_db_flushes", "Group commits of streamed text.", registry=own
        )
        self.db_flush = Histogram(
            "chatapp_db_flush_seconds",
            "Duration of each group commit.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=own,
        )
        self.db_flush_failures = Counter(
            "chatapp_db_flush_failures",
            "Group commits that failed (the database did not answer); their text is kept and "
            "written by a later one.",
            registry=own,
        )
        self.final_write_failures = Counter(
            "chatapp_final_write_failures",
            "Tries to store an answer's end that failed; each is tried again.",
            registry=own,
        )
        self._gauges = {
            name: Gauge(f"chatapp_{name}", help_text, multiprocess_mode=mode, registry=own)
            for name, (help_text, mode) in GAUGES.items()
        }

    def count_tokens(
        self,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
    ) -> None:
        """Add the tokens a request to the API was billed (an answer's, or a naming's)."""
        for kind, count in (
            ("input", input_tokens),
            ("output", output_tokens),
            ("cache_read", cache_read_tokens),
            ("cache_creation", cache_creation_tokens),
        ):
            self.tokens.labels(model, kind).inc(count)

    def count_tool_call(self, tool: str, failed: bool) -> None:
        self.tool_calls.labels(tool, "error" if failed else "ok").inc()

    def observe_flush(self, seconds: float) -> None:
        """One group commit, taken or not, and how long it took."""
        self.db_flushes.inc()
        self.db_flush.observe(seconds)

    def set_gauges(self, values: dict[str, float]) -> None:
        """This worker's part of each gauge, now."""
        for name, value in values.items():
            self._gauges[name].set(value)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format: the whole service's, when it shares them."""
        if not multiprocess():
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)


def counted(counter: Counter) -> float:
    """A counter's value in this process (for checks and logs; a scrape has the service's)."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
