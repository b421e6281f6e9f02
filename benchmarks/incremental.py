"""Incremental materialize of one new day: featurekit and the hand-written floor.

Each contender first builds (once per scale) a base state materialized over ``[START, END)`` from
the glob ``incremental/sources/stats_a/*.parquet``; ``part-1.parquet`` holds the new day. Every
measured run copies that base into its own work folder (untimed), then times the new day's work alone:
read the source rows of ``[END, END + 1 day)``, append them to the offline Delta table, and
upsert each touched entity's newest row into SQLite (only where it is newer).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import duckdb
from deltalake import write_deltalake

import featurekit as fk
from benchmarks.contenders import FLOOR_WRITER
from benchmarks.data import END, FEATURES, NEW_DAY_END, START, incremental_folder, is_prepared, mark_prepared, restore

INCREMENTAL_FEATURES_PY = """\
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("SOURCE", created_timestamp_field="created")


@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def stats_a(rows: pl.DataFrame) -> pl.DataFrame:
    return rows
"""


def fk_incremental(folder: Path, work: Path) -> dict[str, object]:
    root = incremental_folder(folder)
    base, run = root / "featurekit_base", work / "featurekit_incremental"
    if not is_prepared(base):
        _fresh(base)
        source = root / "sources" / "stats_a" / "*.parquet"  # absolute: the run copy lives elsewhere
        (base / "features.py").write_text(INCREMENTAL_FEATURES_PY.replace("SOURCE", str(source)))
        with fk.FeatureStore(base, progress=False) as store:
            store.apply()
            store.materialize(START, END)
        mark_prepared(base)
    restore(base, run)
    with fk.FeatureStore(run, progress=False) as store:
        began = time.perf_counter()
        (result,) = store.materialize_incremental(end=NEW_DAY_END)
        seconds = time.perf_counter() - began
    assert (result.start, result.end) == (END, NEW_DAY_END), "the base state must end at END"
    return {"seconds": seconds, "window_rows": result.source_rows, "online_rows": result.online_rows}


def _duckdb() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _fresh(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


_PACKED = ", ".join(["t := event_timestamp", "c := created", *(f"{x} := {x}" for x in FEATURES)])
_LATEST = (
    f"SELECT driver_id, epoch_us(v.t) AS ts, epoch_us(v.c) AS created, {', '.join(f'v.{x} AS {x}' for x in FEATURES)} "
    f"FROM (SELECT driver_id, max(struct_pack({_PACKED})) AS v FROM {{rows}} GROUP BY driver_id) ORDER BY driver_id"
)
_UPSERT = (
    f"INSERT INTO t VALUES ({', '.join('?' * (len(FEATURES) + 3))}) ON CONFLICT (driver_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ["ts", "created", *FEATURES])
    + " WHERE (excluded.ts, excluded.created) >= (t.ts, t.created)"
)


def _floor_write_window(
    con: duckdb.DuckDBPyConnection, parts: str, target: Path, db: sqlite3.Connection
) -> tuple[int, int]:
    """Source rows of [END, NEW_DAY_END) -> Delta append; newest row per entity -> SQLite upsert."""
    window = con.sql(
        "SELECT * FROM read_parquet(?) WHERE event_timestamp >= ? AND event_timestamp < ?",
        params=[parts, END, NEW_DAY_END],
    ).to_arrow_table()
    write_deltalake(str(target / "delta"), window, mode="append", writer_properties=FLOOR_WRITER)
    con.register("window_rows", window)
    latest = con.sql(_LATEST.format(rows="window_rows")).to_arrow_table()
    rows = zip(*(latest.column(c).to_pylist() for c in latest.column_names), strict=True)
    db.execute("BEGIN")
    db.executemany(_UPSERT, rows)
    db.execute("COMMIT")
    return window.num_rows, latest.num_rows


def _floor_base(con: duckdb.DuckDBPyConnection, parts: str, base: Path) -> None:
    _fresh(base)
    reader = con.sql(
        "SELECT * FROM read_parquet(?) WHERE event_timestamp >= ? AND event_timestamp < ?", params=[parts, START, END]
    ).to_arrow_reader(1_000_000)
    write_deltalake(str(base / "delta"), reader, writer_properties=FLOOR_WRITER)
    db = sqlite3.connect(base / "online.db", isolation_level=None)
    db.execute(f"CREATE TABLE t (driver_id INTEGER PRIMARY KEY, ts INTEGER, created INTEGER, {', '.join(FEATURES)})")
    history = "(SELECT * FROM read_parquet(?) WHERE event_timestamp < ?)"
    latest = con.sql(_LATEST.format(rows=history), params=[parts, END]).to_arrow_table()
    db.execute("BEGIN")
    db.executemany(_UPSERT, zip(*(latest.column(c).to_pylist() for c in latest.column_names), strict=True))
    db.execute("COMMIT")
    db.close()
    mark_prepared(base)


def floor_incremental(folder: Path, work: Path) -> dict[str, object]:
    root = incremental_folder(folder)
    parts = str(root / "sources" / "stats_a" / "*.parquet")
    base, run = root / "floor_base", work / "floor_incremental"
    if not is_prepared(base):
        _floor_base(_duckdb(), parts, base)
    restore(base, run)
    db = sqlite3.connect(run / "online.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    began = time.perf_counter()  # from a fresh DuckDB connection, as featurekit's first query in a store
    rows, entities = _floor_write_window(_duckdb(), parts, run, db)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "window_rows": rows, "online_rows": entities}
