"""The scaling section: time and peak memory against feature rows, judged against linear growth.

On a shared 2-core machine other jobs only ever add wall time, so growth is judged on the best
(fastest) repetition and on CPU seconds, which competition for the cores changes less.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from benchmarks.data import SCALING

WORKLOADS = {"training_1view_arrow": "1-view training set", "materialize_offline": "offline materialize"}
CONTENDERS = ("featurekit", "floor")


class Point(NamedTuple):
    rows: int
    median_s: float
    best_s: float
    cpu_s: float | None  # median CPU seconds (absent from records made before they were measured)
    rss_mb: float


def series(records: dict[str, dict[str, Any]]) -> dict[str, list[Point]]:
    """``"featurekit, offline materialize" -> [Point, ...]`` in order of size."""
    found: dict[str, list[Point]] = {}
    for workload, label in WORKLOADS.items():
        for contender in CONTENDERS:
            points = []
            for scale in SCALING:
                entry = records.get(scale, {}).get("results", {}).get(workload, {}).get(contender)
                if entry and "median" in entry:
                    rows = records[scale]["scale"]["rows"]
                    points.append(Point(rows, entry["median"], entry["min"], entry.get("cpu_seconds"), entry["rss_mb"]))
            if points:
                found[f"{contender}, {label}"] = points
    return found


def exponent(points: list[Point], values: list[float | None]) -> float | None:
    """Least-squares slope of log(value) against log(rows): 1.0 is linear growth."""
    if len(points) < 2 or any(v is None for v in values):
        return None
    xs = [math.log(p.rows) for p in points]
    ys = [math.log(v) for v in values if v is not None]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def _judge(slope: float | None) -> str:
    if slope is None:
        return "-"
    verdict = "about linear" if 0.9 <= slope <= 1.1 else "sub-linear" if slope < 0.9 else "super-linear"
    return f"{slope:.2f} ({verdict})"


def _cell(point: Point) -> str:
    cpu = f", CPU {point.cpu_s:.2f} s" if point.cpu_s is not None else ""
    return f"{point.median_s:.2f} s (best {point.best_s:.2f}){cpu}, {point.rss_mb:.0f} MB"


def table(records: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: one row per series, a column per size, growth of time and memory."""
    found = series(records)
    if not found:
        return []
    sizes = sorted({p.rows for points in found.values() for p in points})
    spines = {records[s]["scale"]["rows"]: records[s]["scale"]["spine"] for s in SCALING if s in records}
    header = " | ".join(f"{n / 1e6:.0f}M rows (spine {spines.get(n, 0) / 1e6:.1f}M)" for n in sizes)
    lines = [
        f"| series | {header} | exponent: best time | CPU time | memory | last step: best time, CPU / rows |",
        "|---|" + "---|" * len(sizes) + "---|---|---|---|",
    ]
    for label, points in found.items():
        by_size = {p.rows: p for p in points}
        cells = [_cell(by_size[n]) if n in by_size else "-" for n in sizes]
        step = "-"
        if len(points) > 1:
            before, last = points[-2], points[-1]
            cpu = f"{last.cpu_s / before.cpu_s:.2f}x" if last.cpu_s and before.cpu_s else "-"
            step = f"{last.best_s / before.best_s:.2f}x, {cpu} / {last.rows / before.rows:.0f}x"
        growth = [
            _judge(exponent(points, [p.best_s for p in points])),
            _judge(exponent(points, [p.cpu_s for p in points])),
            _judge(exponent(points, [p.rss_mb for p in points])),
        ]
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(growth)} | {step} |")
    return lines
