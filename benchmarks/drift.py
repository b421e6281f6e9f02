"""``python -m benchmarks drift [--rows 10000000]``: a drift report between two 10M-row view versions.

A repo of one view over ``--rows`` generated trips (200k drivers; four float features, one
integer, one string category) is applied and materialized as v1, then its function changes (the
distances scaled by 1.05, enough to move its histogram edges) and it is materialized again as
v2. The two versions chose their own histogram edges, so
``store.drift(reference="trips_stats@v1", current="trips_stats@v2")`` must
read v2's committed rows and profile them on v1's bins: the worst case of a drift report (a
report between windows or commits of one version reads nothing; it merges stored profiles).

Each contender runs in a fresh process and times only the report (the store is open and the repo
loaded before the clock starts; the floor has its file lists). Contenders, alternating:
featurekit's report (``store.drift``), the same between two stored profiles of one version
(``stored``), and the fastest hand-written
equivalent (``floor``): pyarrow reads the six columns of both versions' files, numpy bins them
on v1's edges (one ``searchsorted`` and ``bincount`` per column) and computes PSI and the binned
KS statistic; categories counted with ``pyarrow.compute.value_counts``. Target (issue 15): the
report takes at most 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.redis_online import machine, run_child, write_record

HERE = Path(__file__).resolve().parent
RECORD = "drift.json"
TITLE = "## Drift report between two view versions (issue 15)"
TARGET_S = 2.0
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
FLOATS = ["km", "minutes", "fare", "tip"]
COLUMNS = [*FLOATS, "passengers", "city"]
Result = dict[str, Any]

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp")

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def trips_stats(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select(
        "driver_id", "event_timestamp",
        km=pl.col("km") * SCALE, minutes=pl.col("minutes"), fare=pl.col("fare"), tip=pl.col("tip"),
        passengers=pl.col("passengers"), city=pl.col("city"),
    )
"""


def _folder(rows: int) -> Path:
    return HERE / "data" / "drift" / f"rows{rows}"


def _source(rows: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    start = np.datetime64(START.replace(tzinfo=None), "us").astype(np.int64)
    times = np.sort(start + rng.integers(0, DAYS * 86_400_000_000, rows))
    cities = np.array(["berlin", "paris", "rome", "oslo", "lima", "accra", "lagos", "quito"])
    return pa.table(
        {
            "driver_id": rng.integers(0, 200_000, rows),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "km": rng.lognormal(1.5, 0.8, rows),
            "minutes": rng.gamma(2.0, 9.0, rows),
            "fare": rng.normal(20.0, 6.0, rows),
            "tip": rng.exponential(2.0, rows),
            "passengers": rng.integers(1, 5, rows),
            "city": pa.array(cities[rng.integers(0, len(cities), rows)]),
        }
    )


def prepare(rows: int) -> Path:
    """The repo with both versions materialized (cached; a stamp marks a finished preparation)."""
    import featurekit as fk

    root = _folder(rows)
    if (root / "PREPARED").exists():
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)
    pq.write_table(_source(rows), root / "data" / "trips.parquet")
    end = START + timedelta(days=DAYS)
    for scale in ("1.0", "1.05"):
        (root / "features.py").write_text(textwrap.dedent(FEATURES).replace("SCALE", scale))
        with fk.FeatureStore(root, progress=False) as store:
            store.apply()
            store.materialize(START, end, online=False)
    (root / "PREPARED").write_text("2\n")
    return root


def _files(root: Path, version: int) -> list[str]:
    import featurekit as fk

    with fk.FeatureStore(root, progress=False) as store:
        applied = store.registry.version("trips_stats", version)
        last = store.registry.last_materialization(applied.id)
        assert last is not None
        return [str(p) for p in store.tables.files("trips_stats", version, last.data_version)]


def child(argv: list[str]) -> None:
    """``drift-child KIND ROWS OUT``: one timed report, written as JSON to OUT."""
    kind, rows, out = argv
    root = _folder(int(rows))
    if kind == "floor":
        files = [_files(root, v) for v in (1, 2)]  # the registry lookup is not the floor's work
        began = time.perf_counter()
        summary = _floor(files)
        seconds = time.perf_counter() - began
    else:
        import featurekit as fk

        with fk.FeatureStore(root, progress=False) as store:
            store.definitions  # noqa: B018  (loading the repo is not the report's work)
            current = "trips_stats@v2" if kind == "featurekit" else "trips_stats@v1"
            began = time.perf_counter()
            report = store.drift(COLUMNS, reference="trips_stats@v1", current=current)
            seconds = time.perf_counter() - began
            summary = {f.feature: f.score for f in report.features}
    Path(out).write_text(json.dumps({"seconds": seconds, "scores": summary}))


