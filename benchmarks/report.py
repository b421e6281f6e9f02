"""Write RESULTS.md from the JSON records of each scale's latest run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORDER = ["small", "medium", "large", "xlarge"]
INTRO = """# Benchmark results

Produced by the harness in this folder (`python -m benchmarks run --scale SCALE`), which writes one
JSON record per scale under `benchmarks/results/` and regenerates this file from all of them.
Every number comes from a fresh child process per measurement, contenders alternating within each
repetition; seconds are medians (min-max over the repetitions), memory is the child's peak RSS
(interpreter and imports included). "floor" is the fastest hand-written DuckDB/SQLite code we know
for the same work; Feast 0.67 runs from its own virtualenv (`benchmarks/requirements-feast.txt`).
The harness fails when featurekit's training set differs from the floor's in any row or value.
"""


def _seconds(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"failed: {entry['error']}"
    if "p50_ms" in entry:
        return f"p50 {entry['p50_ms']:.3f} ms, p99 {entry['p99_ms']:.3f} ms"
    return f"{entry['median']:.3f} s ({entry['min']:.3f}-{entry['max']:.3f})"


def _value(entry: dict[str, Any]) -> float | None:
    if "error" in entry:
        return None
    return float(entry["p50_ms"]) if "p50_ms" in entry else float(entry["median"])


def _ratio(mine: dict[str, Any], other: dict[str, Any] | None) -> str:
    if other is None:
        return "-"
    a, b = _value(mine), _value(other)
    if a is None or b is None or a == 0:
        return "-"
    return f"{a / b:.2f}x"


def _memory(mine: dict[str, Any], floor: dict[str, Any] | None) -> str:
    own = f"{mine.get('rss_mb', 0):.0f} MB"
    if floor is None or "rss_mb" not in floor:
        return own
    return f"{own} / {floor['rss_mb']:.0f} MB"


def scale_section(record: dict[str, Any]) -> str:
    scale = record["scale"]
    lines = [
        f"## {scale['name']}: {scale['rows']:,} feature rows per view, {scale['entities']:,} entities, "
        f"{scale['spine']:,} spine rows",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']['cpus']} CPUs, {record['machine']['platform']}, "
        f"Python {record['machine']['python']}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + "  ",
        "Correctness: " + "; ".join(record["correctness"]),
        "",
        "| workload | featurekit | floor | Feast | fk / floor | Feast / fk | peak RSS fk / floor | extra |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in record["results"].values():
        mine = result.get("featurekit", {})
        floor, feast = result.get("floor"), result.get("feast")
        extra = []
        if "rows" in mine and "median" in mine:
            extra.append(f"{mine['rows'] / mine['median'] / 1e6:.2f}M source rows/s")
        if "online_rows" in mine:
            extra.append(f"{mine['online_rows']:,} entities online")
        if "errors" in mine:
            extra.append(f"{mine['errors']} errors in {mine['calls']:,} calls")
        lines.append(
            f"| {result['title']} | {_seconds(mine)} | {_seconds(floor) if floor else '-'} | "
            f"{_seconds(feast) if feast else '-'} | {_ratio(mine, floor)} | {_ratio(feast, mine) if feast else '-'} | "
            f"{_memory(mine, floor)} | {'; '.join(extra)} |"
        )
    return "\n".join(lines)


def write_report(results: Path, target: Path) -> None:
    records = []
    for name in ORDER:
        path = results / f"{name}.json"
        if path.exists():
            records.append(json.loads(path.read_text()))
    sections = [INTRO] + [scale_section(r) for r in records]
    notes = results / "NOTES.md"
    if notes.exists():
        sections.append(notes.read_text())
    target.write_text("\n\n".join(sections).rstrip() + "\n")
