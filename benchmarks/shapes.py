"""``python -m benchmarks shapes``: the 1-view training set on every data shape, against four floors.

The scales of ``run`` hold about one feature row per entity inside the 7-day TTL; a shape fixes the
rows per entity instead (:data:`benchmarks.data.SHAPES`): ``dense`` (2,000 per entity), ``lowcard``
(1M per entity), 30-day TTLs, and the rows-per-entity chart at 2M feature rows (20 to 200k per
entity). Contenders, each in a fresh process, alternating within each repetition:

- ``featurekit``: ``store.training_set(spine, ["stats_a:f0", ...]).to_arrow()``;
- ``asof``: hand-written DuckDB, the feature rows reduced to one per (key, event time) with the
  created/values tie-break, ``ASOF LEFT JOIN``, values nulled when the match is older than the TTL;
- ``asof_match``: hand-written DuckDB, ``ASOF JOIN`` on the keys and event times alone, matches
  older than the TTL dropped, then the tie-break only among the rows of each matched (key, event
  time), found by a hash join: the wide reduction of every feature row is skipped;
- ``range``: hand-written DuckDB, hash join on the key with the TTL range as join filter, newest
  per spine row by ``max(struct_pack(...))``;
- ``polars``: ``join_asof(by=key, strategy="backward", tolerance=ttl)`` on in-memory frames;
- ``pandas``: ``merge_asof(by=key, direction="backward", tolerance=ttl)`` on in-memory frames.

The DuckDB floors read featurekit's committed Delta files, timed from the Delta log read (as the
``run`` floor). polars and pandas get their inputs read into memory before the timer starts; their
timing includes the sorts they need and the sort back to spine order. featurekit's result must
equal every DuckDB floor's row for row; polars and pandas break exact ties by row order instead of
the created timestamp, so only their row count and non-null count are checked. A contender that
takes longer than ``--timeout`` seconds is killed, recorded as a timeout, and not run again on that
shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import (
    CHART_SHAPES,
    FEATURES,
    SHAPES,
    START,
    TABLE_SHAPES,
    Shape,
    ensure_shape,
    is_prepared,
    mark_prepared,
    peak_rss_mb,
)

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CONTENDERS = ("featurekit", "asof", "asof_match", "range", "polars", "pandas")
FLOORS = ("asof", "asof_match", "range")
FLOOR_NAMES = {"asof": "ASOF", "asof_match": "ASOF, tie-break after", "range": "range"}
CORRECT = "featurekit's training sets equal the DuckDB floors', row for row; polars and pandas cover the same rows"


def correct(measured: dict[str, Result]) -> str:
    """What a clean check covered: featurekit or the range floor may have timed out."""
    unchecked = [c for c in ("featurekit", "range") if "median" not in measured.get(c, {})]
    if not unchecked:
        return CORRECT
    checked = [c for c in ("featurekit", "asof_match", "range") if c not in unchecked]
    return (
        f"{' and '.join(unchecked)} not checked (no result); {', '.join(checked)}: equal to the ASOF floor, "
        "row for row; polars and pandas cover the same rows"
    )


RECORD = "shapes.json"

Result = dict[str, Any]


# -- the contenders (each in a fresh child process) ------------------------------------------


def shape_repo(shape: Shape) -> Path:
    """The shape's featurekit repo (one passthrough view with the shape's TTL), materialized once."""
    from benchmarks.contenders import FEATURES_PY

    folder = ensure_shape(shape)
    repo = folder / f"fk_repo_ttl{shape.ttl_days}"
    if is_prepared(repo):
        return repo
    import featurekit as fk

    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    text = FEATURES_PY.replace("ttl=timedelta(days=7)", f"ttl=timedelta(days={shape.ttl_days})")
    assert text != FEATURES_PY or shape.ttl_days == 7, "FEATURES_PY no longer says ttl=timedelta(days=7)"
    (repo / "features.py").write_text(text.replace("VIEW_ASSIGNMENTS", 'stats_a = _view("stats_a")'))
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(START, shape.end, online=False)
    mark_prepared(repo)
    return repo


def _delta_table(repo: Path) -> tuple[str, int]:
    import featurekit as fk
    from benchmarks.contenders import _table_version

    with fk.FeatureStore(repo, progress=False) as store:
        return _table_version(store, "stats_a")


def _files(table: tuple[str, int]) -> list[str]:
    from deltalake import DeltaTable

    path, version = table
    return [u.removeprefix("file://") for u in DeltaTable(path, version=version).file_uris()]


def _packed(alias: str, with_time: bool) -> str:
    """featurekit's order of "newest": event time, created (null loses), then each value (null loses)."""
    fields = [f"t := {alias}.event_timestamp"] if with_time else []
    fields.append(f"c := coalesce({alias}.created, TIMESTAMPTZ '-infinity')")
    fields += [f"n_{x} := {alias}.{x} IS NOT NULL, {x} := {alias}.{x}" for x in FEATURES]
    return ", ".join(fields)


SPINE_CTE = (
    "s AS (SELECT driver_id, event_timestamp, label, file_row_number AS rn "
    "FROM read_parquet(?, file_row_number = true))"
)


def asof_sql(ttl_days: int) -> str:
    values = ", ".join(
        f"CASE WHEN r.e >= s.event_timestamp - INTERVAL {ttl_days} DAY THEN r.v.{x} END AS {x}" for x in FEATURES
    )
    return (
        f"WITH {SPINE_CTE}, "
        f"r AS (SELECT f.driver_id, f.event_timestamp AS e, max(struct_pack({_packed('f', False)})) AS v "
        "FROM read_parquet(?) f GROUP BY f.driver_id, f.event_timestamp) "
        f"SELECT s.driver_id, s.event_timestamp, s.label, {values} "
        "FROM s ASOF LEFT JOIN r ON s.driver_id = r.driver_id AND s.event_timestamp >= r.e ORDER BY s.rn"
    )


def asof_match_sql(ttl_days: int) -> str:
    """ASOF on (key, event time) only; the tie-break runs on the matched rows, not on every row."""
    packed = _packed("f", False)
    values = ", ".join(f"j.v.{x} AS {x}" for x in FEATURES)
    return (
        f"WITH {SPINE_CTE}, "
        "m AS (SELECT s.rn, s.driver_id, r.e FROM s ASOF JOIN "
        "(SELECT driver_id, event_timestamp AS e FROM read_parquet(?)) r "
        "ON s.driver_id = r.driver_id AND s.event_timestamp >= r.e "
        f"WHERE r.e >= s.event_timestamp - INTERVAL {ttl_days} DAY), "
        f"j AS (SELECT m.rn, max(struct_pack({packed})) AS v FROM m JOIN read_parquet(?) f "
        "ON f.driver_id = m.driver_id AND f.event_timestamp = m.e GROUP BY m.rn) "
        f"SELECT s.driver_id, s.event_timestamp, s.label, {values} FROM s LEFT JOIN j ON j.rn = s.rn ORDER BY s.rn"
    )


def range_sql(ttl_days: int) -> str:
    values = ", ".join(f"j.v.{x} AS {x}" for x in FEATURES)
    return (
        f"WITH {SPINE_CTE}, "
        f"j AS (SELECT s.rn, max(struct_pack({_packed('f', True)})) AS v FROM s JOIN read_parquet(?) f "
        "ON s.driver_id = f.driver_id AND f.event_timestamp <= s.event_timestamp "
        f"AND f.event_timestamp >= s.event_timestamp - INTERVAL {ttl_days} DAY GROUP BY s.rn) "
        f"SELECT s.driver_id, s.event_timestamp, s.label, {values} FROM s LEFT JOIN j ON j.rn = s.rn ORDER BY s.rn"
    )


def _coverage(table: Any) -> dict[str, int]:
    """Rows and spine rows that found a feature row (f0 is never null in the data)."""
    return {"rows": table.num_rows, "covered": table.num_rows - table.column("f0").null_count}


