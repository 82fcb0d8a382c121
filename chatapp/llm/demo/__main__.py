"""`python -m chatapp.llm.demo`: serve the demo upstream on its own, for `make run` against a
separate process or for benchmarks."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after patching, as every module that opens sockets
import sys  # noqa: E402

import gevent  # noqa: E402

from .scenario import Pace  # noqa: E402
from .upstream import FakeUpstream  # noqa: E402


def _range(values: list[float]) -> tuple[float, float]:
    return (values[0], values[-1])


def main(argv: list[str] | None = None) -> None:
    """Serve the demo upstream until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m chatapp.llm.demo",
        description="Serve an Anthropic-compatible demo Messages API with paced streaming.",
    )
    default = Pace()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--first-token",
        type=float,
        nargs="+",
        metavar="SECONDS",
        default=list(default.first_token_seconds),
        help="seconds before the first token: one value, or a range LOW HIGH",
    )
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        nargs="+",
        metavar="RATE",
        default=list(default.tokens_per_second),
        help="tokens per second (about 4 characters each): one value, or a range LOW HIGH",
    )
    parser.add_argument(
        "--piece-chars",
        type=int,
        nargs="+",
        metavar="CHARS",
        default=list(default.piece_chars),
        help="characters per text delta: one value, or a range LOW HIGH",
    )
    parser.add_argument("--ping-seconds", type=float, default=default.ping_seconds)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    pace = Pace(
        first_token_seconds=_range(args.first_token),
        tokens_per_second=_range(args.tokens_per_second),
        ping_seconds=args.ping_seconds,
        piece_chars=(int(args.piece_chars[0]), int(args.piece_chars[-1])),
    )
    upstream = FakeUpstream(pace, seed=args.seed)
    url = upstream.start(args.host, args.port)
    print(f"Demo Anthropic upstream on {url} (not Claude); Ctrl+C stops it.", file=sys.stderr)
    try:
        gevent.wait()
    except KeyboardInterrupt:
        pass
    finally:
        upstream.stop()


main()
