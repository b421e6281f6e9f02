"""Incremental materialize of a window view: its cost follows the new events, not the window length.

``python -m benchmarks.window_incremental [--scale medium] [--repeat 3]`` takes the window
benchmark's events (:mod:`benchmarks.windows`: Zipf-like activity over 90 days plus one hot
entity) and, for each longest window (7, 30 and 90 days, each view with a 1-hour window too and
the benchmark's four aggregations), builds a repo, materializes all but the last three days
(untimed), then times two ``materialize_incremental`` runs, offline and online: one new day, then
the next two days. Each case runs in a fresh child process, the cases alternating by round.

What the issue asks ("incremental materialize of one new day: proportional to the day's events,
not to the window length") reads off the table: the time of one day should stay flat from 7 to
90 days of window, and two days should cost about twice one day's variable part. The full
materialize of the 90 days is the window benchmark's own row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.data import peak_rss_mb
from benchmarks.windows import END, FEATURES_PY, SCALES, START, ensure_windows

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RECORD = "window_incremental.json"
LONGEST = (7, 30, 90)  # days of the view's longest window
SPANS = (("one new day", END - timedelta(days=2)), ("two new days", END))  # each run continues the one before
_WINDOWS_LINE = "windows=[timedelta(hours=1), timedelta(days=7), timedelta(days=30)],"


def features_py(longest: int) -> str:
    """The window benchmark's view, with windows of 1 hour and ``longest`` days."""
    assert _WINDOWS_LINE in FEATURES_PY, "benchmarks.windows changed its view"
    return FEATURES_PY.replace(_WINDOWS_LINE, f"windows=[timedelta(hours=1), timedelta(days={longest})],")


def _events_between(events: Path, start: datetime, end: datetime) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    times = pq.read_table(events, columns=["event_timestamp"]).column("event_timestamp")
    inside = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    return int(pc.sum(inside).as_py() or 0)


def child(longest: int, scale: str, out: Path) -> None:
    """One case: build the repo, materialize up to three days before the end, time the two runs."""
    import featurekit as fk

    folder = ensure_windows(SCALES[scale])
    with tempfile.TemporaryDirectory(prefix="fk-window-incremental-") as work:
        repo = Path(work) / "repo"
        (repo / "data").mkdir(parents=True)
        os.link(folder / "events.parquet", repo / "data" / "events.parquet")
        (repo / "features.py").write_text(features_py(longest))
        runs = []
        with fk.FeatureStore(repo, progress=False) as store:
            store.apply()
            store.materialize(START, END - timedelta(days=3))
            previous = END - timedelta(days=3)
            for name, end_at in SPANS:
                began, began_cpu = time.perf_counter(), time.process_time()
                done = store.materialize_incremental(end_at)
                runs.append(
                    {
                        "span": name,
                        "seconds": time.perf_counter() - began,
                        "cpu_seconds": time.process_time() - began_cpu,
                        "rows": sum(r.rows for r in done),
                        "online_rows": sum(r.online_rows for r in done),
                        "events": _events_between(folder / "events.parquet", previous, end_at),
                    }
                )
                previous = end_at
    out.write_text(json.dumps({"longest_days": longest, "runs": runs, "rss_mb": peak_rss_mb()}))


def _run_child(longest: int, scale: str, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "out.json"
        command = [sys.executable, "-m", "benchmarks.window_incremental", "--child", str(longest), "--scale", scale]
        command += ["--out", str(out)]
        try:
            done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"longest_days": longest, "error": f"timeout after {timeout:.0f} s"}
        if done.returncode != 0:
            return {"longest_days": longest, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def measure(scale: str, repeat: int, timeout: float) -> dict[str, Any]:
    samples: dict[int, list[dict[str, Any]]] = {days: [] for days in LONGEST}
    for round_ in range(repeat):
        order = LONGEST if round_ % 2 == 0 else tuple(reversed(LONGEST))
        for days in order:
            samples[days].append(_run_child(days, scale, timeout))
    cases = {}
    for days, results in samples.items():
        ok = [r for r in results if "runs" in r]
        spans = {}
        for name, _ in SPANS:
            runs = [next(s for s in r["runs"] if s["span"] == name) for r in ok]
            spans[name] = {
                "median": statistics.median(s["seconds"] for s in runs) if runs else None,
                "min": min((s["seconds"] for s in runs), default=None),
                "max": max((s["seconds"] for s in runs), default=None),
                "cpu_seconds": statistics.median(s["cpu_seconds"] for s in runs) if runs else None,
                "events": runs[0]["events"] if runs else None,
                "rows": runs[0]["rows"] if runs else None,
            }
        errors = [r["error"] for r in results if "error" in r]
        cases[str(days)] = {"spans": spans, "rss_mb": max((r["rss_mb"] for r in ok), default=None), "errors": errors}
    return cases


def section(record: dict[str, Any] | None) -> str:
    """The RESULTS.md section for a record of this benchmark ('' without one)."""
    if not record:
        return ""
    lines = [
        "## Incremental materialize of a window view (issue 13)",
        "",
        f"`{record['command']}` ({record['started']}, commit {record['commit']}, load average "
        f"{record['load_average'][0]:.1f} before and {record['load_average'][1]:.1f} after, on "
        f"{record['cpus']} CPUs). The window benchmark's {record['scale']} events; for each longest "
        "window, a repo materialized up to three days before the end, then `materialize_incremental` "
        "(offline and online) of one new day and of the next two days, each case in a fresh process, "
        "medians (min-max) over the rounds.",
        "",
        "| longest window | one new day: seconds | CPU s | events | two new days: seconds | CPU s | events | "
        "peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for days, case in record["cases"].items():
        one, two = case["spans"]["one new day"], case["spans"]["two new days"]
        if one["median"] is None or two["median"] is None:
            lines.append(f"| {days} days | {'; '.join(case['errors']) or 'no run'} | | | | | | |")
            continue
        lines.append(
            f"| {days} days | {one['median']:.3f} ({one['min']:.3f}-{one['max']:.3f}) | {one['cpu_seconds']:.2f} | "
            f"{one['events']:,} | {two['median']:.3f} ({two['min']:.3f}-{two['max']:.3f}) | "
            f"{two['cpu_seconds']:.2f} | {two['events']:,} | {case['rss_mb']:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def record_section(results: Path) -> str:
    path = results / RECORD
    return section(json.loads(path.read_text())) if path.exists() else ""


def _commit() -> str:
    command = ["git", "rev-parse", "--short", "HEAD"]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.window_incremental", description=__doc__)
    parser.add_argument("--scale", choices=sorted(SCALES), default="medium")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a case may take")
    parser.add_argument("--output", type=Path, default=HERE / "results")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child is not None:
        child(options.child, options.scale, options.out)
        return 0
    ensure_windows(SCALES[options.scale])  # prepared once, before any timer
    load_before = os.getloadavg()[0]
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    cases = measure(options.scale, options.repeat, options.timeout)
    command = f"python -m benchmarks.window_incremental --scale {options.scale} --repeat {options.repeat}"
    record = {
        "command": command,
        "started": started,
        "commit": _commit(),
        "scale": options.scale,
        "repeat": options.repeat,
        "load_average": [load_before, os.getloadavg()[0]],
        "cpus": os.cpu_count(),
        "cases": cases,
    }
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / RECORD).write_text(json.dumps(record, indent=2))
    sys.stdout.write(section(record) + "\n")
    failed = any(c["errors"] for c in cases.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
