"""Counters and histograms of this worker, written in Prometheus' text format."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable


class Histogram:
    """Observations counted into fixed buckets (upper bounds in seconds)."""

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        running += self.counts[-1]
        out += [
            f'{name}_bucket{{le="+Inf"}} {running}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {running}",
        ]
        return out


class Meter:
    """What the answers of this worker did since it started."""

    def __init__(self) -> None:
        self.frames = 0
        self.characters = 0
        self.answers: Counter[str] = Counter()  # by final status
        self.upstream_errors: Counter[str] = Counter()  # by kind
        self.tool_calls: Counter[tuple[str, bool]] = Counter()  # by tool, and failed or not
        self.tokens: Counter[tuple[str, str]] = Counter()  # by model and kind
        self.first_token = Histogram((0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30))
        self.db_flush = Histogram((0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.db_flush_failures = 0  # group commits the database did not take (kept, retried)
        self.final_write_failures = 0  # tries to store an answer's end that failed (retried)

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
            self.tokens[model, kind] += count

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The whole exposition: `gauges` (name: (help, value)) and this meter's series."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples])

        for name, (help_text, value) in gauges.items():
            family(f"chatapp_{name}", "gauge", help_text, [f"chatapp_{name} {value:g}"])
        family(
            "chatapp_db_flushes_total",
            "counter",
            "Group commits of streamed text.",
            [f"chatapp_db_flushes_total {sum(self.db_flush.counts)}"],
        )
        family(
            "chatapp_db_flush_failures_total",
            "counter",
            "Group commits that failed (the database did not answer); their text is kept and "
            "written by a later one.",
            [f"chatapp_db_flush_failures_total {self.db_flush_failures}"],
        )
        family(
            "chatapp_final_write_failures_total",
            "counter",
            "Tries to store an answer's end that failed; each is tried again.",
            [f"chatapp_final_write_failures_total {self.final_write_failures}"],
        )
        family(
            "chatapp_frames_total",
            "counter",
            "Frames sent to listeners.",
            [f"chatapp_frames_total {self.frames}"],
        )
        family(
            "chatapp_characters_total",
            "counter",
            "Answer characters received from the API.",
            [f"chatapp_characters_total {self.characters}"],
        )
        family(
            "chatapp_tokens_total",
            "counter",
            "Tokens billed by the API (answers and namings), by model and kind.",
            [
                f'chatapp_tokens_total{{model="{model}",kind="{kind}"}} {n}'
                for (model, kind), n in sorted(self.tokens.items())
            ],
        )
        family(
            "chatapp_answers_total",
            "counter",
            "Answers ended, by status.",
            [f'chatapp_answers_total{{status="{s}"}} {n}' for s, n in sorted(self.answers.items())],
        )
        family(
            "chatapp_upstream_errors_total",
            "counter",
            "Answers that failed upstream, by kind.",
            [
                f'chatapp_upstream_errors_total{{kind="{k}"}} {n}'
                for k, n in sorted(self.upstream_errors.items())
            ],
        )
        family(
            "chatapp_tool_calls_total",
            "counter",
            "Tool calls run for Claude, by tool and outcome.",
            [
                f'chatapp_tool_calls_total{{tool="{tool}",outcome="{outcome}"}} {n}'
                for (tool, failed), n in sorted(self.tool_calls.items())
                for outcome in ["error" if failed else "ok"]
            ],
        )
        family(
            "chatapp_first_token_seconds",
            "histogram",
            "Time from asking Claude to its first token.",
            self.first_token.lines("chatapp_first_token_seconds"),
        )
        family(
            "chatapp_db_flush_seconds",
            "histogram",
            "Duration of each group commit.",
            self.db_flush.lines("chatapp_db_flush_seconds"),
        )
        return "\n".join(lines) + "\n"
