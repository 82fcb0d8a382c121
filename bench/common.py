"""What the benchmark's processes agree on: the reply text, the reference pace, statistics.

The runner, the load generator and the paced upstream are separate processes started from
`bench/`; each imports this file by path (the scripts' directory is on `sys.path`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from chatapp.llm.demo import FakeUpstream

# The DESIGN reference load: first token after 0.5 s, then about 50 tokens/s (~4 characters a
# token) in deltas of ~20 characters, i.e. 10 deltas a second.
FIRST_TOKEN_SECONDS = 0.5
TOKENS_PER_SECOND = 50.0
PIECE_CHARS = 20
CHARS_PER_TOKEN = 4  # as the fake counts them
CHARS_PER_SECOND = TOKENS_PER_SECOND * CHARS_PER_TOKEN
UPSTREAM_GAP_SECONDS = PIECE_CHARS / CHARS_PER_SECOND  # 0.1 s between deltas

# Who the load is. The app signs in whoever a trusted proxy names in a header
# (chatapp/auth/proxy.py); the runner makes the loopback address that proxy, and the load
# generator names one user on every request: like one person with many tabs, so every page's
# sidebar lists that user's conversations (up to 50), as it listed all of them before accounts.
USER_HEADER = "X-Remote-User"
USER = "bench"


def reply_text(chars: int) -> str:
    """A markdown answer of exactly `chars` characters, made of the demo upstream's replies.

    The demo's canned replies are 700-1,000 characters (4-5 s at the reference pace), too
    short to measure a steady state; several of them back to back make a long one. They carry
    what the app has to escape (`<`, `&`, quotes) and non-ASCII text.
    """
    fake = FakeUpstream()
    parts: list[str] = []
    total = 0
    part = 0
    while total < chars:
        prompt = f"Benchmark answer, part {part}"
        text = fake.reply_text({"messages": [{"role": "user", "content": prompt}]})
        parts.append(text + "\n\n")
        total += len(text) + 2
        part += 1
    return "".join(parts)[:chars]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p90, p99 and max of `values`."""
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }
