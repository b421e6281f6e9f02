"""``python -m benchmarks windows``: window aggregations (issue 13) against hand-written floors.

Data (cached under ``benchmarks/data/windows/<scale>/``): an event log of one entity key
(``customer_id``), microsecond event times over 90 days and one float ``amount``; activity is
Zipf-like (entity of rank r gets a share proportional to 1/r) plus one hot entity with
:attr:`WindowScale.hot` extra events, so that at least 100k of its events fall inside any 30-day
window. 1% of the events copy the key and time of another event (exact ties count twice). The
spine draws half its keys from the events (busy entities are scored often) and half uniformly from
the entities, at random microsecond times; 1% of its rows sit exactly at an event's time (the event
must not count) and 1% exactly one hour after one (it must count in the 1h window).

Features: 3 windows (1h, 7d, 30d) x 4 aggregations (``count()``, ``sum``, ``mean``, ``max`` of
``amount``) = 12, by the rule ``t - w <= e < t``. Contenders, each in a fresh child process (peak
RSS from ``VmHWM``), alternating within each repetition:

- ``featurekit``: ``store.training_set(spine, [12 features]).to_arrow()`` on a repo whose window
  view was materialized beforehand (``materialize`` of the whole range is timed on its own);
- ``polars``: spine rows concatenated to the events (null amount), sorted by key and time,
  ``rolling_{sum,mean,max}_by(closed="left")`` over each key; ``polars_fused``: the same rolling
  over one sorted Int64 column ``key * 2^44 + time`` (no ``over``: windows cannot cross keys);
  ``polars_rolling``: ``DataFrame.rolling(group_by=key, closed="left").agg(...)``;
- ``duckdb_range``: the same union in DuckDB, window functions over ``RANGE BETWEEN w PRECEDING
  AND CURRENT ROW EXCLUDE GROUP`` on integer microseconds: the exclusive end drops every row at t
  (``AND 1 PRECEDING`` is the same frame on integers but took 2.5x as long at medium);
- ``duckdb_prefix``: per-key prefix count and sum of the events, one ``ASOF JOIN`` of the spine at
  t, t - 1h, t - 7d and t - 30d (strict ``>``), differences; mean = sum / count. It computes only
  the 9 count/sum/mean features (a max does not decompose into prefixes), and differences of float
  prefix sums are not exact (the check reports their relative error);
- ``pandas``: ``groupby(key).rolling(w, on=time, closed="left")`` per aggregation.

DuckDB reads the Parquet files inside its timer; polars and pandas get their inputs in memory first
(their read time is recorded as ``load_seconds``). Every result comes back in spine order.
Correctness: a brute-force oracle (exact ``math.fsum``) on a sample of spine rows checks every
contender, and every contender is compared with ``duckdb_range`` on every row: counts and maxima
exactly, sums and means within 1e-9 relative. Online lookups (after the materialize): 12 window
features of one typical entity, of the hottest entity and of 100 entities, p50/p99.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import ROOT, peak_rss_mb

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RECORD = "windows.json"
SECTION = "## Window aggregations (issue 13)"
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
END = START + timedelta(days=DAYS)
US = 1_000_000
WINDOWS = {"1h": 3_600 * US, "7d": 7 * 86_400 * US, "30d": 30 * 86_400 * US}
PREFIXES = ("count", "amount_sum", "amount_mean", "amount_max")
FEATURES = [f"{p}_{w}" for p in PREFIXES for w in WINDOWS]
PREFIX_FEATURES = [f for f in FEATURES if not f.startswith("amount_max")]  # what duckdb_prefix computes
KEY, TIME = "customer_id", "event_timestamp"
VIEW = "customer_spend"
TIE_SHARE = 100  # one event in TIE_SHARE copies the key and time of another
EDGE_SHARE = 100  # one spine row in EDGE_SHARE sits at an event time, another one hour after one
FUSED_SHIFT = 44  # polars_fused: key << 44 | microseconds since START (2^44 us = 203 days > 90 + 30)
REL = 1e-9

FEATURES_PY = """\
from datetime import timedelta

import polars as pl

import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
transactions = fk.FileSource("data/events.parquet")


