"""`make bench-render`: the server's markdown work per answer is linear in the answer's length.

Each case is an answer of about 2k, 20k and 200k characters, streamed through the app's
renderer (`chatapp.render.live.LiveMarkdown`) in the chunks a frame carries, then finished.
The measure is the CPU time (`time.process_time`) of those `feed` and `finish` calls, the best
of a few repeats; the text and its chunks are made before the clock starts.

- `mixed`: a realistic answer (headings, paragraphs, bullet and numbered lists, fenced code
  of 10-60 lines in several languages, tables, blockquotes), deterministic for a seed;
- `fence`: one huge fenced code block (the renderer appends to an open fence);
- `list`: one huge bullet list, and `table`: one huge table (a tail that long is rendered
  again only after it has grown by 1/8).

Chunks are what the app's frames carry at the reference pace: upstream deltas of 5-40
characters, 10 a second, coalesced into frames at most every 50 ms, so a frame holds one
delta, sometimes two. Linear means the cost per character stays put as the answer grows: the
table's last column is that cost relative to the same case at the smallest size (about 1).

    .venv/bin/python bench/render.py                     # 2k, 20k, 200k; every case
    .venv/bin/python bench/render.py --cases mixed --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatapp.render.live import LONG_TAIL, REGROW, LiveMarkdown

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"

SIZES = (2_000, 20_000, 200_000)
DELTA_CHARS = (5, 40)  # an upstream text delta, uniform
TWO_DELTAS = 0.25  # share of frames that coalesce two deltas
# A per-character cost this many times that of the smallest size is clearly not linear.
SUPERLINEAR = 2.0

WORDS = (
    "request stream answer server worker frame listener block token render cache queue "
    "latency budget gevent greenlet socket buffer offset message conversation database "
    "commit session proxy header browser event channel retry timeout upstream model "
    "the a of to and in is that for it with as on be this by are or which can will not "
    "each when then from into only once every more than its their your our how why what "
    "café naïve Grüße 東京 résumé"
).split()
INLINE = (
    "`{w}()`",
    "**{w}**",
    "*{w}*",
    "[{w}](https://example.com/{w})",
    "`a < b && c > d`",
    "“{w}”",
    "{w} & {w}",
    "~~{w}~~",
)
LANGUAGES = ("python", "javascript", "sql", "bash", "go", "rust")


class Writer:
    """Markdown of the kinds of blocks an answer has, from one seeded random source."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def word(self) -> str:
        return self.random.choice(WORDS)

    def sentence(self) -> str:
        count = self.random.randint(6, 18)
        words = []
        for _ in range(count):
            if self.random.random() < 0.08:
                words.append(self.random.choice(INLINE).format(w=self.word()))
            else:
                words.append(self.word())
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.random.choice(".....?!:")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.random.randint(2, 6)))

    def heading(self) -> str:
        level = self.random.choice("##  ### ### ####".split())
        return f"{level} {self.sentence().rstrip('.?!:')}"

    def bullets(self, items: int | None = None) -> str:
        lines = []
        for _ in range(items or self.random.randint(3, 8)):
            lines.append(f"- {self.sentence()}")
            if self.random.random() < 0.2:
                for _ in range(self.random.randint(1, 3)):
                    lines.append(f"  - {self.sentence()}")
        return "\n".join(lines)

    def numbered(self) -> str:
        return "\n".join(f"{i}. {self.sentence()}" for i in range(1, self.random.randint(3, 7) + 1))

    def quote(self) -> str:
        return "\n".join(f"> {self.sentence()}" for _ in range(self.random.randint(1, 3)))

    def table(self, rows: int | None = None) -> str:
        columns = self.random.randint(3, 5)
        header = "| " + " | ".join(self.word().title() for _ in range(columns)) + " |"
        rule = "|" + "|".join(
            self.random.choice(("---", ":--", "--:", ":-:")) for _ in range(columns)
        )
        lines = [header, rule + "|"]
        for _ in range(rows or self.random.randint(3, 12)):
            cells = (
                self.random.choice(
                    (self.word(), f"`{self.word()}`", str(self.random.randint(0, 9999)))
                )
                for _ in range(columns)
            )
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def code_line(self, language: str, depth: int) -> str:
        name, other = self.word().replace("é", "e"), self.word()
        n = self.random.randint(0, 99)
        pick = self.random.randrange(4)
        if language == "python":
            body = (
                f"{name}_{n} = {other!r}.split() if {n} < len(items) else None",
                f"for {name} in range({n}):",
                f"return [x * {n} for x in {name}s if x]  # {other} & <b>",
                f'log.info("{other}: %s", {name}_{n})',
            )[pick]
        elif language == "javascript":
            body = (
                f"const {name}{n} = await fetch(`/api/{other}?n=${{{n}}}`);",
                f"if ({name}.length > {n} && ready) {{",
                f"  return {name}.map((x) => x * {n});",
                f"}} // {other} <done>",
            )[pick]
        elif language == "sql":
            body = (
                f"SELECT {name}, count(*) AS n{n} FROM {other}s",
                f"WHERE {name}_id > {n} AND status <> 'done'",
                f"GROUP BY {name} ORDER BY n{n} DESC",
                f"LIMIT {n}; -- {other}",
            )[pick]
        elif language == "bash":
            body = (
                f'{name}="$(cat /tmp/{other}.{n})"',
                f'if [ -n "${name}" ] && [ {n} -gt 3 ]; then',
                f"  grep -c '{other}' \"$file\" | sort -n > out.{n}",
                f"fi  # {other}",
            )[pick]
        elif language == "go":
            body = (
                f"{name}{n}, err := {other}.Read(ctx, {n})",
                "if err != nil {",
                f'    return fmt.Errorf("{other}: %w", err)',
                "}",
            )[pick]
        else:
            body = (
                f"let {name}_{n}: Vec<u32> = {other}.iter().map(|x| x * {n}).collect();",
                f"match {name} {{ Some(v) if v > {n} => v, _ => 0 }};",
                f'println!("{{}} {other}", {name}_{n});',
                f"impl {name.title()} for {other.title()} {{}}",
            )[pick]
        return "    " * depth + body

    def code(self, lines: int | None = None, language: str | None = None) -> str:
        language = language or self.random.choice(LANGUAGES)
        depth = 0
        out = []
        for _ in range(lines or self.random.randint(10, 60)):
            out.append(self.code_line(language, depth))
            depth = max(0, min(3, depth + self.random.choice((-1, 0, 0, 1))))
        return f"```{language}\n" + "\n".join(out) + "\n```"

    def block(self) -> str:
        kinds: list[tuple[Callable[[], str], float]] = [
            (self.paragraph, 0.38),
            (self.heading, 0.12),
            (self.bullets, 0.14),
            (self.numbered, 0.08),
            (self.code, 0.14),
            (self.table, 0.07),
            (self.quote, 0.07),
        ]
        make = self.random.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return make()


