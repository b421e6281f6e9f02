"""The featurekit and hand-written ("floor") sides of each workload. Each runs in a fresh process."""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
from deltalake import ColumnProperties, DeltaTable, WriterProperties, write_deltalake

import featurekit as fk
from benchmarks.data import END, FEATURES, LOOKUP_AT, START, VIEWS, is_prepared, mark_prepared, restore
from benchmarks.timing import Stopwatch

# The floor writes Delta files as a tuned hand-written job would (and as featurekit does): row groups
# DuckDB can scan in parallel, no dictionary encoding for the all-numeric, mostly distinct columns.
FLOOR_WRITER = WriterProperties(
    max_row_group_size=131_072,
    compression="SNAPPY",
    default_column_properties=ColumnProperties(dictionary_enabled=False),
)

FEATURES_PY = """\
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])

def _view(name):
    source = fk.FileSource(f"../sources/{name}.parquet", created_timestamp_field="created")

    def passthrough(rows: pl.DataFrame) -> pl.DataFrame:
        return rows

    passthrough.__name__ = passthrough.__qualname__ = name
    return fk.feature_view(entity=driver, source=source, ttl=timedelta(days=7))(passthrough)

# one line per view with source data, e.g. stats_a = _view("stats_a")
VIEW_ASSIGNMENTS


@fk.on_demand(inputs=["stats_a:f0"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("f0") * pl.col("trip_km").log1p())
"""

Result = dict[str, Any]


def fk_repo(folder: Path) -> Path:
    """The featurekit repo of a scale, applied and materialized (offline and online) once."""
    repo = folder / "fk_repo"
    if is_prepared(repo):
        return repo
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    views = [v for v in VIEWS if (folder / "sources" / f"{v}.parquet").exists()]  # xlarge has one
    assignments = "\n".join(f'{v} = _view("{v}")' for v in views)
    (repo / "features.py").write_text(FEATURES_PY.replace("VIEW_ASSIGNMENTS", assignments))
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(START, END)
    mark_prepared(repo)
    return repo


def _table_version(store: fk.FeatureStore, view: str) -> tuple[str, int]:
    """The Delta table folder of a view's active version and its materialized data version."""
    version = store.registry.active()[view].version
    materialized = store.registry.last_materialization(version.id)
    assert materialized is not None
    return str(store.tables.path(view, version.version)), materialized.data_version


# -- training sets --------------------------------------------------------------------------


def fk_training(folder: Path, views: int, sink: str, out: Path) -> Result:
    repo = fk_repo(folder)
    with fk.FeatureStore(repo, progress=False) as store:
        features = [f"{v}:{f}" for v in VIEWS[:views] for f in FEATURES]
        watch = Stopwatch()
        result = store.training_set(folder / "spine.parquet", features, full_names=views > 1)
        if sink == "parquet":
            result.to_parquet(out)
        else:
            table = result.to_arrow()
        timing = watch.result()
        if sink != "parquet":
            pq.write_table(table, out)
    return timing


def floor_sql(files: dict[str, list[str]], spine: str, full_names: bool) -> tuple[str, list[Any]]:
    """The fastest hand-written DuckDB query we know for the same join (TTL 7 days, created tie-break)."""
    params: list[Any] = [spine]
    ctes = ["s AS (SELECT *, file_row_number AS rn FROM read_parquet(?, file_row_number = true))"]
    selects = ["s.driver_id", "s.event_timestamp", "s.label"]
    joins = []
    for index, (view, paths) in enumerate(files.items()):
        packed = ", ".join(["t := f.event_timestamp", "c := f.created", *(f"{x} := f.{x}" for x in FEATURES)])
        ctes.append(
            f"j{index} AS (SELECT s.rn, max(struct_pack({packed})) AS v FROM s JOIN read_parquet(?) f "
            "ON s.driver_id = f.driver_id AND f.event_timestamp BETWEEN s.event_timestamp - INTERVAL 7 DAY "
            "AND s.event_timestamp GROUP BY s.rn)"
        )
        params.append(paths)
        joins.append(f"LEFT JOIN j{index} ON j{index}.rn = s.rn")
        selects += [f"j{index}.v.{x} AS {view + '__' + x if full_names else x}" for x in FEATURES]
    sql = f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM s {' '.join(joins)} ORDER BY s.rn"
    return sql, params