@fk.window_view(
    entity=customer,
    source=transactions,
    windows=[timedelta(hours=1), timedelta(days=7), timedelta(days=30)],
    aggregations=[agg.count(), agg.sum("amount"), agg.mean("amount"), agg.max("amount")],
)
def customer_spend(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select("customer_id", "event_timestamp", "amount")
"""


@dataclass(frozen=True)
class WindowScale:
    name: str
    events: int
    entities: int
    spine: int
    hot: int  # extra events of the hottest entity (uniform over the 90 days)

    @property
    def folder(self) -> Path:
        return ROOT / "windows" / self.name


SCALES = {
    s.name: s
    for s in (
        WindowScale("tiny", 30_000, 1_000, 3_000, 6_000),  # the smoke test's
        WindowScale("medium", 1_000_000, 100_000, 100_000, 320_000),
        WindowScale("large", 10_000_000, 100_000, 1_000_000, 320_000),
    )
}

Result = dict[str, Any]


# -- data ---------------------------------------------------------------------------------------


def _base_us() -> int:
    return int(np.datetime64(START.replace(tzinfo=None), "us").astype("int64"))


def _events(scale: WindowScale, seed: int = 13) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, scale.entities + 1)
    ranked = rng.choice(scale.entities, scale.events - scale.hot, p=weights / weights.sum())
    key_of_rank = rng.permutation(scale.entities)
    keys = key_of_rank[np.concatenate([ranked, np.zeros(scale.hot, dtype=ranked.dtype)])]
    times = _base_us() + rng.integers(0, DAYS * 86_400 * US, scale.events)
    tied = rng.choice(scale.events, scale.events // TIE_SHARE, replace=False)
    origin = rng.integers(0, scale.events, tied.size)
    keys[tied], times[tied] = keys[origin], times[origin]
    amount = np.round(rng.lognormal(3.0, 1.0, scale.events), 2)
    order = np.argsort(times, kind="stable")  # an append-only log: in event-time order
    return pa.table(
        {
            KEY: pa.array(keys[order], pa.int64()),
            TIME: pa.array(times[order], pa.timestamp("us", tz="UTC")),
            "amount": pa.array(amount[order], pa.float64()),
        }
    )


def _spine(scale: WindowScale, events: Any, seed: int = 14) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = scale.spine
    event_keys = events.column(KEY).to_numpy()
    event_times = events.column(TIME).cast(pa.int64()).to_numpy()
    picked = rng.integers(0, event_keys.size, n)
    keys = np.where(rng.random(n) < 0.5, event_keys[picked], rng.integers(0, scale.entities, n))
    times = _base_us() + rng.integers(0, DAYS * 86_400 * US, n)
    edges = max(1, n // EDGE_SHARE)
    at_event, after_event = rng.choice(n, 2 * edges, replace=False).reshape(2, edges)
    source = rng.integers(0, event_keys.size, (2, edges))
    keys[at_event], times[at_event] = event_keys[source[0]], event_times[source[0]]
    keys[after_event], times[after_event] = event_keys[source[1]], event_times[source[1]] + WINDOWS["1h"]
    return pa.table(
        {
            KEY: pa.array(keys, pa.int64()),
            TIME: pa.array(times, pa.timestamp("us", tz="UTC")),
            "label": rng.random(n) < 0.5,
        }
    )


def ensure_windows(scale: WindowScale) -> Path:
    """Write the scale's ``events.parquet`` and ``spine.parquet`` once; return their folder."""
    import pyarrow.parquet as pq

    folder = scale.folder
    folder.mkdir(parents=True, exist_ok=True)
    events_path, spine_path = folder / "events.parquet", folder / "spine.parquet"
    if not events_path.exists() or not spine_path.exists():
        events = _events(scale)
        pq.write_table(events, events_path.with_suffix(".tmp"), row_group_size=1_000_000)
        pq.write_table(_spine(scale, events), spine_path.with_suffix(".tmp"))
        spine_path.with_suffix(".tmp").rename(spine_path)
        events_path.with_suffix(".tmp").rename(events_path)
    return folder


# -- the floors ---------------------------------------------------------------------------------


def _inputs(folder: Path) -> tuple[Any, Any, float]:
    """Events and spine as polars frames (read before the timer) and the seconds the read took."""
    import polars as pl

    began = time.perf_counter()
    events = pl.read_parquet(folder / "events.parquet")
    spine = pl.read_parquet(folder / "spine.parquet")
    return events, spine, time.perf_counter() - began


def _union(events: Any, spine: Any) -> Any:
    """Spine rows (``__rn``, null amount and ``__ev``) appended to the events (``__ev`` 1), as microseconds."""
    import polars as pl

    ev = events.select(
        KEY,
        pl.col(TIME).dt.epoch("us").alias("__t"),
        "amount",
        pl.lit(1, pl.Int32).alias("__ev"),
        pl.lit(None, pl.UInt32).alias("__rn"),
    )
    sp = spine.with_row_index("__rn").select(
        KEY,
        pl.col(TIME).dt.epoch("us").alias("__t"),
        pl.lit(None, pl.Float64).alias("amount"),
        pl.lit(None, pl.Int32).alias("__ev"),
        "__rn",
    )
    return pl.concat([ev, sp])


def _finish(spine: Any, rows: Any, features: list[str]) -> Any:
    """The spine rows' features back in spine order, next to the spine's columns."""
    import polars as pl

    found = rows.filter(pl.col("__rn").is_not_null()).sort("__rn")
    return pl.concat([spine.select(KEY, TIME), found.select(features)], how="horizontal")


def _from_parts(count: Any, total: Any, maximum: Any | None, window: str) -> list[Any]:
    """count, sum (0 when empty), mean (null when empty), max of one window, named."""
    import polars as pl

    exprs = [
        count.fill_null(0).cast(pl.Int64).alias(f"count_{window}"),
        pl.when(count > 0).then(total).otherwise(0.0).alias(f"amount_sum_{window}"),  # drift: not 0 when empty
        pl.when(count > 0).then(total / count).alias(f"amount_mean_{window}"),
    ]
    if maximum is not None:
        exprs.append(maximum.alias(f"amount_max_{window}"))
    return exprs


def run_polars(folder: Path, variant: str) -> Result:
    import polars as pl

    from benchmarks.timing import Stopwatch

    events, spine, load = _inputs(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sortedness cannot be checked inside ``over``
        watch = Stopwatch()
        rows = _union(events, spine)
        if variant == "polars":
            rows = rows.sort(KEY, "__t")
            exprs = []
            for window, size in WINDOWS.items():
                kw = {"window_size": f"{size}i", "closed": "left"}
                count = pl.col("__ev").rolling_sum_by("__t", **kw).over(KEY)
                total = pl.col("amount").rolling_sum_by("__t", **kw).over(KEY)
                exprs += _from_parts(count, total, pl.col("amount").rolling_max_by("__t", **kw).over(KEY), window)
            rows = rows.with_columns(exprs)
        elif variant == "polars_fused":
            rows = rows.with_columns(
                (pl.col(KEY) * (1 << FUSED_SHIFT) + (pl.col("__t") - _base_us())).alias("__f")
            ).sort("__f")
            exprs = []
            for window, size in WINDOWS.items():
                kw = {"window_size": f"{size}i", "closed": "left"}
                count = pl.col("__ev").rolling_sum_by("__f", **kw)
                total = pl.col("amount").rolling_sum_by("__f", **kw)
                exprs += _from_parts(count, total, pl.col("amount").rolling_max_by("__f", **kw), window)
            rows = rows.with_columns(exprs)
        elif variant in ("polars_rolling", "polars_fused_rolling"):
            fused = variant == "polars_fused_rolling"
            if fused:
                rows = rows.with_columns(
                    (pl.col(KEY) * (1 << FUSED_SHIFT) + (pl.col("__t") - _base_us())).alias("__f")
                ).sort("__f")
            else:
                rows = rows.sort(KEY, "__t")
            parts = []
            for window, size in WINDOWS.items():
                grouping = (
                    rows.rolling("__f", period=f"{size}i", closed="left")
                    if fused
                    else rows.rolling("__t", period=f"{size}i", closed="left", group_by=KEY)
                )
                agg = grouping.agg(
                    pl.col("__ev").count().alias("c"),
                    pl.col("amount").sum().alias("s"),
                    pl.col("amount").max().alias("m"),
                )
                parts.append(agg.select(_from_parts(pl.col("c"), pl.col("s"), pl.col("m"), window)))
            rows = pl.concat([rows.select("__rn"), *parts], how="horizontal")
        else:
            raise SystemExit(f"unknown polars variant {variant}")
        result = _finish(spine, rows, FEATURES)
        timing = watch.result()
    return {**timing, "load_seconds": load, "frame": result}


def run_numpy(folder: Path) -> Result:
    """Searchsorted on one sorted ``key * 2^44 + time`` array, prefix sums, a sparse table for max."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.timing import Stopwatch

    began = time.perf_counter()
    events = pq.read_table(folder / "events.parquet")
    spine = pq.read_table(folder / "spine.parquet")
    keys, times = events.column(KEY).to_numpy(), events.column(TIME).cast(pa.int64()).to_numpy()
    amounts = events.column("amount").to_numpy()
    spine_keys, spine_times = spine.column(KEY).to_numpy(), spine.column(TIME).cast(pa.int64()).to_numpy()
    load = time.perf_counter() - began
    watch = Stopwatch()
    base = _base_us()
    fused = (keys << FUSED_SHIFT) + (times - base)
    order = np.argsort(fused, kind="stable")
    fused, amounts = fused[order], amounts[order]
    prefix = np.zeros(amounts.size + 1, dtype=np.longdouble)  # 64-bit mantissa: differences stay close
    np.cumsum(amounts, dtype=np.longdouble, out=prefix[1:])
    probe = (spine_keys << FUSED_SHIFT) + (spine_times - base)
    end = np.searchsorted(fused, probe, "left")  # events of the key with e < t
    begins = {w: np.searchsorted(fused, probe - size, "left") for w, size in WINDOWS.items()}  # e >= t - w
    longest = int(max((end - b).max(initial=0) for b in begins.values()))
    levels = [amounts]  # levels[j][i] = max(amounts[i : i + 2^j])
    while (1 << len(levels)) <= longest:
        half, previous = 1 << (len(levels) - 1), levels[-1]
        levels.append(np.maximum(previous[:-half], previous[half:]))
    out: dict[str, Any] = {KEY: spine.column(KEY), TIME: spine.column(TIME)}
    for window, begin in begins.items():
        count = end - begin
        some = count > 0
        total = np.where(some, (prefix[end] - prefix[begin]).astype("float64"), 0.0)
        maximum = np.full(count.size, np.nan)
        level = np.zeros(count.size, dtype=np.int64)
        level[some] = np.floor(np.log2(count[some])).astype(np.int64)
        for j in np.unique(level[some]):
            rows = np.flatnonzero(some & (level == j))
            maximum[rows] = np.maximum(levels[j][begin[rows]], levels[j][end[rows] - (1 << j)])
        out[f"count_{window}"] = count.astype("int64")
        out[f"amount_sum_{window}"] = total
        out[f"amount_mean_{window}"] = pa.array(np.where(some, total / np.maximum(count, 1), np.nan), from_pandas=True)
        out[f"amount_max_{window}"] = pa.array(maximum, from_pandas=True)
    table = pa.table({name: out[name] for name in [KEY, TIME, *FEATURES]})
    timing = watch.result()
    return {**timing, "load_seconds": load, "table": table}


def _duckdb_range_sql() -> str:
    frames = ", ".join(
        f"w{w} AS (PARTITION BY {KEY} ORDER BY t RANGE BETWEEN {size} PRECEDING AND CURRENT ROW EXCLUDE GROUP)"
        for w, size in WINDOWS.items()
    )
    values = []
    for w in WINDOWS:
        values += [
            f"count(ev) OVER w{w} AS count_{w}",
            f"coalesce(sum(amount) OVER w{w}, 0.0) AS amount_sum_{w}",
            f"avg(amount) OVER w{w} AS amount_mean_{w}",
            f"max(amount) OVER w{w} AS amount_max_{w}",
        ]
    return (
        f"WITH u AS (SELECT {KEY}, epoch_us({TIME}) AS t, amount, 1 AS ev, NULL::BIGINT AS rn FROM read_parquet(?) "
        f"UNION ALL SELECT {KEY}, epoch_us({TIME}) AS t, NULL::DOUBLE, NULL::INTEGER, file_row_number "
        "FROM read_parquet(?, file_row_number = true)), "
        f"r AS (SELECT rn, {', '.join(values)} FROM u WINDOW {frames} QUALIFY rn IS NOT NULL) "
        f"SELECT s.{KEY}, s.{TIME}, {', '.join(f'r.{f}' for f in FEATURES)} "
        "FROM read_parquet(?, file_row_number = true) s JOIN r ON r.rn = s.file_row_number ORDER BY s.file_row_number"
    )


def _duckdb_prefix_sql() -> str:
    """Prefix count/sum per (key, time), one ASOF JOIN of 4 probes per spine row, differences."""
    offsets = {"0": 0, **WINDOWS}
    probes = " UNION ALL ".join(f"SELECT rn, {KEY}, t - {size} AS at, '{w}' AS w FROM s" for w, size in offsets.items())
    picks = []
    for w in offsets:
        picks += [
            f"coalesce(max(q.pc) FILTER (WHERE q.w = '{w}'), 0) AS c{w}",
            f"coalesce(max(q.ps) FILTER (WHERE q.w = '{w}'), 0.0) AS s{w}",
        ]
    values = []
    for w in WINDOWS:
        values += [
            f"(p.c0 - p.c{w})::BIGINT AS count_{w}",
            f"p.s0 - p.s{w} AS amount_sum_{w}",
            f"CASE WHEN p.c0 > p.c{w} THEN (p.s0 - p.s{w}) / (p.c0 - p.c{w}) END AS amount_mean_{w}",
        ]
    return (
        f"WITH s AS (SELECT {KEY}, {TIME}, epoch_us({TIME}) AS t, file_row_number AS rn "
        "FROM read_parquet(?, file_row_number = true)), "
        f"g AS (SELECT {KEY}, epoch_us({TIME}) AS t, count(*) AS c, sum(amount) AS a "
        "FROM read_parquet(?) GROUP BY ALL), "
        f"pre AS (SELECT {KEY}, t, sum(c) OVER k AS pc, sum(a) OVER k AS ps FROM g "
        f"WINDOW k AS (PARTITION BY {KEY} ORDER BY t ROWS UNBOUNDED PRECEDING)), "
        f"probe AS ({probes}), "
        f"q AS (SELECT probe.rn, probe.w, pre.pc, pre.ps FROM probe ASOF LEFT JOIN pre "
        f"ON probe.{KEY} = pre.{KEY} AND probe.at > pre.t), "
        f"p AS (SELECT q.rn, {', '.join(picks)} FROM q GROUP BY q.rn) "
        f"SELECT s.{KEY}, s.{TIME}, {', '.join(values)} FROM s JOIN p ON p.rn = s.rn ORDER BY s.rn"
    )


def run_duckdb(folder: Path, variant: str) -> Result:
    import duckdb

    from benchmarks.timing import Stopwatch

    events, spine = str(folder / "events.parquet"), str(folder / "spine.parquet")
    watch = Stopwatch()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if variant == "duckdb_range":
        table = con.sql(_duckdb_range_sql(), params=[events, spine, spine]).to_arrow_table()
    elif variant == "duckdb_prefix":
        table = con.sql(_duckdb_prefix_sql(), params=[spine, events]).to_arrow_table()
    else:
        raise SystemExit(f"unknown DuckDB variant {variant}")
    timing = watch.result()
    return {**timing, "table": table}


def run_pandas(folder: Path) -> Result:
    import pandas as pd

    from benchmarks.timing import Stopwatch

    began = time.perf_counter()
    events = pd.read_parquet(folder / "events.parquet")
    spine = pd.read_parquet(folder / "spine.parquet")
    load = time.perf_counter() - began
    watch = Stopwatch()
    ev = pd.DataFrame({KEY: events[KEY], "t": events[TIME], "amount": events["amount"], "ev": 1.0, "rn": -1})
    sp = pd.DataFrame({KEY: spine[KEY], "t": spine[TIME], "amount": np.nan, "ev": np.nan, "rn": np.arange(len(spine))})
    rows = pd.concat([ev, sp], ignore_index=True).sort_values([KEY, "t"], kind="stable", ignore_index=True)
    grouped = rows.groupby(KEY, sort=True)
    out: dict[str, np.ndarray] = {}
    for window, size in WINDOWS.items():
        rolling = grouped.rolling(pd.Timedelta(microseconds=size), on="t", closed="left")
        count = np.nan_to_num(rolling["ev"].count().to_numpy(), nan=0.0)  # NaN: no rows at all
        total = rolling["amount"].sum().to_numpy()
        out[f"count_{window}"] = count
        out[f"amount_sum_{window}"] = np.where(count > 0, total, 0.0)
        out[f"amount_mean_{window}"] = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
        out[f"amount_max_{window}"] = rolling["amount"].max().to_numpy()
    is_spine = (rows["rn"] >= 0).to_numpy()
    order = np.argsort(rows["rn"].to_numpy()[is_spine], kind="stable")
    result = pd.DataFrame({KEY: spine[KEY], TIME: spine[TIME]})
    for name in FEATURES:
        values = out[name][is_spine][order]
        result[name] = values.astype("int64") if name.startswith("count") else values
    timing = watch.result()
    return {**timing, "load_seconds": load, "pandas": result}


# -- correctness --------------------------------------------------------------------------------


class Oracle:
    """The rule, brute force, over the events sorted by (key, time): exact sums (``math.fsum``)."""

    def __init__(self, folder: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        events = pq.read_table(folder / "events.parquet")
        keys = events.column(KEY).to_numpy()
        times = events.column(TIME).cast(pa.int64()).to_numpy()
        order = np.lexsort((times, keys))
        self.keys, self.times = keys[order], times[order]
        self.amounts = events.column("amount").to_numpy()[order]

    def values(self, keys: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """The 12 features at each (key, time in microseconds), as floats (null: NaN)."""
        found: dict[str, list[float]] = {f: [] for f in FEATURES}
        for key, t in zip(keys.tolist(), times.tolist(), strict=True):
            lo, hi = np.searchsorted(self.keys, key, "left"), np.searchsorted(self.keys, key, "right")
            own_times, own_amounts = self.times[lo:hi], self.amounts[lo:hi]
            end = np.searchsorted(own_times, t, "left")  # e < t
            for window, size in WINDOWS.items():
                begin = np.searchsorted(own_times, t - size, "left")  # e >= t - w
                values = own_amounts[begin:end]
                total = math.fsum(values.tolist())
                found[f"count_{window}"].append(float(values.size))
                found[f"amount_sum_{window}"].append(total)
                found[f"amount_mean_{window}"].append(total / values.size if values.size else math.nan)
                found[f"amount_max_{window}"].append(float(values.max()) if values.size else math.nan)
        return {name: np.array(v, dtype="float64") for name, v in found.items()}

    def spine_values(self, folder: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        spine = pq.read_table(folder / "spine.parquet")
        keys = spine.column(KEY).to_numpy()[rows]
        return self.values(keys, spine.column(TIME).cast(pa.int64()).to_numpy()[rows])


def _columns(path: Path) -> dict[str, np.ndarray]:
    """A contender's features as float arrays (null: NaN)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {
        name: table.column(name).to_numpy(zero_copy_only=False).astype("float64")
        for name in FEATURES
        if name in table.column_names
    }


def _compare(mine: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> tuple[list[str], float]:
    """Differences beyond the bound (exact for count and max, 1e-9 relative for sum and mean), max rel. error."""
    problems, worst = [], 0.0
    for name, theirs in reference.items():
        if name not in mine:
            continue
        ours = mine[name]
        if ours.shape != theirs.shape:
            return [f"{ours.size:,} rows, expected {theirs.size:,}"], math.inf
        null_ours, null_theirs = np.isnan(ours), np.isnan(theirs)
        if (null_ours != null_theirs).any():
            problems.append(f"{name}: {int((null_ours != null_theirs).sum()):,} rows null on one side only")
        both = ~(null_ours | null_theirs)
        a, b = ours[both], theirs[both]
        if name.startswith(("count", "amount_max")):
            bad = int((a != b).sum())
            if bad:
                problems.append(f"{name}: {bad:,} rows differ")
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
        rel = np.where(a == b, 0.0, rel)
        if rel.size:
            worst = max(worst, float(rel.max()))
            bad = int((rel > REL).sum())
            if bad:
                problems.append(f"{name}: {bad:,} rows beyond {REL:g} relative (max {rel.max():.2g})")
    return problems, worst


def check(folder: Path, outputs: dict[str, Path], sample: int) -> tuple[dict[str, Result], list[str]]:
    """Every contender against the oracle on ``sample`` spine rows and against ``duckdb_range`` on all rows."""
    import pyarrow.parquet as pq

    rows = np.random.default_rng(3).choice(pq.read_metadata(folder / "spine.parquet").num_rows, sample, replace=False)
    rows.sort()
    truth = Oracle(folder).spine_values(folder, rows)
    loaded = {name: _columns(path) for name, path in outputs.items()}
    reference = loaded.get("duckdb_range")
    report: dict[str, Result] = {}
    problems: list[str] = []
    for name, mine in loaded.items():
        sampled = {k: v[rows] for k, v in mine.items()}
        wrong, worst = _compare(sampled, truth)
        entry: Result = {"oracle_rows": sample, "oracle_max_rel": worst}
        problems += [f"{name} vs oracle: {p}" for p in wrong]
        if reference is not None and name != "duckdb_range":
            wrong, worst = _compare(mine, reference)
            entry["floor_max_rel"] = worst
            problems += [f"{name} vs duckdb_range: {p}" for p in wrong]
        report[name] = entry
    return report, problems


# -- featurekit ---------------------------------------------------------------------------------


def feature_refs() -> list[str]:
    return [f"{VIEW}:{f}" for f in FEATURES]


def build_repo(folder: Path, repo: Path) -> Path:
    """A fresh repo in ``repo``: the window view over a hard link of the scale's events, applied."""
    import featurekit as fk

    shutil.rmtree(repo, ignore_errors=True)
    (repo / "data").mkdir(parents=True)
    os.link(folder / "events.parquet", repo / "data" / "events.parquet")
    (repo / "features.py").write_text(FEATURES_PY)
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
    return repo


def run_materialize(folder: Path, repo: Path) -> Result:
    """Apply, then time ``materialize`` of the whole range (offline and online)."""
    import featurekit as fk
    from benchmarks.timing import Stopwatch

    build_repo(folder, repo)
    with fk.FeatureStore(repo, progress=False) as store:
        watch = Stopwatch()
        store.materialize(START, END)
        timing = watch.result()
    return timing


def run_featurekit(folder: Path, repo: Path) -> Result:
    import featurekit as fk
    from benchmarks.timing import Stopwatch

    with fk.FeatureStore(repo, progress=False) as store:
        watch = Stopwatch()
        table = store.training_set(folder / "spine.parquet", feature_refs()).to_arrow()
        timing = watch.result()
    return {**timing, "table": table}


def _hottest(folder: Path) -> tuple[int, int]:
    """The entity with the most events inside the 30-day window before END, and that count."""
    import polars as pl

    events = pl.scan_parquet(folder / "events.parquet")
    since = END - timedelta(days=30)
    top = events.filter(pl.col(TIME) >= since).group_by(KEY).len().sort("len", descending=True).head(1).collect()
    return int(top[KEY][0]), int(top["len"][0])


def _percentiles(samples: list[float]) -> Result:
    samples = sorted(samples)
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[max(0, math.ceil(len(samples) * 0.99) - 1)] * 1e3,
        "calls": len(samples),
    }


def build_tails_repo(folder: Path, repo: Path) -> Path:
    """A repo in the state of a store in production: materialized up to a day before END, then an
    incremental materialize of the last day, so entities with events that day have tails."""
    import featurekit as fk

    build_repo(folder, repo)
    with fk.FeatureStore(repo, progress=False) as store:
        store.materialize(START, END - timedelta(days=1))
        store.materialize_incremental(END)
    return repo


def run_lookups(folder: Path, repo: Path, scale: WindowScale, calls: int, seconds: float) -> Result:
    """p50/p99 of ``online_features`` (12 window features, at END): typical, hottest, 100 entities.

    Each kind runs ``calls`` timed calls (after 50 untimed) or ``seconds``, whichever ends first. The
    hottest entity's answer is also checked against the oracle (online must equal the rule).
    """
    import featurekit as fk

    refs = feature_refs()
    hot, hot_events = _hottest(folder)
    rng = np.random.default_rng(21)
    result: Result = {"hot_entity": hot, "hot_events_30d": hot_events}
    batches = {
        "typical": lambda: [int(rng.integers(0, scale.entities))],
        "hot": lambda: [hot],
        "batch_100": lambda: rng.integers(0, scale.entities, 100).tolist(),
    }
    with fk.FeatureStore(repo, progress=False) as store:
        for kind, keys in batches.items():
            for _ in range(50):
                store.online_features({KEY: keys()}, refs, at=END).to_dict()
            samples: list[float] = []
            deadline = time.monotonic() + seconds
            cpu = time.process_time()
            while len(samples) < calls and time.monotonic() < deadline:
                batch = keys()
                began = time.perf_counter()
                store.online_features({KEY: batch}, refs, at=END).to_dict()
                samples.append(time.perf_counter() - began)
            cpu = time.process_time() - cpu  # the loop's, key drawing included: what load disturbs least
            result[kind] = {**_percentiles(samples), "cpu_ms_per_call": cpu / max(1, len(samples)) * 1e3}
        probe = [hot, *rng.integers(0, scale.entities, 20).tolist()]
        online = store.online_features({KEY: probe}, refs, at=END).to_dict()
    end_us = int((END - START).total_seconds()) * US + _base_us()
    truth = Oracle(folder).values(np.array(probe), np.full(len(probe), end_us))
    mine = {f: np.array([math.nan if v is None else float(v) for v in online[f]]) for f in FEATURES}
    problems, worst = _compare(mine, truth)
    result["online_check"] = problems or [f"{len(probe)} entities equal the oracle at END (max rel. {worst:.1g})"]
    return result


# -- the runner ---------------------------------------------------------------------------------

CONTENDERS = (
    "featurekit",
    "numpy",
    "polars_fused_rolling",
    "polars_fused",
    "polars_rolling",
    "polars",
    "duckdb_range",
    "duckdb_prefix",
    "pandas",
)
FLOORS = CONTENDERS[1:]
PARTIAL = {"duckdb_prefix"}  # floors that compute fewer than the 12 features
NAMES = {
    "featurekit": "featurekit `training_set(...).to_arrow()`",
    "numpy": "numpy: searchsorted + prefix sums + sparse-table max",
    "polars_fused_rolling": "polars `rolling(key*2^44+t).agg()`",
    "polars_fused": "polars `rolling_*_by(key*2^44+t)`",
    "polars_rolling": "polars `rolling(t, group_by=key).agg()`",
    "polars": "polars `rolling_*_by(t).over(key)`",
    "duckdb_range": "DuckDB RANGE frames",
    "duckdb_prefix": "DuckDB prefix sums + ASOF (9 features, no max)",
    "pandas": "pandas `groupby().rolling(closed='left')`",
}


def child(argv: list[str]) -> None:
    """``python -m benchmarks child window CONTENDER SCALE REPO OUT [CALLS SECONDS]``: one measurement."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    contender, name, repo_text, out, *rest = argv
    scale = SCALES[name]
    folder, repo = scale.folder, Path(repo_text)
    output = Path(out).with_suffix(".parquet")
    if contender == "materialize":
        result = run_materialize(folder, repo)
    elif contender == "lookups":
        result = run_lookups(folder, repo, scale, int(rest[0]), float(rest[1]))
    elif contender == "lookups_tails":  # its own repo: the one of the other contenders has no tails
        tails_repo = build_tails_repo(folder, repo.with_name(repo.name + "-tails"))
        result = run_lookups(folder, tails_repo, scale, int(rest[0]), float(rest[1]))
    else:
        if contender == "featurekit":
            result = run_featurekit(folder, repo)
        elif contender == "numpy":
            result = run_numpy(folder)
        elif contender.startswith("polars"):
            result = run_polars(folder, contender)
        elif contender.startswith("duckdb"):
            result = run_duckdb(folder, contender)
        elif contender == "pandas":
            result = run_pandas(folder)
        else:
            raise SystemExit(f"unknown contender {contender}")
        if "frame" in result:
            table = result.pop("frame").to_arrow()
        elif "pandas" in result:
            table = pa.Table.from_pandas(result.pop("pandas"), preserve_index=False)
        else:
            table = result.pop("table")
        result["rows"] = table.num_rows
        pq.write_table(table, output)
        result["output"] = str(output)
    result["rss_mb"] = peak_rss_mb()
    Path(out).write_text(json.dumps(result))


def run_one(contender: str, scale: str, repo: Path, work: Path, timeout: float, *extra: str) -> Result:
    out = work / f"{contender}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks", "child", "window", contender, scale, str(repo), str(out), *extra]
    try:
        done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    if done.returncode != 0:
        return {"error": ((done.stderr or done.stdout).strip().splitlines() or ["failed"])[-1][:300]}
    result: Result = json.loads(out.read_text())
    return result


def summarize(samples: list[Result]) -> Result:
    ok = [s for s in samples if "seconds" in s]
    if not ok:
        return samples[0] if samples else {"error": "not run"}
    seconds = [s["seconds"] for s in ok]
    summary: Result = {
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "cpu_seconds": statistics.median(s["cpu_seconds"] for s in ok),
        "rss_mb": max(s["rss_mb"] for s in ok),
        "runs": len(ok),
    }
    if "load_seconds" in ok[0]:
        summary["load_seconds"] = statistics.median(s["load_seconds"] for s in ok)
    return summary


def _lookup_summary(samples: list[Result]) -> Result:
    ok = [s for s in samples if "typical" in s]
    if not ok:
        return samples[0] if samples else {"error": "not run"}
    summary: Result = {k: ok[0][k] for k in ("hot_entity", "hot_events_30d", "online_check")}
    summary["rss_mb"] = max(s["rss_mb"] for s in ok)
    for kind in ("typical", "hot", "batch_100"):
        p50s = [s[kind]["p50_ms"] for s in ok]
        summary[kind] = {
            "p50_ms": statistics.median(p50s),
            "p99_ms": statistics.median(s[kind]["p99_ms"] for s in ok),
            "p50_range_ms": [min(p50s), max(p50s)],
            "calls": sum(s[kind]["calls"] for s in ok),
            "runs": len(ok),
        }
        if all("cpu_ms_per_call" in s[kind] for s in ok):
            summary[kind]["cpu_ms_per_call"] = statistics.median(s[kind]["cpu_ms_per_call"] for s in ok)
    return summary


def _brief(result: Result) -> str:
    if "seconds" in result:
        return f"{result['seconds']:.3f} s (CPU {result['cpu_seconds']:.2f} s), {result['rss_mb']:.0f} MB"
    if "typical" in result:
        return ", ".join(
            f"{k} p50 {result[k]['p50_ms']:.3f} ms p99 {result[k]['p99_ms']:.3f} ms"
            f" CPU {result[k].get('cpu_ms_per_call', math.nan):.3f} ms/call"
            for k in ("typical", "hot", "batch_100")
        )
    return json.dumps(result)[:300]


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "featurekit"], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    return (done.stdout.strip() or "unknown") + (" + uncommitted featurekit changes" if dirty.stdout.strip() else "")


def run_windows(options: argparse.Namespace) -> int:
    """Measure one scale, merge it into ``results/windows.json``, rewrite RESULTS.md."""
    scale = SCALES[options.scale]
    contenders = [c for c in options.only.split(",") if c] or list(CONTENDERS)
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    from importlib.metadata import version

    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    began = datetime.now(UTC)
    commit = _commit()  # the code the children import when the run starts
    print(f"{scale.name}: preparing data", file=sys.stderr, flush=True)
    folder = ensure_windows(scale)
    load = os.getloadavg()[0]
    samples: dict[str, list[Result]] = {c: [] for c in ["materialize", *contenders, *LOOKUPS]}
    check_report: dict[str, Result] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fk-windows-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        for round_ in range(options.repeat):
            latest: dict[str, Result] = {}
            order = ["materialize", *contenders] + (list(LOOKUPS) if "featurekit" in contenders else [])
            for contender in order:
                if contender in ("featurekit", *LOOKUPS, "materialize") and "featurekit" not in contenders:
                    continue
                if contender in ("featurekit", *LOOKUPS) and "seconds" not in latest.get("materialize", {}):
                    latest[contender] = {"error": "skipped: materialize failed"}
                elif any("timeout" in s for s in samples[contender]):
                    continue  # a contender that timed out once is not run again
                else:
                    extra = (str(options.lookup_calls), "20") if contender in LOOKUPS else ()
                    timeout = options.pandas_timeout if contender == "pandas" else options.timeout
                    latest[contender] = run_one(contender, scale.name, repo, work, timeout, *extra)
                samples[contender].append(latest[contender])
                print(f"  round {round_ + 1} {contender}: {_brief(latest[contender])}", file=sys.stderr, flush=True)
            if round_ == 0:
                outputs = {c: Path(r["output"]) for c, r in latest.items() if r.get("output")}
                print("  checking against the oracle and duckdb_range", file=sys.stderr, flush=True)
                check_report, problems = check(folder, outputs, options.sample)
            for result in latest.values():
                if result.get("output"):
                    Path(result["output"]).unlink(missing_ok=True)
    measured = {c: summarize(s) for c, s in samples.items() if c not in LOOKUPS}
    for kind in LOOKUPS:
        if samples[kind]:
            measured[kind] = _lookup_summary(samples[kind])
    versions = {n: version(n) for n in ("featurekit", "duckdb", "polars", "pandas", "pyarrow", "numpy")}
    entry = {
        "scale": scale.__dict__,
        "command": command,
        "date": began.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "repeat": options.repeat,
        "timeout_s": options.timeout,
        "pandas_timeout_s": options.pandas_timeout,
        "load": [round(load, 1), round(os.getloadavg()[0], 1)],
        "versions": versions,
        "correctness": problems or ["every contender equals the oracle and duckdb_range (bounds below)"],
        "check": check_report,
        **measured,
    }
    options.output.mkdir(parents=True, exist_ok=True)
    path = options.output / RECORD
    record: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"scales": {}}
    record["scales"] = {**record["scales"], scale.name: entry}
    record["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    path.write_text(json.dumps(record, indent=2, default=str))
    _write_results(options.output)
    print(section(record), file=sys.stderr)
    for problem in problems:
        print(f"CORRECTNESS FAILURE: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _write_results(results: Path) -> None:
    """Regenerate RESULTS.md from the records without redrawing the charts next to it."""
    from benchmarks.report import write_report

    target = HERE / "RESULTS.md" if results == HERE / "results" else results / "RESULTS.md"
    with tempfile.TemporaryDirectory(prefix="fk-report-") as tmp:
        write_report(results, Path(tmp) / "RESULTS.md")
        shutil.copyfile(Path(tmp) / "RESULTS.md", target)


# -- the report section -------------------------------------------------------------------------


def fastest_floor(entry: Result) -> str | None:
    """The fastest floor that computes all 12 features (by median seconds)."""
    found = [f for f in FLOORS if f not in PARTIAL and "median" in entry.get(f, {})]
    return min(found, key=lambda f: entry[f]["median"]) if found else None


def _cell(result: Result | None) -> str:
    if not result:
        return "-"
    if "timeout" in result:
        return f"timeout (> {result['timeout']:.0f} s)"
    if "error" in result:
        return f"failed: {result['error']}"
    return f"{result['median']:.3f} s ({result['min']:.3f}-{result['max']:.3f})"


def _ratio(mine: Result, floor: Result | None, key: str = "median") -> str:
    if floor is None or key not in floor:
        return "-"
    if "timeout" in mine:
        return f"> {mine['timeout'] / floor['median']:.0f}x"
    if key not in mine:
        return "-"
    return f"{mine[key] / floor[key]:.2f}x"


def _check_cell(entry: Result, contender: str) -> str:
    found = entry.get("check", {}).get(contender)
    if not found:
        return "not checked"
    text = f"oracle: max rel. {found['oracle_max_rel']:.1g}"
    if "floor_max_rel" in found:
        text += f"; DuckDB RANGE: {found['floor_max_rel']:.1g}"
    return text


LOOKUPS = ("lookups", "lookups_tails")  # after one full materialize; after it up to a day before, then the last day
LOOKUP_ROWS = (
    ("typical", "1 typical entity (uniform key)", "0.2 ms"),
    ("hot", "the hot entity", "1 ms"),
    ("batch_100", "100 entities (uniform keys)", "5 ms"),
)


def _lookup_cell(result: Result) -> str:
    low, high = result["p50_range_ms"]
    spread = f" (p50 {low * 1e3:.0f}-{high * 1e3:.0f} us over {result['runs']} runs)" if result["runs"] > 1 else ""
    return f"{result['p50_ms'] * 1e3:.0f} / {result['p99_ms'] * 1e3:.0f} us{spread}"


def _cpu_cell(result: Result) -> str:
    found = result.get("cpu_ms_per_call")
    return "-" if found is None else f"{found * 1e3:.0f} us"


def section(record: dict[str, Any] | None) -> str:
    if not record or not record.get("scales"):
        return ""
    lines = [
        SECTION,
        "",
        "Training sets with 12 window features (`count()`, `sum`, `mean`, `max` of `amount` over 1h, 7d and",
        "30d, rule `t - w <= e < t`) against hand-written floors (`python -m benchmarks windows`, see",
        "`benchmarks/windows.py`). Events: Zipf-like activity plus one hot entity with 100k+ events in any",
        "30 days, microsecond times over 90 days, 1% exact (key, time) ties; the spine mixes busy and",
        "uniform entities at random times, 1% of its rows exactly at an event time and 1% exactly one hour",
        "after one. featurekit's time is `training_set(spine.parquet, [12 features]).to_arrow()` on a repo",
        "materialized beforehand (`materialize` of the 90 days, offline and online, is its own row).",
        "DuckDB reads the Parquet files inside its timer; numpy, polars and pandas get their inputs in memory",
        "first (read time in the last column; their peak RSS includes the inputs). Every contender returns",
        "the spine's rows in spine order. Correctness: a brute-force oracle (exact `math.fsum` sums) on a",
        "sample of spine rows checks every contender, and each is compared with DuckDB RANGE on every row:",
        "counts and maxima exactly, sums and means within 1e-9 relative (the largest relative difference is",
        "shown). Seconds are medians (min-max) of the repetitions, each in a fresh process, contenders",
        "alternating; the 2 cores are shared with other work, so CPU seconds (user + system, all threads)",
        'are the steadier comparison. "fastest floor" counts only floors that compute all 12 features.',
    ]
    for name, entry in record["scales"].items():
        s = entry["scale"]
        floor_name = fastest_floor(entry)
        floor = entry.get(floor_name) if floor_name else None
        lines += [
            "",
            f"### {name}: {s['events']:,} events, {s['entities']:,} entities, {s['spine']:,} spine rows",
            "",
            f"Run: {entry['date']}, commit {entry['commit']}, {entry['repeat']} rounds, timeout "
            f"{entry['timeout_s']:.0f} s (pandas {entry.get('pandas_timeout_s', entry['timeout_s']):.0f} s), "
            f"load average {entry['load'][0]} before and {entry['load'][1]} after "
            f"(2 cores): `{entry['command']}`  ",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in entry["versions"].items()) + "  ",
            "Correctness: " + "; ".join(entry["correctness"]),
            "",
            "| contender | seconds | CPU s | peak RSS MB | / fastest floor | CPU / fastest floor's | "
            "inputs read before the timer | check |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for contender in CONTENDERS:
            result = entry.get(contender)
            if result is None:
                continue
            label = NAMES[contender] + (" **(fastest floor)**" if contender == floor_name else "")
            cpu = f"{result['cpu_seconds']:.2f}" if "cpu_seconds" in result else "-"
            rss = f"{result['rss_mb']:.0f}" if "rss_mb" in result else "-"
            read = f"{result['load_seconds']:.3f} s" if "load_seconds" in result else "-"
            ratio = "-" if contender == floor_name else _ratio(result, floor)
            cpu_ratio = "-" if contender == floor_name else _ratio(result, floor, "cpu_seconds")
            lines.append(
                f"| {label} | {_cell(result)} | {cpu} | {rss} | {ratio} | {cpu_ratio} | {read} | "
                f"{_check_cell(entry, contender)} |"
            )
        mat = entry.get("materialize")
        if mat:
            cpu = f"{mat['cpu_seconds']:.2f}" if "cpu_seconds" in mat else "-"
            rss = f"{mat['rss_mb']:.0f}" if "rss_mb" in mat else "-"
            lines.append(
                f"| featurekit `materialize` (90 days, offline + online) | {_cell(mat)} | {cpu} | {rss} | "
                "- | - | - | - |"
            )
        lookups = entry.get("lookups")
        tails = entry.get("lookups_tails")
        tail_rows = []
        if tails and "typical" in tails:
            tail_rows = [
                f"| {label}, one-day tails | {_lookup_cell(tails[kind])} | {_cpu_cell(tails[kind])} | "
                f"{tails[kind]['calls']:,} | <= {target} |"
                for kind, label, target in LOOKUP_ROWS
            ]
            tail_rows.append("")
            tail_rows.append(
                "One-day tails: a repo materialized up to a day before the end, then `materialize_incremental` "
                "of the last day (the state a store in production is in). Online check: "
                + "; ".join(tails["online_check"])
            )
        elif tails:
            tail_rows = ["", f"Online lookups with one-day tails: {_cell(tails)}"]
        if lookups and "typical" in lookups:
            lines += [
                "",
                f"Online lookups after the materialize, 12 window features at the end of the data, p50 / p99 "
                f"(peak RSS {lookups['rss_mb']:.0f} MB); the hot entity ({lookups['hot_entity']}) has "
                f"{lookups['hot_events_30d']:,} events inside the 30-day window. Online check: "
                + "; ".join(lookups["online_check"]),
                "",
                "| request | p50 / p99 | CPU per call (median of runs) | timed calls | target (p99) |",
                "|---|---|---|---|---|",
                *(
                    f"| {label} | {_lookup_cell(lookups[kind])} | {_cpu_cell(lookups[kind])} | "
                    f"{lookups[kind]['calls']:,} | <= {target} |"
                    for kind, label, target in LOOKUP_ROWS
                ),
                *tail_rows,
            ]
        elif lookups:
            lines += ["", f"Online lookups: {_cell(lookups)}", *tail_rows]
    return "\n".join(lines)
