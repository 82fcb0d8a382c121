"""The paced fake Anthropic upstream of the benchmark, as its own process.

It is the demo upstream of `python -m chatapp.llm.demo` (same `FakeUpstream`, same pacing
options), with one difference: every reply is the same long text (`--reply-chars`), so that
each answer streams for long enough to measure. The demo's own replies last 4-5 s at the
reference pace. The replies are queued with the fake's public `push(Scenario(text=...))`.

    python bench/upstream.py --port 9100 --first-token 0.5 --tokens-per-second 50 \
        --piece-chars 20 --reply-chars 4000 --replies 5000
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from common import (  # noqa: E402
    FIRST_TOKEN_SECONDS,
    PIECE_CHARS,
    TOKENS_PER_SECOND,
    reply_text,
)

from chatapp.llm.demo import FakeUpstream, Pace, Scenario  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Serve paced long replies until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--first-token", type=float, default=FIRST_TOKEN_SECONDS)
    parser.add_argument("--tokens-per-second", type=float, default=TOKENS_PER_SECOND)
    parser.add_argument("--piece-chars", type=int, default=PIECE_CHARS)
    parser.add_argument("--ping-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reply-chars", type=int, default=4000, help="characters of every reply")
    parser.add_argument("--replies", type=int, default=5000, help="long replies queued")
    args = parser.parse_args(argv)

    pace = Pace(
        first_token_seconds=(args.first_token, args.first_token),
        tokens_per_second=(args.tokens_per_second, args.tokens_per_second),
        ping_seconds=args.ping_seconds,
        piece_chars=(args.piece_chars, args.piece_chars),
    )
    upstream = FakeUpstream(pace, seed=args.seed)
    text = reply_text(args.reply_chars)
    upstream.push(*(Scenario(text=text) for _ in range(args.replies)))
    url = upstream.start(args.host, args.port)
    print(
        f"bench upstream on {url}: {args.replies} replies of {len(text)} characters",
        file=sys.stderr,
    )

    done = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, done.set)
    gevent.signal_handler(signal.SIGINT, done.set)
    done.wait()
    upstream.stop()


if __name__ == "__main__":
    main()