def floor_training(folder: Path, views: int, sink: str, out: Path) -> Result:
    repo = fk_repo(folder)
    with fk.FeatureStore(repo, progress=False) as store:
        tables = {v: _table_version(store, v) for v in VIEWS[:views]}
    # Timed from a fresh DuckDB connection, as featurekit's first query in a store, and from the
    # Delta tables' paths and versions: a job reading a Delta table must find its files in the log.
    watch = Stopwatch()
    files = {
        v: [u.removeprefix("file://") for u in DeltaTable(p, version=d).file_uris()] for v, (p, d) in tables.items()
    }
    sql, params = floor_sql(files, str(folder / "spine.parquet"), views > 1)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if sink == "parquet":
        con.sql(sql, params=params).write_parquet(str(out))
        timing = watch.result()
    else:
        table = con.sql(sql, params=params).to_arrow_table()
        timing = watch.result()
        pq.write_table(table, out)
    return timing


# -- materialization ------------------------------------------------------------------------


@contextmanager
def scratch_repo(folder: Path) -> Iterator[Path]:
    """A throw-away copy of the scale's repo (Parquet hard-linked) for workloads that write.

    Every materialization adds a data version; on the shared repo they would pile up (tens of GB
    at xlarge). The copy sits next to the original so the sources' relative paths still hold.
    """
    copy = folder / f"fk_repo-scratch-{os.getpid()}"
    restore(fk_repo(folder), copy)
    try:
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def fk_materialize(folder: Path, online: bool) -> Result:
    with scratch_repo(folder) as repo, fk.FeatureStore(repo, progress=False) as store:
        watch = Stopwatch()
        (result,) = store.materialize(START, END, views=["stats_a"], online=online)
        timing = watch.result()
    return {**timing, "rows": result.source_rows, "online_rows": result.online_rows}


def floor_materialize_offline(folder: Path, work: Path) -> Result:
    """DuckDB reads the window, deltalake writes it: the same work without a feature function."""
    target = work / "floor_delta"
    shutil.rmtree(target, ignore_errors=True)
    watch = Stopwatch()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    reader = con.sql(
        "SELECT * FROM read_parquet(?) WHERE event_timestamp >= ? AND event_timestamp < ?",
        params=[str(folder / "sources" / "stats_a.parquet"), START, END],
    ).to_arrow_reader(1_000_000)
    write_deltalake(str(target), reader, mode="overwrite", writer_properties=FLOOR_WRITER)
    timing = watch.result()
    rows = pq.ParquetFile(folder / "sources" / "stats_a.parquet").metadata.num_rows
    return {**timing, "rows": rows}


def floor_materialize_full(folder: Path, work: Path) -> Result:
    """What featurekit's materialize does, by hand: the offline Delta write, then the online load."""
    offline = floor_materialize_offline(folder, work)
    online = floor_online_load(folder, work)
    seconds, cpu = (offline[k] + online[k] for k in ("seconds", "cpu_seconds"))
    return {"seconds": seconds, "cpu_seconds": cpu, "online_rows": online["online_rows"]}


def fk_online_load(folder: Path) -> Result:
    """featurekit's online load step alone: newest committed row per entity into SQLite."""
    repo = fk_repo(folder)
    with fk.FeatureStore(repo, progress=False) as store:
        version = store.registry.active()["stats_a"].version
        materialized = store.registry.last_materialization(version.id)
        assert materialized is not None
        store.online.drop_table(f"stats_a__v{version.version}")
        watch = Stopwatch()
        rows = store._materializer().load_online(version, materialized.data_version, None)
        timing = watch.result()
    return {**timing, "online_rows": rows}


def floor_online_load(folder: Path, work: Path) -> Result:
    """DuckDB latest-per-entity (one max over a struct, key order) + one SQLite transaction."""
    path = work / "floor_online.db"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    cols = ", ".join(FEATURES)
    db.execute(f"CREATE TABLE t (driver_id INTEGER PRIMARY KEY, ts INTEGER, {cols})")
    watch = Stopwatch()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    packed = ", ".join(["t := event_timestamp", "c := created", *(f"{x} := {x}" for x in FEATURES)])
    table = con.sql(
        f"SELECT driver_id, epoch_us(v.t) AS ts, {', '.join(f'v.{x} AS {x}' for x in FEATURES)} FROM "
        f"(SELECT driver_id, max(struct_pack({packed})) AS v FROM read_parquet(?) GROUP BY driver_id) "
        "ORDER BY driver_id",  # key order: SQLite's B-tree takes sorted inserts twice as fast
        params=[str(folder / "sources" / "stats_a.parquet")],
    ).to_arrow_table()
    rows = zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * (len(FEATURES) + 2))})", rows)
    db.execute("COMMIT")
    return {**watch.result(), "online_rows": table.num_rows}