def _floor(files: list[list[str]]) -> dict[str, float]:
    """PSI and binned KS of every column on v1's edges, from the Parquet files, in numpy."""
    import pyarrow.compute as pc

    from featurekit.quality import drift_stats

    tables = [pa.concat_tables(pq.read_table(f, columns=COLUMNS) for f in version) for version in files]
    scores = {}
    for column in COLUMNS:
        ref, cur = tables[0].column(column), tables[1].column(column)
        if column == "city":
            counts = [dict(zip(*(pc.value_counts(c).flatten()), strict=True)) for c in (ref, cur)]
            names = sorted(set(counts[0]) | set(counts[1]), key=str)
            p = np.array([counts[0].get(pa.scalar(n), 0) for n in names])
            q = np.array([counts[1].get(pa.scalar(n), 0) for n in names])
        else:
            values = ref.to_numpy()
            edges = np.unique(np.quantile(values[:1_000_000], np.linspace(0.01, 0.99, 21)))
            p = np.bincount(np.searchsorted(edges, values, "right"), minlength=len(edges) + 1)
            q = np.bincount(np.searchsorted(edges, cur.to_numpy(), "right"), minlength=len(edges) + 1)
            drift_stats.ks_binned(p, q)
        scores[column] = drift_stats.psi(p, q)
    return scores


def _measure(kind: str, rows: int, work: Path) -> Result:
    out = work / f"drift-{kind}.json"
    return run_child(["drift-child", kind, str(rows), str(out)], out, timeout=1800)


def run(options: argparse.Namespace) -> int:
    import tempfile

    prepare(options.rows)
    began = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    kinds = ["featurekit", "stored", "floor"]
    samples: dict[str, list[Result]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(options.repeat):
            for kind in kinds if round_ % 2 == 0 else list(reversed(kinds)):
                samples[kind].append(_measure(kind, options.rows, Path(tmp)))
    record = {
        "command": " ".join(["python -m benchmarks drift", *sys.argv[2:]]),
        "started": began.isoformat(timespec="seconds"),
        "rows": options.rows,
        "machine": machine(load_before),
        "results": {k: _summary(v) for k, v in samples.items()},
    }
    write_record(record, options.output, RECORD, section(record), TITLE)
    return 0


def _summary(runs: list[Result]) -> Result:
    times = [r["seconds"] for r in runs if "seconds" in r]
    errors = [r["error"] for r in runs if "error" in r]
    if not times:
        return {"error": errors[0] if errors else "no run"}
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times), "scores": runs[0]["scores"]}


def section(record: Result) -> str:
    machine_, results = record["machine"], record["results"]
    load = machine_["load_average"]
    lines = [
        TITLE,
        "",
        f"Command: `{record['command']}` (started {record['started']})  ",
        f"Machine: {machine_['cpus']} CPUs, {machine_['platform']}, Python {machine_['python']}; "
        f"load average {load[0]} at the start, {load[1]} at the end  ",
        f"Two versions of one view, {record['rows']:,} committed rows each (six feature columns); each run a "
        "fresh process, the contenders alternating.",
        "",
        "| contender | median | fastest | runs |",
        "|---|---|---|---|",
    ]
    names = {
        "featurekit": "`store.drift(v1 -> v2)`: v2 read and profiled on v1's bins",
        "stored": "`store.drift(v1 -> v1)`: two stored profiles, nothing read",
        "floor": "hand-written: pyarrow reads both versions, numpy bins and PSI",
    }
    for kind, label in names.items():
        found = results.get(kind, {})
        if "error" in found:
            lines.append(f"| {label} | error: {found['error']} | | |")
        else:
            lines.append(f"| {label} | {found['median_s']:.2f} s | {found['min_s']:.2f} s | {found['runs']} |")
    fk_median = results.get("featurekit", {}).get("median_s")
    if fk_median is not None:
        verdict = "met" if fk_median <= TARGET_S else "missed"
        lines += ["", f"Target: a report between two 10M-row versions in at most {TARGET_S:.0f} s: **{verdict}** "
                  f"({fk_median:.2f} s, median)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def record_section(results: Path) -> str:
    path = results / RECORD
    return section(json.loads(path.read_text())) if path.exists() else ""
