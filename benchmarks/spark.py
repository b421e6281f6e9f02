"""The Spark engine beside DuckDB on one machine, and a hot key's task skew with and without time slices.

``python -m benchmarks.spark [--repeat N] [--scales medium large] [--skip-hot-key]`` writes
``benchmarks/results/spark.json``:

* **start-up**: building the ``local[2]`` session (reported apart, paid once per process);
* **medium** and **large** (1M and 10M feature rows of one view, 100k and 1M entities and spine
  rows): materialize and a training set on each engine, each engine in a fresh child process:
  wall time, CPU seconds (the child plus, for Spark, its JVM and the Python workers it reaped)
  and the peak resident memory of the child's process tree (JVM and Python workers included),
  sampled every 50 ms;
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
    result["driver_cpu_seconds"] = result["cpu_seconds"]  # this (driver) process alone
    if session is not None:
        result["cpu_seconds"] += jvm_cpu_s(session) - jvm
    return result


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the JVM and Spark's Python workers), MB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        rss[int(entry.name)] = int(fields[21])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total * os.sysconf("SC_PAGE_SIZE") / 1e6


class PeakMemory:
    """Samples this process tree's resident memory every 50 ms; :meth:`take` gives the peak since
    the last take (or since the start)."""

    def __init__(self) -> None:
        import threading

        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(os.getpid()))

    def take(self) -> float:
        peak, self.peak = max(self.peak, tree_rss_mb(os.getpid())), 0.0
        return peak


def child(engine: str, scale: str, out: Path) -> None:
    """One engine at one scale in this (fresh) process: materialize, then a training set."""
    folder = ensure(SCALES[scale])
    spine = pq.read_table(folder / "spine.parquet")
    memory = PeakMemory()
    record: dict[str, Any] = {"engine": engine, "scale": scale, "idle_rss_mb": memory.take()}
    session = None
    if engine == "spark":
        from featurekit.offline.spark_engine import build_session

        began = time.perf_counter()
        session = build_session("local[2]", {"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "6g"})
        record["startup_s"] = time.perf_counter() - began
        record["startup_rss_mb"] = memory.take()
    base = Path(tempfile.mkdtemp(prefix="fk-spark-bench-"))
    try:
        root = repo(base, folder / "sources" / "stats_a.parquet")
        with fk.FeatureStore(root, progress=False, spark=session) as store:
            store.apply()
            memory.take()
            record["materialize"] = measure(lambda: store.materialize(START, END, online=False), session)
            record["materialize"]["rss_mb"] = memory.take()
            record["training_set"] = measure(lambda: store.training_set(spine, NAMES).to_arrow(), session)
            record["training_set"]["rss_mb"] = memory.take()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if session is not None:
            session.stop()
    out.write_text(json.dumps(record))


def engines(scale: str, repeat: int) -> dict[str, Any]:
    """Each engine in a fresh child process per repetition, alternating; medians of time, max of memory."""
    import subprocess
    import sys

    runs: dict[str, list[dict[str, Any]]] = {"duckdb": [], "spark": []}
    with tempfile.TemporaryDirectory() as scratch:
        for attempt in range(repeat):
            for name, found in runs.items():
                out = Path(scratch) / f"{name}{attempt}.json"
                command = [sys.executable, "-m", "benchmarks.spark", "--child", name, scale, str(out)]
                subprocess.run(command, check=True, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
                found.append(json.loads(out.read_text()))
    result: dict[str, Any] = {}
    for name, found in runs.items():
        entry: dict[str, Any] = {}
        for step in ("materialize", "training_set"):
            entry[step] = {
                "median_s": statistics.median(r[step]["seconds"] for r in found),
                "cpu_s": statistics.median(r[step]["cpu_seconds"] for r in found),
                "driver_cpu_s": statistics.median(r[step]["driver_cpu_seconds"] for r in found),
                "rss_mb": max(r[step]["rss_mb"] for r in found),
            }
        if name == "spark":
            entry["startup_s"] = statistics.median(r["startup_s"] for r in found)
            entry["startup_rss_mb"] = max(r["startup_rss_mb"] for r in found)
        result[name] = entry
    return result


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
    """The widest stage (most shuffled records) of a job group's jobs: its tasks, and how unevenly
    they share its records and run time (max over mean and over median; the largest task's share)."""
    context = session.sparkContext
    tracker = context.statusTracker()
    store = context._jsc.sc().statusStore()
    widest: list[tuple[int, int, int]] = []
    all_ms = shuffled = peak = 0
    for job in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job)
        for stage in info.stageIds if info is not None else []:
            tasks = store.taskList(stage, 0, 1_000_000).iterator()
            found = []
            while tasks.hasNext():
                task = tasks.next()
                metrics = task.taskMetrics()
                if metrics.isDefined():
                    m = metrics.get()
                    read = m.shuffleReadMetrics()
                    found.append(
                        (
                            int(read.recordsRead()),
                            int(m.executorRunTime()),
                            int(read.localBytesRead()) + int(read.remoteBytesRead()),
                        )
                    )
                    all_ms += int(m.executorRunTime())
                    shuffled += int(m.shuffleWriteMetrics().bytesWritten())
                    peak = max(peak, int(m.peakExecutionMemory()))
            if sum(f[0] for f in found) > sum(f[0] for f in widest):
                widest = found
    records, times = [f[0] for f in widest], [f[1] for f in widest]

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    return {
        "tasks": len(widest),
        "records_max_over_mean": ratio(max(records), statistics.mean(records)) if records else 0.0,
        "time_max_over_mean": ratio(max(times), statistics.mean(times)) if times else 0.0,
        "time_max_over_median": ratio(max(times), statistics.median(times)) if times else 0.0,
        "largest_task_share": ratio(max(records), sum(records)) if records else 0.0,
        "largest_task_time_share": ratio(max(times), sum(times)) if times else 0.0,
        "task_seconds": sum(times) / 1000,
        "all_task_seconds": all_ms / 1000,  # every stage of the group's jobs
        "shuffle_written_mb": shuffled / 1e6,
        "widest_shuffle_read_mb": sum(f[2] for f in widest) / 1e6,
        "peak_execution_mb": peak / 1e6,  # the largest of one task's peak execution memory
        "task_records": records,  # in the order the status store lists the tasks
        "task_ms": times,
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
    parser.add_argument("--scales", nargs="*", default=["medium", "large"], choices=["medium", "large"])
    parser.add_argument("--skip-hot-key", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "SCALE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], Path(args.child[2]))
        return
    from featurekit.offline.spark_engine import build_session

    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record: dict[str, Any] = {"engines": previous.get("engines", {}), "hot_key": previous.get("hot_key")}
    load_before = os.getloadavg()
    if not args.skip_hot_key:
        began = time.perf_counter()
        session = build_session("local[2]", {"spark.sql.shuffle.partitions": "8"})
        record["startup_s"] = time.perf_counter() - began
        base = Path(tempfile.mkdtemp(prefix="fk-spark-bench-"))
        try:
            record["hot_key"] = hot_key(base, session)
        finally:
            shutil.rmtree(base, ignore_errors=True)
            session.stop()
    for scale in args.scales:
        record["engines"][scale] = {**engines(scale, args.repeat), "load_after": os.getloadavg()}
    record["load"] = {"before": load_before, "after": os.getloadavg()}
    flags = [f"--repeat {args.repeat}", "--scales " + " ".join(args.scales)]
    flags += ["--skip-hot-key"] if args.skip_hot_key else []
    record["command"] = "python -m benchmarks.spark " + " ".join(flags)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()


def section(record: dict[str, Any] | None) -> str:
    """The RESULTS.md section of the last recorded run, or nothing."""
    if not record:
        return ""
    lines = [
        "## The Spark engine beside DuckDB on one machine (`local[2]`)",
        "",
        f"`{record.get('command', 'python -m benchmarks.spark')}`. Each engine runs in a fresh child process; "
        "CPU is the child's plus, for Spark, its JVM's and reaped Python workers'; peak RSS is the child's "
        "whole process tree (JVM and Python workers included), sampled every 50 ms. Load average "
        f"{record['load']['before'][0]:.1f} before, {record['load']['after'][0]:.1f} after.",
        "",
        "| scale | step | DuckDB | Spark | Spark / DuckDB | CPU DuckDB / Spark | peak RSS DuckDB / Spark |",
        "|---|---|---|---|---|---|---|",
    ]
    for scale, found in record.get("engines", {}).items():
        duck, spark = found["duckdb"], found["spark"]
        for step in ("materialize", "training_set"):
            a, b = duck[step], spark[step]
            lines.append(
                f"| {scale} | {step.replace('_', ' ')} | {a['median_s']:.2f} s | {b['median_s']:.2f} s | "
                f"{b['median_s'] / a['median_s']:.1f}x | {a['cpu_s']:.1f} / {b['cpu_s']:.1f} s | "
                f"{a.get('rss_mb', 0):.0f} / {b.get('rss_mb', 0):.0f} MB |"
            )
        if "startup_s" in spark:
            lines.append(
                f"| {scale} | Spark session start-up (apart) | - | {spark['startup_s']:.2f} s | - | - | "
                f"- / {spark['startup_rss_mb']:.0f} MB |"
            )
    hot = record.get("hot_key")
    if hot:
        lines += [
            "",
            "Hot key (key 0 holds 10% of 400k rows; 16 shuffle partitions, `local[2]`): the join's widest "
            f"task read {hot['slices_1']['largest_task_share']:.1%} of the shuffled rows without slices and "
            f"{hot['slices_8']['largest_task_share']:.1%} with `featurekit.join.slices` 8; same result: "
            f"{hot['same_result']}.",
        ]
    return "\n".join(lines)


def record_section(results: Path) -> str:
    path = results / RESULTS.name
    return section(json.loads(path.read_text())) if path.exists() else ""