def run_featurekit(shape: Shape, out: Path) -> Result:
    import pyarrow.parquet as pq

    import featurekit as fk
    from benchmarks.timing import Stopwatch

    repo = shape_repo(shape)
    with fk.FeatureStore(repo, progress=False) as store:
        watch = Stopwatch()
        table = store.training_set(shape.folder / "spine.parquet", [f"stats_a:{x}" for x in FEATURES]).to_arrow()
        timing = watch.result()
    pq.write_table(table, out)
    return {**timing, **_coverage(table)}


def run_duckdb(shape: Shape, variant: str, out: Path) -> Result:
    import duckdb
    import pyarrow.parquet as pq

    from benchmarks.timing import Stopwatch

    delta = _delta_table(shape_repo(shape))
    sql = {"asof": asof_sql, "asof_match": asof_match_sql, "range": range_sql}[variant](shape.ttl_days)
    watch = Stopwatch()  # from the Delta log read and a fresh connection, as the run floor
    files = _files(delta)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    params = [str(shape.folder / "spine.parquet"), *([files] * sql.count("read_parquet(?)"))]
    table = con.sql(sql, params=params).to_arrow_table()
    timing = watch.result()
    pq.write_table(table, out)
    return {**timing, **_coverage(table)}


def _inputs(shape: Shape) -> tuple[Any, Any]:
    """The committed feature rows (key, event time, values) and the spine, as Arrow tables."""
    import pyarrow.parquet as pq

    files = _files(_delta_table(shape_repo(shape)))
    features = pq.read_table(files, columns=["driver_id", "event_timestamp", *FEATURES])
    return features, pq.read_table(shape.folder / "spine.parquet")


def run_polars(shape: Shape) -> Result:
    import polars as pl

    from benchmarks.timing import Stopwatch

    features, spine = (pl.from_arrow(t) for t in _inputs(shape))
    assert isinstance(features, pl.DataFrame)
    assert isinstance(spine, pl.DataFrame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sortedness of columns cannot be checked when 'by' groups provided"
        watch = Stopwatch()
        left = spine.with_row_index("__rn").sort("event_timestamp")
        right = features.sort("event_timestamp")
        joined = left.join_asof(
            right, on="event_timestamp", by="driver_id", strategy="backward", tolerance=f"{shape.ttl_days}d"
        )
        result = joined.sort("__rn").drop("__rn")
        timing = watch.result()
    return {**timing, "rows": result.height, "covered": result.height - result["f0"].null_count()}


def run_pandas(shape: Shape) -> Result:
    import numpy as np
    import pandas as pd

    from benchmarks.timing import Stopwatch

    features, spine = (t.to_pandas() for t in _inputs(shape))
    watch = Stopwatch()
    left = spine.assign(__rn=np.arange(len(spine))).sort_values("event_timestamp", kind="stable")
    right = features.sort_values("event_timestamp", kind="stable")
    joined = pd.merge_asof(
        left,
        right,
        on="event_timestamp",
        by="driver_id",
        direction="backward",
        tolerance=pd.Timedelta(days=shape.ttl_days),
    )
    result = joined.sort_values("__rn", kind="stable").drop(columns="__rn")
    timing = watch.result()
    return {**timing, "rows": len(result), "covered": int(result["f0"].notna().sum())}


def child(argv: list[str]) -> None:
    """``python -m benchmarks child shape CONTENDER SHAPE OUT``: one measurement, as JSON in OUT."""
    contender, name, out = argv
    shape = SHAPES[name]
    output = Path(out).with_suffix(".parquet")
    if contender == "featurekit":
        result = run_featurekit(shape, output)
    elif contender in FLOORS:
        result = run_duckdb(shape, contender, output)
    elif contender == "polars":
        result = run_polars(shape)
    elif contender == "pandas":
        result = run_pandas(shape)
    else:
        raise SystemExit(f"unknown contender {contender}")
    result["output"] = str(output) if output.exists() else None
    result["rss_mb"] = peak_rss_mb()
    Path(out).write_text(json.dumps(result))


# -- the runner ---------------------------------------------------------------------------------


def run_one(contender: str, shape: str, work: Path, timeout: float) -> Result:
    out = work / f"{contender}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks", "child", "shape", contender, shape, str(out)]
    try:
        done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run killed the child
        return {"timeout": timeout}
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]}
    result: Result = json.loads(out.read_text())
    return result


