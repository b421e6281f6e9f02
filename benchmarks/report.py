"""Write RESULTS.md and charts/*.png from the JSON records of each scale's latest runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import (
    charts,
    drift,
    quality,
    redis_online,
    scaling,
    servelog,
    serving_load,
    shapes,
    spark,
    spark_scaling,
    ui_pages,
    window_incremental,
    windows,
)
from benchmarks.workloads import WORKLOADS

ORDER = ["small", "medium", "large", "xlarge"]
INTRO = """# Benchmark results

Produced by the harness in this folder (`python -m benchmarks run --scale SCALE`), which writes one
JSON record per scale under `benchmarks/results/` and regenerates this file and `charts/` from all
of them (`python -m benchmarks report` does only that). Every number comes from a fresh child
process per measurement, contenders alternating within each repetition; seconds are medians
(min-max over the repetitions), memory is the child's peak RSS (interpreter and imports included).
"floor" is the fastest hand-written DuckDB/SQLite code we know for the same work; Feast 0.67 runs
from its own virtualenv (`benchmarks/requirements-feast.txt`). The harness fails when featurekit's
training set differs from the floor's in any row or value. The machine has 2 cores, and its
speed drifts by 2-3x over tens of minutes even when idle: compare ratios measured in the same run,
and read the notes at the end (which runs, which targets, where the time goes).
"""


def _seconds(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return str(entry["error"]) if str(entry["error"]).startswith("skipped") else f"failed: {entry['error']}"
    if "p50_ms" in entry:
        return f"p50 {entry['p50_ms']:.3f} ms, p99 {entry['p99_ms']:.3f} ms"
    return f"{entry['median']:.3f} s ({entry['min']:.3f}-{entry['max']:.3f})"


def _ratio(mine: dict[str, Any], other: dict[str, Any] | None) -> str:
    a, b = charts.value(mine), charts.value(other)
    if a is None or b is None or a == 0:
        return "-"
    return f"{a / b:.2f}x"


def _memory(mine: dict[str, Any], floor: dict[str, Any] | None) -> str:
    own = f"{mine.get('rss_mb', 0):.0f} MB"
    if floor is None or "rss_mb" not in floor:
        return own
    return f"{own} / {floor['rss_mb']:.0f} MB"


def _extra(mine: dict[str, Any]) -> str:
    extra = []
    if "rows" in mine and "median" in mine:
        extra.append(f"{mine['rows'] / mine['median'] / 1e6:.2f}M source rows/s")
    if "window_rows" in mine:
        extra.append(f"{mine['window_rows']:,} new source rows")
    if "online_rows" in mine:
        extra.append(f"{mine['online_rows']:,} entities online")
    if "views" in mine:
        extra.append(f"{mine['views']} views")
    if "errors" in mine:
        extra.append(f"{mine['errors']} errors in {mine['calls']:,} calls")
    return "; ".join(extra)


def _title(name: str, result: dict[str, Any]) -> str:
    """The workload's current title (records of earlier runs may carry an older wording)."""
    return WORKLOADS[name].title if name in WORKLOADS else str(result["title"])


_UNRECORDED = "earlier full runs (before commands were recorded per workload)"


