"""An SVG of a benchmark result, written by hand (no plotting library needed).

python bench/plot.py bench/results/bench-<time>.json     # writes the .svg beside it
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

COLOURS = {
    "relay": "#6b7280",
    "fastapi": "#16a34a",
    "gevent": "#2563eb",
    "redis2": "#7c3aed",
    "gthread": "#ea580c",
}
PANEL_W, PANEL_H = 330, 220
MARGIN = dict(left=56, right=14, top=34, bottom=38)
COLUMNS = 3

Getter = Callable[[dict[str, Any]], float | None]


def _load(run: dict[str, Any], *keys: str) -> float | None:
    value: Any = run.get("load", {})
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, int | float) else None


# (title, log scale, value, budget line or None)
PANELS: list[tuple[str, bool, Getter, float | None]] = [
    ("added time to first token p50 (ms)", True, lambda r: _load(r, "ttft_added_ms", "p50"), 10.0),
    ("added time to first token p99 (ms)", True, lambda r: _load(r, "ttft_added_ms", "p99"), 100.0),
    ("inter-frame gap p99 (ms; upstream 100)", True, lambda r: _load(r, "gap_ms", "p99"), None),
    ("worker CPU ms per 1,000 chars", False, lambda r: r.get("cpu_ms_per_1k_chars"), None),
    ("CPU per char / relay's (x)", False, lambda r: r.get("cpu_vs_relay"), 1.5),
    (
        "characters delivered (%)",
        False,
        lambda r: (
            None
            if not _load(r, "chars_expected")
            else 100.0 * (_load(r, "chars_delivered") or 0) / (_load(r, "chars_expected") or 1)
        ),
        100.0,
    ),
    ("server peak RSS (MB; all workers)", False, lambda r: r.get("rss_peak_mb"), None),
    (
        "worker cores used, 2-12 s after opening",
        False,
        lambda r: r.get("worker_cpu_util_steady"),
        None,
    ),
]


def write_svg(result: dict[str, Any], path: Path) -> None:
    # The capacity runs open faster than the others; they are in the table, not on the plot.
    runs = [dict(r) for r in result["runs"] if "failed" not in r and not r.get("capacity")]
    relay_cpu = {r["n"]: r.get("cpu_ms_per_1k_chars") for r in runs if r["kind"] == "relay"}
    for run in runs:
        base, own = relay_cpu.get(run["n"]), run.get("cpu_ms_per_1k_chars")
        run["cpu_vs_relay"] = own / base if base and own else None
    ns = sorted({r["n"] for r in runs}) or [1]
    kinds = [k for k in COLOURS if any(r["kind"] == k for r in runs)]
    rows = math.ceil(len(PANELS) / COLUMNS)
    width, height = PANEL_W * COLUMNS, PANEL_H * rows + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    meta = result.get("meta", {})
    title = (
        f"chatapp bench {meta.get('started', '')}: {meta.get('reply_chars', '?')}-char answers, "
        f"first token {meta.get('first_token_seconds', '?')} s, "
        f"{meta.get('tokens_per_second', '?')} tokens/s, "
        f"opened at {meta.get('rate', '?')}/s, {meta.get('cpus', '?')} CPUs"
    )
    out.append(f'<text x="10" y="18" font-size="13" font-weight="bold">{escape(title)}</text>')
    out.append(f'<rect x="{width - 150}" y="{height - 22}" width="14" height="2" fill="#dc2626"/>')
    out.append(f'<text x="{width - 130}" y="{height - 16}">DESIGN budget</text>')
    for index, kind in enumerate(kinds):
        x = 10 + index * 110
        out.append(
            f'<rect x="{x}" y="{height - 22}" width="14" height="4" fill="{COLOURS[kind]}"/>'
        )
        out.append(f'<text x="{x + 20}" y="{height - 16}">{kind}</text>')
    for index, (label, log, getter, budget) in enumerate(PANELS):
        ox = (index % COLUMNS) * PANEL_W
        oy = 30 + (index // COLUMNS) * PANEL_H
        out += _panel(ox, oy, label, log, getter, budget, runs, ns, kinds)
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def _panel(
    ox: float,
    oy: float,
    label: str,
    log: bool,
    getter: Getter,
    budget: float | None,
    runs: list[dict[str, Any]],
    ns: list[int],
    kinds: list[str],
) -> list[str]:
    left, top = ox + MARGIN["left"], oy + MARGIN["top"]
    w = PANEL_W - MARGIN["left"] - MARGIN["right"]
    h = PANEL_H - MARGIN["top"] - MARGIN["bottom"]
    points = {
        k: [(r["n"], getter(r)) for r in sorted(runs, key=lambda r: r["n"]) if r["kind"] == k]
        for k in kinds
    }
    values = [v for series in points.values() for _, v in series if v is not None]
    if values and budget is not None:
        values.append(budget)
    out = [f'<text x="{ox + 10}" y="{oy + 20}" font-weight="bold">{escape(label)}</text>']
    out.append(
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#d1d5db"/>'
    )
    if not values:
        out.append(f'<text x="{left + 10}" y="{top + h / 2}" fill="#9ca3af">no data</text>')
        return out
    if log:
        floor = 0.1
        low = math.floor(math.log10(max(min(values), floor)))
        high = math.ceil(math.log10(max(max(values), floor * 10)))
        if high == low:
            high += 1
        ticks = [10.0**e for e in range(low, high + 1)]

        def y_of(v: float) -> float:
            return top + h - (math.log10(max(v, floor)) - low) / (high - low) * h
    else:
        high_v = max(values) * 1.1 or 1.0
        step = _nice_step(high_v / 4)
        ticks = [step * i for i in range(int(high_v / step) + 2)]
        high_v = ticks[-1]

        def y_of(v: float) -> float:
            return top + h - v / high_v * h

    for tick in ticks:
        y = y_of(tick)
        out.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#f3f4f6"/>'
        )
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')

    if budget is not None:
        y = y_of(budget)
        out.append(
            f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dc2626" '
            'stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{left + w - 2}" y="{y - 3:.1f}" text-anchor="end" '
            'fill="#dc2626">budget</text>'
        )

    def x_of(n: int) -> float:
        if len(ns) == 1:
            return left + w / 2
        return (
            left
            + (math.log10(n) - math.log10(ns[0])) / (math.log10(ns[-1]) - math.log10(ns[0])) * w
        )

    for n in ns:
        out.append(f'<text x="{x_of(n):.1f}" y="{top + h + 14}" text-anchor="middle">{n}</text>')
    out.append(
        f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle" '
        'fill="#6b7280">N concurrent</text>'
    )
    for kind, series in points.items():
        xy = [(x_of(n), y_of(v)) for n, v in series if v is not None]
        if len(xy) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{COLOURS[kind]}" stroke-width="2"/>'
            )
        for x, y in xy:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[kind]}"/>')
    return out


def _nice_step(raw: float) -> float:
    exponent = math.floor(math.log10(raw)) if raw > 0 else 0
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * 10**exponent
        if step >= raw:
            return step
    return 10.0 ** (exponent + 1)


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


if __name__ == "__main__":
    source = Path(sys.argv[1])
    write_svg(json.loads(source.read_text()), source.with_suffix(".svg"))
    print(source.with_suffix(".svg"))