def summarize(samples: list[Result]) -> Result:
    ok = [s for s in samples if "seconds" in s]
    if not ok:
        return samples[0] if samples else {"error": "not run"}
    seconds = [s["seconds"] for s in ok]
    return {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "cpu_seconds": statistics.median(s["cpu_seconds"] for s in ok),
        "rss_mb": max(s["rss_mb"] for s in ok),
        "runs": len(ok),
        "rows": ok[0]["rows"],
        "covered": ok[0]["covered"],
    }


def _check(shape: str, latest: dict[str, Result]) -> list[str]:
    """featurekit and the other floors equal the ASOF floor exactly; polars and pandas cover the same rows."""
    from benchmarks.contenders import same_tables

    problems = []
    reference = latest.get("asof", {})
    if not reference.get("output"):
        return [f"{shape}: the ASOF floor gave no result ({reference})"]
    for contender in ("featurekit", "asof_match", "range"):
        mine = latest.get(contender, {})
        if mine.get("output"):
            problem = same_tables(Path(mine["output"]), Path(reference["output"]))
            if problem:
                problems.append(f"{shape}: {contender} differs from the ASOF floor: {problem}")
    for contender in ("polars", "pandas"):
        mine = latest.get(contender, {})
        if "rows" in mine and (mine["rows"], mine["covered"]) != (reference["rows"], reference["covered"]):
            problems.append(
                f"{shape}: {contender} has {mine['rows']:,} rows, {mine['covered']:,} with features; "
                f"the floor {reference['rows']:,} and {reference['covered']:,}"
            )
    return problems


def measure(shape: str, work: Path, repeat: int, timeout: float) -> tuple[dict[str, Result], list[str]]:
    samples: dict[str, list[Result]] = {c: [] for c in CONTENDERS}
    problems: list[str] = []
    for _ in range(repeat):
        latest = {}
        for contender in CONTENDERS:  # alternate contenders within each repetition
            if any("timeout" in s for s in samples[contender]):
                continue  # a contender that timed out once is not run again on this shape
            latest[contender] = run_one(contender, shape, work, timeout)
            samples[contender].append(latest[contender])
            print(f"  {shape} {contender}: {_brief(latest[contender])}", file=sys.stderr, flush=True)
        problems += _check(shape, latest)
        for result in latest.values():
            if result.get("output"):
                Path(result["output"]).unlink(missing_ok=True)
    return {c: summarize(s) for c, s in samples.items()}, problems


def _brief(result: Result) -> str:
    if "seconds" in result:
        return f"{result['seconds']:.3f} s, {result['rss_mb']:.0f} MB"
    return json.dumps(result)