def scale_section(record: dict[str, Any], chart_links: dict[str, str]) -> str:
    scale = record["scale"]
    commands = sorted({f"`{r['command']}`" if "command" in r else _UNRECORDED for r in record["results"].values()})
    lines = [
        f"## {scale['name']}: {scale['rows']:,} feature rows per view, {scale['entities']:,} entities, "
        f"{scale['spine']:,} spine rows",
        "",
        "Commands that produced these numbers: " + "; ".join(commands) + "  ",
        f"Machine: {record['machine']['cpus']} CPUs, {record['machine']['platform']}, "
        f"Python {record['machine']['python']}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + "  ",
        "Correctness: " + "; ".join(record["correctness"]),
        "",
        "| workload | featurekit | floor | Feast | fk / floor | Feast / fk | peak RSS fk / floor | extra |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in record["results"].items():
        mine = result.get("featurekit", {})
        floor, feast = result.get("floor"), result.get("feast")
        title = _title(name, result)
        title = f"[{title}]({chart_links[name]})" if name in chart_links else title
        lines.append(
            f"| {title} | {_seconds(mine)} | {_seconds(floor) if floor else '-'} | "
            f"{_seconds(feast) if feast else '-'} | {_ratio(mine, floor)} | {_ratio(feast, mine) if feast else '-'} | "
            f"{_memory(mine, floor)} | {_extra(mine)} |"
        )
    return "\n".join(lines)


def _micros(entry: dict[str, Any]) -> str:
    """p50 / p99 in microseconds, with the range of the p50 over the repetitions."""
    text = f"{entry['p50_ms'] * 1e3:.0f} / {entry['p99_ms'] * 1e3:.0f} us"
    if entry.get("runs", 1) > 1:
        text += f" (p50 {entry['min'] * 1e6:.0f}-{entry['max'] * 1e6:.0f} over {entry['runs']} runs)"
    return text


def on_demand_section(records: dict[str, dict[str, Any]]) -> str:
    """Lookup latency by default and with POLARS_MAX_THREADS=1, side by side."""
    lines = [
        "## Online lookups: default polars vs POLARS_MAX_THREADS=1",
        "",
        "The same lookup child run twice, once with the environment variable `POLARS_MAX_THREADS=1` (set",
        "before polars is imported). Only the on-demand view runs polars; see the notes below.",
        "",
        "| scale | request | default p50 / p99 | POLARS_MAX_THREADS=1 p50 / p99 | p50 change |",
        "|---|---|---|---|---|",
    ]
    rows = 0
    for scale, record in records.items():
        for size in (1, 100, 1000):
            for on_demand in (False, True):
                name = f"lookup_{size}{'_on_demand' * on_demand}"
                default = record["results"].get(name, {}).get("featurekit")
                single = record["results"].get(f"{name}_single_thread", {}).get("featurekit")
                if default is None or single is None or "p50_ms" not in default or "p50_ms" not in single:
                    continue
                request = f"{size} x 8 features" + (" + 1 on-demand" if on_demand else "")
                change = single["p50_ms"] / default["p50_ms"]
                lines.append(f"| {scale} | {request} | {_micros(default)} | {_micros(single)} | {change:.2f}x |")
                rows += 1
    return "\n".join(lines) if rows else ""


def scaling_section(records: dict[str, dict[str, Any]], chart: str | None) -> str:
    lines = scaling.table(records)
    if not lines:
        return ""
    intro = [
        "## Scaling: 1M, 10M and 30M feature rows",
        "",
        "Time and peak RSS of the 1-view training set (to Arrow) and of the offline materialize of one",
        "view, at the medium, large and xlarge scales (`python -m benchmarks scaling`). Growth is judged",
        "on the best repetition and on CPU time (user + system, all threads), which other jobs on the",
        "machine disturb less than wall time. An exponent is the least-squares slope of log(value)",
        "against log(rows): 1.0 is linear; fixed costs pull it below 1, so the last step (ratio of the",
        "values over the ratio of the rows, linear when equal) is the fairer test. The training set's",
        "spine is 0.1M rows at 1M feature rows and 1M rows above.",
        "",
    ]
    figure = [f"![scaling chart]({chart})", ""] if chart else []
    return "\n".join(intro + figure + lines)


def _draw_charts(records: dict[str, dict[str, Any]], folder: Path) -> tuple[dict[str, str], str | None]:
    """Write one chart per workload plus the scaling chart; returns their links relative to RESULTS.md."""
    if not charts.available():
        return {}, None
    folder.mkdir(parents=True, exist_ok=True)
    links = {}
    workloads: dict[str, dict[str, dict[str, Any]]] = {}
    titles: dict[str, str] = {}
    for scale, record in records.items():
        for name, result in record["results"].items():
            workloads.setdefault(name, {})[scale] = result
            titles[name] = _title(name, result)
    for name, by_scale in workloads.items():
        charts.workload_chart(titles[name], by_scale, folder / f"{name}.png")
        links[name] = f"{folder.name}/{name}.png"
    found = scaling.series(records)
    if not found:
        return links, None
    charts.scaling_chart(found, folder / "scaling.png")
    return links, f"{folder.name}/scaling.png"


def write_report(results: Path, target: Path) -> None:
    records = {}
    for name in ORDER:
        path = results / f"{name}.json"
        if path.exists():
            records[name] = json.loads(path.read_text())
    links, scaling_chart = _draw_charts(records, target.parent / "charts")
    shape_path = results / shapes.RECORD
    shape_record = json.loads(shape_path.read_text()) if shape_path.exists() else None
    shape_chart = None
    if shape_record and charts.available():
        points = shapes.chart_points(shape_record)
        if points:
            (target.parent / "charts").mkdir(parents=True, exist_ok=True)
            charts.shapes_chart(points, target.parent / "charts" / "rows_per_entity.png")
            shape_chart = "charts/rows_per_entity.png"
    sections = [INTRO]
    if not links:
        sections.append("Charts were not drawn: matplotlib is missing (`pip install -e '.[bench]'`).")
    sections += [scale_section(r, links) for r in records.values()]
    sections += [on_demand_section(records), scaling_section(records, scaling_chart)]
    sections.append(shapes.section(shape_record, shape_chart))
    window_path = results / windows.RECORD
    sections.append(windows.section(json.loads(window_path.read_text()) if window_path.exists() else None))
    sections.append(window_incremental.record_section(results))
    sections.append(redis_online.record_section(results))
    sections.append(servelog.record_section(results))
    sections.append(serving_load.record_section(results))
    sections.append(ui_pages.record_section(results))
    sections.append(quality.record_section(results))
    sections.append(drift.record_section(results))
    sections.append(spark.record_section(results))
    sections.append(spark_scaling.record_section(results))
    notes = results / "NOTES.md"
    if notes.exists():
        sections.append(notes.read_text())
    target.write_text("\n\n".join(s for s in sections if s).rstrip() + "\n")
