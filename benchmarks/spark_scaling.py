"""A training set on a Spark standalone cluster at growing sizes, and its task-time skew under a hot key.

``python -m benchmarks.spark_scaling [--millions 1 10 30] [--slices 1 8] [--partitions 16]`` starts a
standalone master and two one-core workers on loopback (as ``tests/test_spark_cluster.py`` does), and for
each size N million feature rows of one view (8 float features, N/10 million entities, key 0
holding 10% of all rows; a spine of N/10 million rows with the same share of key 0):

* materializes the view once on DuckDB (the engines share tables; not measured here);
* builds the training set on the cluster once per ``featurekit.join.slices`` value, as a Spark
  DataFrame spine read from Parquet, written by the executors as Parquet (``to_spark()``, then
  ``write.parquet``), and records its wall time and, for the join's widest stage (the one that
  shuffles the most records), each task's run time and shuffle records from Spark's status
  store: max over median and the largest task's share of the stage's total task time.

Results go to ``benchmarks/results/spark_scaling.json``; the session's start-up is reported apart.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import featurekit as fk
from benchmarks.data import END, START
from benchmarks.spark import NAMES, repo, task_skew
from benchmarks.timing import Stopwatch

RESULTS = Path(__file__).resolve().parent / "results" / "spark_scaling.json"
RECORD = RESULTS.name
HOT_SHARE = 0.1
CHUNK = 1_000_000
SHUFFLE_PARTITIONS = 16
WORKERS = 2  # one executor of one core on each


def write_rows(path: Path, rows: int, entities: int, seed: int, features: bool) -> None:
    """``rows`` feature rows (or spine rows) in chunks of a million, key 0 holding HOT_SHARE of them."""
    base = np.datetime64(START.replace(tzinfo=None), "us").astype("int64")
    span = int((END - START).total_seconds())
    writer = None
    try:
        for index, low in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - low)
            rng = np.random.default_rng([seed, index])
            keys = np.where(rng.random(n) < HOT_SHARE, 0, rng.integers(1, entities, n))
            event = pa.array(base + rng.integers(0, span, n) * 1_000_000, pa.timestamp("us", tz="UTC"))
            columns: dict[str, Any] = {"driver_id": keys, "event_timestamp": event}
            if features:
                columns["created"] = event
                columns.update({f"f{i}": rng.random(n) for i in range(8)})
            table = pa.table(columns)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def cluster_conf(memory: str, partitions: int) -> dict[str, str]:
    return {
        "spark.executor.cores": "1",
        "spark.executor.memory": memory,
        "spark.cores.max": "2",
        "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.sql.adaptive.coalescePartitions.enabled": "false",  # one task per shuffle partition
        "spark.executorEnv.PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
    }


def one_size(base: Path, session: Any, millions: float, slices: list[int], partitions: int) -> dict[str, Any]:
    rows = int(millions * 1_000_000)
    folder = base / f"m{millions:g}"
    folder.mkdir()
    source, spine_path = folder / "features.parquet", folder / "spine.parquet"
    entities = max(rows // 10, 1_000)
    write_rows(source, rows, entities, seed=1, features=True)
    write_rows(spine_path, rows // 10, entities, seed=2, features=False)
    root = repo(folder, source)
    from featurekit.offline.duckdb_engine import DuckDBEngine

    watch = Stopwatch()
    with fk.FeatureStore(root, progress=False, engine=DuckDBEngine(root)) as store:
        store.apply()
        store.materialize(START, END, online=False)
    out: dict[str, Any] = {"rows": rows, "spine_rows": rows // 10, "partitions": partitions}
    out["materialize_duckdb_s"] = watch.result()["seconds"]
    with fk.FeatureStore(root, progress=False, spark=session) as store:
        for count in slices:
            session.conf.set("featurekit.join.slices", str(count))
            group = f"bench-scaling-{millions:g}-{count}"
            session.sparkContext.setJobGroup(group, group)
            target = folder / f"train{count}"
            watch = Stopwatch()
            spine = session.read.parquet(str(spine_path))
            store.training_set(spine, NAMES).to_spark().write.parquet(str(target))
            out[f"slices_{count}"] = {**watch.result(), **task_skew(session, group)}
            session.sparkContext.setLocalProperty("spark.jobGroup.id", None)
            shutil.rmtree(target)
    session.conf.unset("featurekit.join.slices")
    shutil.rmtree(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--millions", type=float, nargs="+", default=[1, 10, 30])
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--executor-memory", default="2g")
    parser.add_argument("--partitions", type=int, default=SHUFFLE_PARTITIONS, help="shuffle partitions")
    args = parser.parse_args()
    from featurekit.offline.spark_engine import build_session
    from tests.spark_cluster import standalone_cluster

    load_before = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="fk-spark-scaling-"))
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record: dict[str, Any] = {"sizes": previous.get("sizes", {})}
    logs = base / "logs"
    logs.mkdir()
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    try:
        memory = args.executor_memory
        with standalone_cluster(logs, workers=WORKERS, worker_memory=memory) as master:
            began = time.perf_counter()
            session = build_session(master, cluster_conf(memory, args.partitions))
            record["startup_s"] = time.perf_counter() - began
            try:
                for millions in args.millions:
                    found = one_size(base, session, millions, args.slices, args.partitions)
                    found["load_after"] = os.getloadavg()
                    name = f"{millions:g}M" + ("" if args.partitions == SHUFFLE_PARTITIONS else f"/{args.partitions}")
                    record["sizes"][name] = {**record["sizes"].get(name, {}), **found}  # other slices kept
                    RESULTS.write_text(json.dumps(record, indent=2) + "\n")  # keep what finished
            finally:
                session.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    record["cluster"] = f"standalone master + 2 workers on loopback, 1 core and {args.executor_memory} each"
    record["load"] = {"before": load_before, "after": os.getloadavg()}
    sizes = " ".join(f"{m:g}" for m in args.millions)
    record["command"] = (
        f"python -m benchmarks.spark_scaling --millions {sizes} --slices {' '.join(map(str, args.slices))}"
        + (f" --partitions {args.partitions}" if args.partitions != SHUFFLE_PARTITIONS else "")
    )
    runs = previous.get("runs", []) if len(record["sizes"]) > len(args.millions) else []
    record["runs"] = [*runs, {k: record[k] for k in ("command", "startup_s", "load")}]
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()


def section(record: dict[str, Any] | None) -> str:
    """The RESULTS.md section of the last recorded run, or nothing."""
    if not record or not record.get("sizes"):
        return ""
    lines = [
        "## Spark standalone cluster: training-set scaling and a hot key's task skew",
        "",
        "; ".join(
            f"`{run['command']}` (session start-up {run['startup_s']:.1f} s, apart; load average "
            f"{run['load']['before'][0]:.1f} before, {run['load']['after'][0]:.1f} after)"
            for run in record.get("runs", [record])
        )
        + f": {record.get('cluster', '')}, shuffle partitions as listed (coalescing off). One view "
        "of 8 float features; key 0 holds 10% of the feature rows and of the spine (a tenth as many rows). "
        "The training set is a Parquet spine read by Spark, joined and written by the executors. Skew is "
        "of the join's widest stage (most shuffled records), from Spark's status store.",
        "",
        "The first task on each executor also starts its Python worker, so the skew columns are given "
        "over all tasks and, after the slash, over the tasks after that first wave. Task seconds: the "
        "widest stage's / every stage's; shuffle: MB written by every stage.",
        "",
        "| feature rows | spine rows | partitions | slices | wall | feature rows/s | task time max / median | "
        "largest task's share of task time | largest task's share of shuffled rows | task seconds | "
        "shuffle |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sizes = sorted(record["sizes"].values(), key=lambda s: (s["rows"], s.get("partitions", SHUFFLE_PARTITIONS)))
    for size in sizes:
        for key in sorted(k for k in size if k.startswith("slices_")):
            run = size[key]
            warm = run["task_ms"][WORKERS:]
            warm_ratio = max(warm) / statistics.median(warm) if warm else 0.0
            warm_share = max(warm) / sum(warm) if warm else 0.0
            lines.append(
                f"| {size['rows']:,} | {size['spine_rows']:,} | {size.get('partitions', SHUFFLE_PARTITIONS)} | "
                f"{key.removeprefix('slices_')} | "
                f"{run['seconds']:.1f} s | {size['rows'] / run['seconds'] / 1e3:.0f}k | "
                f"{run['time_max_over_median']:.2f} / {warm_ratio:.2f} | "
                f"{run['largest_task_time_share']:.1%} / {warm_share:.1%} | "
                f"{run['largest_task_share']:.1%} | {run['task_seconds']:.1f} / {run['all_task_seconds']:.1f} | "
                f"{run['shuffle_written_mb']:.0f} MB |"
            )
    growth = []
    fixed = [s for s in sizes if s.get("partitions", SHUFFLE_PARTITIONS) == SHUFFLE_PARTITIONS]
    for low, high in itertools.pairwise(fixed):
        for key in sorted(k for k in high if k.startswith("slices_") and k in low):
            factor = (high[key]["seconds"] / low[key]["seconds"]) / (high["rows"] / low["rows"])
            growth.append(f"{low['rows'] / 1e6:g}M to {high['rows'] / 1e6:g}M, {key.replace('_', ' ')}: {factor:.2f}")
    if growth:
        intro = f"Growth at {SHUFFLE_PARTITIONS} partitions (time ratio over row ratio; 1.0 is linear): "
        lines += ["", intro + "; ".join(growth) + "."]
    return "\n".join(lines)


def record_section(results: Path) -> str:
    path = results / RECORD
    return section(json.loads(path.read_text())) if path.exists() else ""