def grow(size: int, first: str, more: Callable[[], str], joiner: str) -> str:
    """`first`, then `more()` joined on until the text has `size` characters (cut there)."""
    parts, total = [first], len(first)
    while total < size:
        part = more()
        parts.append(part)
        total += len(joiner) + len(part)
    return joiner.join(parts)[:size]


def mixed(size: int, seed: int) -> str:
    writer = Writer(seed)
    return grow(size, writer.heading(), writer.block, "\n\n")


def fence(size: int, seed: int) -> str:
    writer = Writer(seed)
    body = grow(
        size - 4, "```python", lambda: writer.code_line("python", writer.random.randint(0, 3)), "\n"
    )
    return body + "\n```"


def bullet_list(size: int, seed: int) -> str:
    writer = Writer(seed)
    return grow(size, "- " + writer.sentence(), lambda: writer.bullets(1), "\n")


def table(size: int, seed: int) -> str:
    writer = Writer(seed)
    head = writer.table(rows=1)
    row = head.split("\n")[-1]
    columns = row.count("|") - 1

    def more() -> str:
        return "| " + " | ".join(writer.word() for _ in range(columns)) + " |"

    return grow(size, head, more, "\n")


CASES: dict[str, Callable[[int, int], str]] = {
    "mixed": mixed,
    "fence": fence,
    "list": bullet_list,
    "table": table,
}