# -- online lookups ---------------------------------------------------------------------------


def _latencies(call: Callable[[int], object], calls: int) -> Result:
    for i in range(min(200, calls)):
        call(i)
    samples = []
    for i in range(calls):
        began = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - began)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3,
        "seconds": statistics.median(samples),
        "calls": calls,
    }


def _entity_batches(entities: int, size: int, count: int) -> list[list[int]]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, entities, size).tolist() for _ in range(count)]


def fk_lookup(folder: Path, entities: int, size: int, on_demand: bool, calls: int) -> Result:
    repo = fk_repo(folder)
    batches = _entity_batches(entities, size, calls)
    features = [f"stats_a:{x}" for x in FEATURES] + (["trip_risk"] if on_demand else [])
    with fk.FeatureStore(repo, progress=False) as store:
        if on_demand:
            request = {"trip_km": [3.2] * size}

            def call(i: int) -> object:
                return store.online_features(
                    {"driver_id": batches[i]}, features, request=request, at=LOOKUP_AT
                ).to_dict()
        else:

            def call(i: int) -> object:
                return store.online_features({"driver_id": batches[i]}, features, at=LOOKUP_AT).to_dict()

        return _latencies(call, calls)


def floor_lookup(folder: Path, entities: int, size: int, calls: int) -> Result:
    """A raw SQLite point or IN query on featurekit's own online table (no TTL, no decoding)."""
    repo = fk_repo(folder)
    batches = _entity_batches(entities, size, calls)
    db = sqlite3.connect(repo / ".featurekit" / "online.db")
    db.execute("PRAGMA mmap_size = 1073741824")  # memory-mapped reads, as featurekit's store does
    cols = ", ".join(FEATURES)
    if size == 1:
        sql = f"SELECT __fk_key, __fk_event, {cols} FROM stats_a__v1 WHERE __fk_key = ?"
    else:
        sql = f"SELECT __fk_key, __fk_event, {cols} FROM stats_a__v1 WHERE __fk_key IN ({', '.join('?' * size)})"
    return _latencies(lambda i: db.execute(sql, batches[i]).fetchall(), calls)


def lookups_during_materialize(folder: Path, entities: int, seconds: float) -> Result:
    """p50/p99 of 1-entity lookups while another process materializes the same view in a loop."""
    with scratch_repo(folder) as repo:
        return _lookups_during_writes(repo, entities, seconds)


def _lookups_during_writes(repo: Path, entities: int, seconds: float) -> Result:
    import subprocess
    import sys

    writer = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "materialize-loop", str(repo), str(seconds)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    errors = 0
    samples = []
    features = [f"stats_a:{x}" for x in FEATURES]
    rng = np.random.default_rng(9)
    with fk.FeatureStore(repo, progress=False) as store:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            key = int(rng.integers(0, entities))
            began = time.perf_counter()
            try:
                store.online_features({"driver_id": [key]}, features, at=LOOKUP_AT).to_dict()
            except fk.FeaturekitError:
                errors += 1
            samples.append(time.perf_counter() - began)
    writer.wait()
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99) - 1] * 1e3,
        "seconds": statistics.median(samples),
        "calls": len(samples),
        "errors": errors,
        "writer_exit": writer.returncode,
    }


def materialize_loop(repo: Path, seconds: float, idle: bool = False, cpus: str | None = None) -> None:
    """Re-materialize the last week of stats_a (offline and online) until ``seconds`` pass.

    ``idle``: at the idle CPU priority, as ``featurekit materialize --idle`` runs; ``cpus``:
    confined to those CPUs, as ``featurekit materialize --cpus`` runs.
    """
    deadline = time.monotonic() + seconds
    if cpus is not None:
        fk.confine_to_cpus(cpus)
    fk.lower_cpu_priority(idle=idle)
    with fk.FeatureStore(repo, progress=False) as store:
        while time.monotonic() < deadline:
            store.materialize(END - timedelta(days=7), END, views=["stats_a"])


def same_tables(a: Path, b: Path) -> str | None:
    """None when both Parquet files hold the same rows and values, else what differs."""
    left, right = pq.read_table(a), pq.read_table(b)
    if left.column_names != right.column_names:
        return f"columns differ: {left.column_names} vs {right.column_names}"
    if left.num_rows != right.num_rows:
        return f"row counts differ: {left.num_rows} vs {right.num_rows}"
    for name in left.column_names:
        x, y = left.column(name), right.column(name)
        if x.type != y.type:
            y = y.cast(x.type)
        if not x.equals(y):
            return f"column {name!r} differs"
    return None
