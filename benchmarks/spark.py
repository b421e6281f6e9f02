"""The Spark engine beside DuckDB on one machine, and a hot key's task skew with and without time slices.

``python -m benchmarks.spark [--repeat N]`` writes ``benchmarks/results/spark.json``:

* **start-up**: building the ``local[2]`` session (reported apart, paid once per process);
* **medium** (1M feature rows of one view, 100k entities, a 100k-row spine): materialize and
  a training set on each engine, wall time and CPU seconds (this process plus, for Spark, its
  JVM and the Python workers it reaped);
* **hot key**: a view whose key 0 holds 10% of all rows, joined with ``featurekit.join.slices``
  1 (off) and 8: for the join's widest stage, each task's shuffle records and run time, as
  Spark's status store records them (max over mean: 1.0 is perfectly even).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import featurekit as fk
from benchmarks.data import END, SCALES, START, ensure
from benchmarks.timing import Stopwatch

RESULTS = Path(__file__).resolve().parent / "results" / "spark.json"
FEATURES = """
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
source = fk.FileSource("{path}", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=source, ttl=None, frame="arrow")
def stats(rows):
    return rows
"""
NAMES = [f"stats:f{i}" for i in range(8)]


def jvm_cpu_s(session: Any) -> float:
    """CPU seconds of the session's JVM and of the children it reaped (its Python workers)."""
    pid = session.sparkContext._gateway.proc.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def repo(base: Path, source: Path) -> Path:
    root = base / "repo"
    root.mkdir(parents=True)
    (root / "features.py").write_text(FEATURES.format(path=source))
    return root


def measure(work: Any, session: Any | None) -> dict[str, float]:
    jvm = jvm_cpu_s(session) if session is not None else 0.0
    watch = Stopwatch()
    work()
    result = watch.result()
    if session is not None:
        result["cpu_seconds"] += jvm_cpu_s(session) - jvm
    return result


def medium(base: Path, session: Any, repeat: int) -> dict[str, Any]:
    folder = ensure(SCALES["medium"])
    spine = pq.read_table(folder / "spine.parquet")
    out: dict[str, Any] = {}
    for name in ("duckdb", "spark"):
        runs: dict[str, list[dict[str, float]]] = {"materialize": [], "training_set": []}
        for attempt in range(repeat):
            root = repo(base / f"{name}{attempt}", folder / "sources" / "stats_a.parquet")
            with fk.FeatureStore(root, progress=False, spark=session if name == "spark" else None) as store:
                store.apply()
                used = session if name == "spark" else None
                runs["materialize"].append(measure(lambda s=store: s.materialize(START, END, online=False), used))
                runs["training_set"].append(measure(lambda s=store: s.training_set(spine, NAMES).to_arrow(), used))
            shutil.rmtree(root.parent)
        out[name] = {
            k: {
                "median_s": statistics.median(r["seconds"] for r in v),
                "cpu_s": statistics.median(r["cpu_seconds"] for r in v),
            }
            for k, v in runs.items()
        }
    return out


def hot_key_rows(rows: int = 400_000, entities: int = 4_000) -> tuple[pa.Table, pa.Table]:
    """Feature rows whose key 0 holds 10%, and a spine with the same share."""
    rng = np.random.default_rng(7)
    keys = np.where(rng.random(rows) < 0.1, 0, rng.integers(1, entities, rows))
    base = np.datetime64(START.replace(tzinfo=None), "us").astype("int64")
    event = base + rng.integers(0, 60 * 86_400, rows) * 1_000_000
    features = pa.table(
        {
            "driver_id": keys,
            "event_timestamp": pa.array(event, pa.timestamp("us", tz="UTC")),
            "created": pa.array(event, pa.timestamp("us", tz="UTC")),
            **{f"f{i}": rng.random(rows) for i in range(8)},
        }
    )
    points = rows // 4
    spine = pa.table(
        {
            "driver_id": np.where(rng.random(points) < 0.1, 0, rng.integers(1, entities, points)),
            "event_timestamp": pa.array(
                base + rng.integers(0, 60 * 86_400, points) * 1_000_000, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    return features, spine


def task_skew(session: Any, group: str) -> dict[str, float]:
    """The widest stage of a job group's jobs: tasks, and max/mean of shuffle records and run time."""
    context = session.sparkContext
    tracker = context.statusTracker()
    store = context._jsc.sc().statusStore()
    widest: list[tuple[int, int]] = []
    for job in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job)
        for stage in info.stageIds if info is not None else []:
            tasks = store.taskList(stage, 0, 1_000_000).iterator()
            found = []
            while tasks.hasNext():
                task = tasks.next()
                metrics = task.taskMetrics()
                if metrics.isDefined():
                    found.append(
                        (int(metrics.get().shuffleReadMetrics().recordsRead()), int(metrics.get().executorRunTime()))
                    )
            if sum(r for r, _ in found) > sum(r for r, _ in widest):
                widest = found
    records, times = [r for r, _ in widest], [t for _, t in widest]
    return {
        "tasks": len(widest),
        "records_max_over_mean": max(records) / statistics.mean(records) if records else 0.0,
        "time_max_over_mean": max(times) / statistics.mean(times) if times and statistics.mean(times) else 0.0,
        "largest_task_share": max(records) / sum(records) if records else 0.0,
    }


def hot_key(base: Path, session: Any) -> dict[str, Any]:
    features, spine = hot_key_rows()
    source = base / "hot.parquet"
    pq.write_table(features, source)
    root = repo(base / "hot", source)
    out: dict[str, Any] = {}
    previous = {
        k: session.conf.get(k, None)
        for k in ("spark.sql.shuffle.partitions", "spark.sql.adaptive.coalescePartitions.enabled")
    }
    session.conf.set("spark.sql.shuffle.partitions", "16")
    session.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")  # keep one task per partition
    try:
        with fk.FeatureStore(root, progress=False, spark=session) as store:
            store.apply()
            store.materialize(START, END + timedelta(days=1), online=False)
            tables = {}
            for slices in (1, 8):
                session.conf.set("featurekit.join.slices", str(slices))
                group = f"bench-hot-{slices}"
                session.sparkContext.setJobGroup(group, group)
                watch = Stopwatch()
                tables[slices] = store.training_set(spine, NAMES).to_arrow()
                out[f"slices_{slices}"] = {**watch.result(), **task_skew(session, group)}
            out["same_result"] = tables[1].equals(tables[8])
    finally:
        session.conf.unset("featurekit.join.slices")
        for key, value in previous.items():
            if value is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-medium", action="store_true")
    args = parser.parse_args()
    from featurekit.offline.spark_engine import build_session

    load_before = os.getloadavg()
    began = time.perf_counter()
    session = build_session("local[2]", {"spark.sql.shuffle.partitions": "8"})
    record: dict[str, Any] = {"startup_s": time.perf_counter() - began}
    base = Path(tempfile.mkdtemp(prefix="fk-spark-bench-"))
    try:
        record["hot_key"] = hot_key(base, session)
        if not args.skip_medium:
            record["medium"] = medium(base, session, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        session.stop()
    record["load"] = {"before": load_before, "after": os.getloadavg()}
    flags = [f"--repeat {args.repeat}"] + (["--skip-medium"] if args.skip_medium else [])
    record["command"] = "python -m benchmarks.spark " + " ".join(flags)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