def chunks(text: str, seed: int) -> list[str]:
    """`text` cut into what frames carry: one delta of 5-40 characters, sometimes two."""
    rand = random.Random(seed)
    out, start = [], 0
    while start < len(text):
        deltas = 2 if rand.random() < TWO_DELTAS else 1
        size = sum(rand.randint(*DELTA_CHARS) for _ in range(deltas))
        out.append(text[start : start + size])
        start += size
    return out


def stream(pieces: list[str]) -> tuple[float, int]:
    """Feed `pieces` to a fresh renderer and finish it: CPU seconds and HTML characters out."""
    live = LiveMarkdown(1)
    out = 0
    start = time.process_time()
    for piece in pieces:
        out += len(live.feed(piece))
    out += len(live.finish())
    return time.process_time() - start, out


def measure(case: str, size: int, seed: int, repeats: int) -> dict[str, Any]:
    text = CASES[case](size, seed)
    pieces = chunks(text, seed)
    best = float("inf")
    html_chars = 0
    for _ in range(repeats):
        gc.collect()
        seconds, html_chars = stream(pieces)
        best = min(best, seconds)
    return {
        "case": case,
        "chars": len(text),
        "chunks": len(pieces),
        "cpu_ms": best * 1000,
        "us_per_1k_chars": best * 1e6 / (len(text) / 1000),
        "html_chars_out": html_chars,
    }


def table_text(results: list[dict[str, Any]]) -> str:
    header = ["case", "chars", "chunks", "total ms", "µs/1k ch", "vs smallest", "HTML out/ch"]
    rows = [header]
    for r in results:
        rows.append(
            [
                r["case"],
                f"{r['chars']:,}",
                f"{r['chunks']:,}",
                f"{r['cpu_ms']:.1f}",
                f"{r['us_per_1k_chars']:.0f}",
                f"{r['ratio']:.2f}x",
                f"{r['html_chars_out'] / r['chars']:.1f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", help=f"JSON file (default {RESULTS.relative_to(ROOT)}/render.json)"
    )
    args = parser.parse_args(argv)

    sizes = sorted(args.sizes)
    print(
        f"chatapp render bench: {', '.join(f'{s:,}' for s in sizes)} characters; frames of "
        f"{DELTA_CHARS[0]}-{DELTA_CHARS[1]}-character deltas ({TWO_DELTAS:.0%} with two); "
        f"best of {args.repeats} (CPU time)",
        flush=True,
    )
    measure("mixed", 1000, args.seed, 1)  # warm up: imports, lexers, caches
    results = []
    for case in args.cases:
        base: float | None = None
        for size in sizes:
            result = measure(case, size, args.seed, args.repeats)
            base = base or result["us_per_1k_chars"]
            result["ratio"] = result["us_per_1k_chars"] / base
            results.append(result)
    print()
    print(table_text(results))
    print()
    worst = {case: max(r["ratio"] for r in results if r["case"] == case) for case in args.cases}
    linear = all(ratio <= SUPERLINEAR for ratio in worst.values())
    mark = "PASS" if linear else "FAIL"
    print(
        f"[{mark}] markdown work linear in message length: per-character cost at most "
        f"{max(worst.values()):.2f}x that of the smallest size (limit {SUPERLINEAR:g}x)"
    )
    out = Path(args.out) if args.out else RESULTS / "render.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "repeats": args.repeats,
        "delta_chars": DELTA_CHARS,
        "two_deltas": TWO_DELTAS,
        "long_tail": LONG_TAIL,
        "regrow": REGROW,
        "limit": SUPERLINEAR,
        "linear": linear,
        "worst_ratio": worst,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if linear else 1


if __name__ == "__main__":
    sys.exit(main())