def _commit() -> str:
    git = ["git", "rev-parse", "--short", "HEAD"]
    done = subprocess.run(git, cwd=PROJECT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def run_shapes(options: argparse.Namespace) -> int:
    """Measure the chosen shapes, merge them into ``results/shapes.json``, rewrite the report."""
    from benchmarks.report import write_report

    names = [n for n in options.only.split(",") if n] or list(dict.fromkeys(TABLE_SHAPES + CHART_SHAPES))
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    from importlib.metadata import version

    versions = {n: version(n) for n in ("featurekit", "duckdb", "polars", "pandas", "pyarrow")}
    results: dict[str, Result] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fk-shapes-") as tmp:
        for name in names:
            shape = SHAPES[name]
            began = datetime.now(UTC)
            print(f"{name}: preparing data and the featurekit repo", file=sys.stderr, flush=True)
            shape_repo(shape)
            load = os.getloadavg()[0]
            measured, problems = measure(name, Path(tmp), options.repeat, options.timeout)
            failures += problems
            results[name] = {
                "shape": {**shape.__dict__, "rows_per_entity": shape.rows_per_entity},
                "command": command,
                "date": began.strftime("%Y-%m-%d %H:%M UTC"),
                "commit": _commit(),
                "timeout_s": options.timeout,
                "repeat": options.repeat,
                "load": [round(load, 1), round(os.getloadavg()[0], 1)],  # 1-minute load average, before and after
                "versions": versions,
                "correctness": problems or [correct(measured)],
                **measured,
            }
    options.output.mkdir(parents=True, exist_ok=True)
    path = options.output / RECORD
    record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"shapes": {}}
    record["shapes"] = {**record["shapes"], **results}  # shapes not re-run keep their earlier numbers
    record["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    path.write_text(json.dumps(record, indent=2, default=str))
    target = HERE / "RESULTS.md" if options.output == HERE / "results" else options.output / "RESULTS.md"
    write_report(options.output, target)
    for failure in failures:
        print(f"CORRECTNESS FAILURE: {failure}", file=sys.stderr)
    return 1 if failures else 0


# -- the report section -------------------------------------------------------------------------


def floor_of(entry: Result) -> Result | None:
    """The fastest DuckDB floor of a shape (a floor that timed out or failed does not count)."""
    found = [entry[f] for f in FLOORS if "median" in entry.get(f, {})]
    return min(found, key=lambda e: e["median"]) if found else None


def _cell(entry: Result | None) -> str:
    if entry is None:
        return "-"
    if "timeout" in entry:
        return f"timeout (> {entry['timeout']:.0f} s)"
    if "error" in entry:
        return f"failed: {entry['error']}"
    return f"{entry['median']:.3f} s ({entry['min']:.3f}-{entry['max']:.3f})"


def _rss(entry: Result | None) -> str:
    return f"{entry['rss_mb']:.0f}" if entry and "rss_mb" in entry else "-"


def _cpu(entry: Result | None) -> str:
    return f"{entry['cpu_seconds']:.1f}" if entry and "cpu_seconds" in entry else "-"


def _ratio(mine: Result, floor: Result | None) -> str:
    if floor is None:
        return "-"
    if "timeout" in mine:
        return f"> {mine['timeout'] / floor['median']:.0f}x"
    if "median" not in mine:
        return "-"
    return f"{mine['median'] / floor['median']:.2f}x"


def _within_ttl(shape: Result) -> str:
    """Feature rows per entity inside one TTL window, on average."""
    return f"{shape['rows'] / shape['entities'] * shape['ttl_days'] / shape['days']:,.0f}"


HEADER = (
    "| {first} | featurekit | DuckDB floor (fastest) | ASOF floor | ASOF floor, tie-break after | range floor | "
    "polars | pandas | fk / floor | CPU s: fk / ASOF / ASOF after / range / polars / pandas | "
    "peak RSS MB: fk / ASOF / ASOF after / range / polars / pandas |"
)


def _row(first: str, entry: Result) -> str:
    floor = floor_of(entry)
    fastest = "-"
    if floor is not None:
        variant = next(f for f in FLOORS if entry.get(f) is floor)
        fastest = f"{floor['median']:.3f} s ({FLOOR_NAMES[variant]})"
    rss = " / ".join(_rss(entry.get(c)) for c in CONTENDERS)
    cpu = " / ".join(_cpu(entry.get(c)) for c in CONTENDERS)
    cells = [_cell(entry.get(c)) for c in CONTENDERS]
    return (
        f"| {first} | {cells[0]} | {fastest} | {' | '.join(cells[1:])} | "
        f"{_ratio(entry.get('featurekit', {}), floor)} | {cpu} | {rss} |"
    )


def section(record: dict[str, Any] | None, chart: str | None) -> str:
    if not record or not record.get("shapes"):
        return ""
    shapes: dict[str, Result] = record["shapes"]
    lines = [
        "## Every data shape",
        "",
        "The 1-view training set (8 features, to Arrow) on shapes with long entity histories",
        "(`python -m benchmarks shapes`, see `benchmarks/shapes.py`). Feature rows have millisecond event",
        "times over the shape's days, 1% of them tie exactly with another row on (key, event time), a",
        "tenth of those also on `created`, and 0.1% have no `created`. featurekit's repo is one",
        "passthrough view with the shape's TTL. Floors: **ASOF** is hand-written DuckDB that reduces the",
        "feature rows to one per (key, event time) with featurekit's tie-break, `ASOF LEFT JOIN`s the spine",
        "and nulls matches older than the TTL; **ASOF, tie-break after** `ASOF JOIN`s the spine to the",
        "feature rows' (key, event time) alone, drops matches older than the TTL, and breaks ties only",
        "among the rows of each matched (key, event time), found by a hash join; **range** is",
        "hand-written DuckDB that hash-joins on the key with the TTL range as join filter and keeps the",
        "newest per spine row (`max(struct_pack(...))`). All three read featurekit's committed Delta files",
        'and are timed from the Delta log read; "DuckDB floor" is the fastest of the three. **polars**',
        '`join_asof(by=, strategy="backward", tolerance=)` and **pandas** `merge_asof(by=,',
        'direction="backward", tolerance=)` get their inputs',
        "read into memory before the timer starts; their time includes sorting both inputs by time and",
        "sorting the result back to spine order, and their peak RSS includes the inputs. featurekit's",
        "result must equal every DuckDB floor's row for row; polars and pandas do not break ties by",
        "`created`, so only their row count and the number of spine rows that found features are",
        "checked. A contender slower than the timeout is killed and recorded as a timeout. Seconds are",
        "medians (min-max) of the repetitions; CPU seconds (user + system, all threads, median) move less",
        "than wall time when other jobs share the 2 cores.",
        "",
        "| shape | feature rows | entities | rows per entity (inside the TTL) | spine rows | TTL | run | correctness |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in shapes.items():
        s = entry["shape"]
        run = (
            f"{entry['date']}, commit {entry['commit']}, {entry['repeat']} rounds, timeout {entry['timeout_s']:.0f} s: "
            f"`{entry['command']}`"
        )
        if "load" in entry:
            run += f"; load average {entry['load'][0]} before, {entry['load'][1]} after (2 cores)"
        lines.append(
            f"| {name} | {s['rows']:,} | {s['entities']:,} | {s['rows_per_entity']:,} ({_within_ttl(s)}) | "
            f"{s['spine']:,} | {s['ttl_days']} days over {s['days']} | {run} | {'; '.join(entry['correctness'])} |"
        )
    lines += ["", HEADER.format(first="shape"), "|---|" + "---|" * 10]
    lines += [_row(name, entry) for name, entry in shapes.items() if name not in CHART_SHAPES or name in TABLE_SHAPES]
    chart_rows = [(shapes[n]["shape"]["rows_per_entity"], shapes[n]) for n in CHART_SHAPES if n in shapes]
    if chart_rows:
        lines += [
            "",
            "### Training-set time over rows per entity (2M feature rows, 100k spine rows, TTL 7 days)",
            "",
            *([f"![rows per entity chart]({chart})", ""] if chart else []),
            HEADER.format(first="rows per entity"),
            "|---|" + "---|" * 10,
        ]
        lines += [_row(f"{per:,}", entry) for per, entry in sorted(chart_rows, key=lambda r: r[0])]
    return "\n".join(lines)


def chart_points(record: dict[str, Any]) -> dict[str, list[tuple[int, float, bool]]]:
    """``contender -> [(rows per entity, seconds, timed out), ...]`` over the chart's shapes."""
    found: dict[str, list[tuple[int, float, bool]]] = {}
    for name in CHART_SHAPES:
        entry = record["shapes"].get(name)
        if entry is None:
            continue
        per = entry["shape"]["rows_per_entity"]
        for contender in CONTENDERS:
            result = entry.get(contender, {})
            if "median" in result:
                found.setdefault(contender, []).append((per, result["median"], False))
            elif "timeout" in result:
                found.setdefault(contender, []).append((per, result["timeout"], True))
    return found if any(len(p) > 1 for p in found.values()) else {}
