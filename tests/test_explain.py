"""``TrainingSet.explain()``: every reported number against a brute-force pandas computation over the same data.

The data have rows created after the spine times that match them (leakage), null created times,
null feature values, spine rows before the first materialized event and after the watermark, a
spine in a non-UTC zone with sub-microsecond offsets (the join truncates toward the past), and
duplicate spine rows. Window views and on-demand views, the strategy reported, the CLI flag.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from featurekit.cli import cli
from featurekit.errors import DataError, StorageError
from featurekit.offline.engine import local_path
from featurekit.offline.explain import staleness_quantiles
from tests.conftest import T0, trips_table, ts
from tests.test_cli_commands import ON_DEMAND  # a batch view and an on-demand view reading it

US = 1_000_000
TTL_US = 7 * 86_400 * US


def us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def trips(seed: int) -> pa.Table:
    """Trips of drivers 0-5 over ten days at random microseconds; some created hours after the event."""
    rng = np.random.default_rng(seed)
    rows = []
    seen = set()
    for _ in range(120):
        driver = int(rng.integers(0, 6))
        event = T0 + timedelta(microseconds=int(rng.integers(0, 10 * 86_400 * US)))
        if (driver, event) in seen:  # no ties on (keys, event time): the oracle takes the newest row
            continue
        seen.add((driver, event))
        created = None if rng.random() < 0.1 else event + timedelta(microseconds=int(rng.integers(0, 30 * 3600 * US)))
        accepted = None if rng.random() < 0.15 else int(rng.integers(0, 5))
        distance = None if rng.random() < 0.1 else float(rng.random() * 20)
        rows.append((driver, event, created, accepted, int(rng.integers(1, 6)), distance))
    table = trips_table([(d, e, e, 1, 1, 0.0) for d, e, *_ in rows])
    return (
        table.set_column(2, "created", pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")))
        .set_column(3, "accepted", pa.array([r[3] for r in rows], pa.int64()))
        .set_column(4, "offered", pa.array([r[4] for r in rows], pa.int64()))
        .set_column(5, "distance_km", pa.array([r[5] for r in rows], pa.float64()))
    )


def spine(seed: int, rows: int = 90) -> pd.DataFrame:
    """Drivers 0-6 (6 has no data) from 2 days before the data to 2 days after it, in Kolkata time with
    nanoseconds (some 1-999 ns before a whole microsecond), plus duplicated rows."""
    rng = np.random.default_rng(seed + 1000)
    start_ns = (us(T0) - 2 * 86_400 * US) * 1000
    nanos = start_ns + rng.integers(0, 14 * 86_400 * US, rows) * 1000 - rng.integers(0, 999, rows)
    frame = pd.DataFrame(
        {
            "driver_id": rng.integers(0, 7, rows),
            "event_timestamp": pd.to_datetime(nanos, unit="ns", utc=True).tz_convert("Asia/Kolkata"),
            "label": rng.random(rows) < 0.5,
        }
    )
    return pd.concat([frame, frame.iloc[:5]], ignore_index=True)


def nearest_rank(values: list[int], p: int) -> timedelta:
    """The smallest value that at least p% of the values do not exceed (by definition, not by index)."""
    return timedelta(microseconds=min(v for v in values if 100 * sum(x <= v for x in values) >= p * len(values)))


def oracle(committed: pd.DataFrame, frame: pd.DataFrame, known_at: datetime | None, watermark: datetime) -> dict:
    """Every figure of the batch view's explanation, computed row by row from the committed data."""
    data = committed.copy()
    data["e"] = pd.Series([us(x) for x in data["event_timestamp"]], index=data.index, dtype=object)
    data["c"] = pd.Series([None if pd.isna(x) else us(x) for x in data["created"]], index=data.index, dtype=object)
    if known_at is not None:
        data = data[[c is not None and c <= us(known_at) for c in data["c"]]]
    spine_us = [int(x.value) // 1000 for x in frame["event_timestamp"]]  # ns -> us toward the past
    matched = []
    for driver, t in zip(frame["driver_id"], spine_us, strict=True):
        rows = data[(data["driver_id"] == driver) & (data["e"] <= t) & (data["e"] >= t - TTL_US)]
        matched.append(None if rows.empty else rows.sort_values("e").iloc[-1])
    conv = [m is not None and not pd.isna(m["accepted"]) for m in matched]
    km = [m is not None and not pd.isna(m["distance_km"]) for m in matched]
    stale = [t - m["e"] for t, m in zip(spine_us, matched, strict=True) if m is not None]
    late = [
        (i, int(frame["driver_id"][i]), t, m["e"], m["c"])
        for i, (t, m) in enumerate(zip(spine_us, matched, strict=True))
        if m is not None and m["c"] is not None and m["c"] > t
    ]
    first = min(us(x) for x in committed["event_timestamp"])
    before = [t for t in spine_us if t < first]
    after = [t for t in spine_us if t >= us(watermark)]
    return {
        "coverage": {"conv_rate": sum(conv), "avg_trip_km": sum(km)},
        "stale": stale,
        "late": late,
        "unknown": sum(1 for m in matched if m is not None and m["c"] is None),
        "first": first,
        "before": before,
        "after": after,
    }


def at(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


@pytest.mark.parametrize(("seed", "known_at"), [(1, None), (2, None), (3, ts(6))])
def test_every_number_equals_a_brute_force_computation(make_repo, open_store, seed, known_at):
    source = trips(seed)
    store = open_store(make_repo(data={"data/trips.parquet": source}))
    store.apply()
    store.materialize(ts(0), ts(4))
    store.materialize(ts(4), ts(8))  # events of days 8-9 stay in the source only
    frame = spine(seed)
    training = store.training_set(frame, ["driver_stats"], known_at=known_at)
    explained = training.explain().view("driver_stats")
    committed = source.to_pandas()
    committed = committed[committed["event_timestamp"] < ts(8)]
    expected = oracle(committed, frame, known_at, ts(8))

    result = training.to_pandas()  # the training set itself agrees with the coverage reported
    for feature, count in expected["coverage"].items():
        assert explained.feature(feature).rows_with_value == count == int(result[feature].notna().sum())
        assert explained.feature(feature).coverage == count / len(frame)
        assert explained.feature(feature).column == feature
    staleness = explained.staleness
    assert staleness is not None
    assert staleness.matched == len(expected["stale"])
    assert [staleness.p50, staleness.p90, staleness.p99] == [nearest_rank(expected["stale"], p) for p in (50, 90, 99)]
    assert staleness.max == timedelta(microseconds=max(expected["stale"]))
    if known_at is None:
        late = explained.created_after_spine
        assert late is not None
        assert late.count == len(expected["late"]) > 0
        assert late.unknown == expected["unknown"]
        assert [(x.row, x.keys["driver_id"], us(x.spine_time), us(x.event_time), us(x.created_time)) for x in
                late.examples] == expected["late"][:5]  # fmt: skip
    else:
        assert explained.created_after_spine is None
        assert any("known_at" in note for note in explained.notes)
    outside = explained.outside_range
    assert outside is not None
    assert (us(outside.first_event), outside.watermark) == (expected["first"], ts(8))
    assert outside.before == len(expected["before"]) > 0
    assert outside.before_range == (at(min(expected["before"])), at(max(expected["before"])))
    assert outside.after == len(expected["after"]) > 0
    assert outside.after_range == (at(min(expected["after"])), at(max(expected["after"])))
    materialized = store.registry.last_materialization(1)
    assert (explained.data_version, explained.materialized_at_registry_version) == (
        materialized.data_version,
        materialized.commit_id,
    )
    assert explained.files == store.tables.files("driver_stats", 1, materialized.data_version)
    assert explained.rows_scanned == len(committed)
    assert explained.strategy == training.description.splitlines()[0].split(": ")[-1]


def test_the_strategy_says_why(make_repo, open_store):
    rows = [(d, ts(0, h), ts(0, h), 1, 2, 1.0) for d in range(50) for h in range(3)]
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(rows)}, config="offline:\n  threads: 1\n"))
    store.apply()
    store.materialize(ts(0), ts(1))
    few = pd.DataFrame({"driver_id": range(50), "event_timestamp": [ts(0, 5)] * 50})
    many = pd.DataFrame({"driver_id": [1] * 400, "event_timestamp": [ts(0, 5)] * 400})
    ranged = store.training_set(few, ["driver_stats"]).explain().view("driver_stats")
    assert ranged.strategy == "range"
    assert "50 spine rows over at least 50 entities (1.00 per entity" in str(ranged.reason)
    asof = store.training_set(many, ["driver_stats"]).explain().view("driver_stats")
    assert asof.strategy == "asof_sorted"
    assert "8.00 per entity, over 3.0" in str(asof.reason)


WINDOW = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
transactions = fk.FileSource("data/tx.parquet", timestamp_field="event_timestamp")

@fk.window_view(entity=customer, source=transactions, windows=[timedelta(hours=1), timedelta(hours=6)],
                aggregations=[agg.count(), agg.sum("amount"), agg.last("merchant")], delay=timedelta(minutes=5))
def spend(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select("customer_id", "event_timestamp", "amount", "merchant")
"""


def test_window_views_report_coverage_events_and_the_rule(make_repo, open_store):
    rng = np.random.default_rng(7)
    n = 300
    events = [T0 + timedelta(microseconds=int(x)) for x in rng.integers(0, 2 * 86_400 * US, n)]
    tx = pa.table(
        {
            "customer_id": pa.array(rng.integers(0, 4, n), pa.int64()),
            "event_timestamp": pa.array(events, pa.timestamp("us", tz="UTC")),
            "amount": pa.array([None if rng.random() < 0.3 else float(rng.random()) for _ in range(n)]),
            "merchant": pa.array([None if rng.random() < 0.5 else f"m{rng.integers(0, 3)}" for _ in range(n)]),
        }
    )
    root = make_repo(textwrap.dedent(WINDOW), data={"data/tx.parquet": tx})
    store = open_store(root)
    store.apply()
    store.materialize(ts(0), ts(1, 12))
    times = [T0 + timedelta(microseconds=int(x)) for x in rng.integers(-86_400 * US, 3 * 86_400 * US, 120)]
    frame = pd.DataFrame({"customer_id": rng.integers(0, 5, 120), "event_timestamp": times})
    training = store.training_set(frame, ["spend"])
    explained = training.explain().view("spend")
    assert explained.kind == "window"
    assert training.description.splitlines()[0] == "-- plans: spend: window(blocks+frames)"
    assert explained.strategy == "window(blocks+frames)"  # the training set's own join, not explain's counts
    assert "merchant_last_1h" in str(explained.reason)
    assert explained.window_rule == "events with t - 0:05:00 - w <= e < t - 0:05:00, for w in 1h, 6h"
    data = tx.to_pandas()
    data = data[data["event_timestamp"] < ts(1, 12)]
    delay = 5 * 60 * US
    times_us = data["event_timestamp"].map(us)
    for feature, column, window in [
        ("count_1h", None, 1), ("count_6h", None, 6), ("amount_sum_1h", "amount", 1),
        ("amount_sum_6h", "amount", 6), ("merchant_last_1h", "merchant", 1), ("merchant_last_6h", "merchant", 6),
    ]:  # fmt: skip
        counts = []
        for customer, t in zip(frame["customer_id"], frame["event_timestamp"], strict=True):
            end = us(t) - delay
            rows = data[(data["customer_id"] == customer) & (times_us >= end - window * 3600 * US) & (times_us < end)]
            counts.append(len(rows) if column is None else int(rows[column].notna().sum()))
        got = explained.feature(feature)
        assert (got.rows_with_value, got.events) == (sum(c > 0 for c in counts), sum(counts)), feature
    outside = explained.outside_range
    assert outside is not None
    first = min(us(x) for x in data["event_timestamp"])
    assert outside.before == sum(us(t) - delay <= first for t in times) > 0
    assert outside.after == sum(us(t) - delay > us(ts(1, 12)) for t in times) > 0
    assert explained.staleness is None
    assert explained.created_after_spine is None


def test_on_demand_views_list_their_inputs(make_repo, open_store):
    rows = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0)]
    store = open_store(make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(rows)}))
    store.apply()
    store.materialize(ts(0), ts(2))
    frame = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [ts(1), ts(1)], "trip_km": [2.0, 3.0]})
    explanation = store.training_set(frame, ["trip_risk"]).explain()
    risk = explanation.view("trip_risk")
    assert (risk.kind, risk.inputs, risk.outputs) == ("on_demand", ["driver_stats:conv_rate", "request:trip_km"], {
        "risk": "risk"})  # fmt: skip
    stats = explanation.view("driver_stats")
    assert [(f.feature, f.column, f.rows_with_value) for f in stats.features] == [("conv_rate", None, 2)]
    table = explanation.to_pandas()
    assert table[table["view"] == "trip_risk"]["inputs"].tolist() == ["driver_stats:conv_rate, request:trip_km"]
    assert "inputs: driver_stats:conv_rate, request:trip_km" in str(explanation)


def test_explain_reads_a_spine_file_and_notices_it_change(make_repo, open_store, tmp_path: Path):
    rows = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0)]
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(rows)}))
    store.apply()
    store.materialize(ts(0), ts(2))
    path = tmp_path / "spine.parquet"
    pq.write_table(pa.table({"driver_id": [1, 2, 3], "event_timestamp": pa.array([ts(1)] * 3)}), path)
    explained = store.training_set(path, ["driver_stats"]).explain()
    assert explained.spine_rows == 3
    assert explained.view("driver_stats").feature("conv_rate").rows_with_value == 2
    changed = store.training_set(path, ["driver_stats"])
    pq.write_table(pa.table({"driver_id": [1], "event_timestamp": pa.array([ts(1)])}), path)
    with pytest.raises(DataError, match="was replaced or changed"):
        changed.explain()


def test_the_cli_prints_the_explanation_and_its_json(make_repo, tmp_path: Path):
    rows = [(1, ts(0), ts(2), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0)]
    root = make_repo(data={"data/trips.parquet": trips_table(rows)})
    runner = CliRunner()
    assert runner.invoke(cli, ["--repo", str(root), "apply"]).exit_code == 0
    materialize = ["--repo", str(root), "-q", "materialize", "--start", "2026-01-01", "--end", "2026-01-03"]
    assert runner.invoke(cli, materialize).exit_code == 0
    spine_path = tmp_path / "spine.parquet"
    pq.write_table(pa.table({"driver_id": [1, 2], "event_timestamp": pa.array([ts(1), ts(5)])}), spine_path)
    base = ["--repo", str(root), "training-set", str(spine_path), "-f", "driver_stats"]
    text = runner.invoke(cli, [*base, "--explain"])
    assert text.exit_code == 0, text.stderr
    assert "driver_stats v1 (batch)" in text.stdout
    assert "LEAKAGE: 1 matched row was created after the spine time" in text.stdout
    out = tmp_path / "out.parquet"
    as_json = runner.invoke(cli, [*base, "-o", str(out), "--explain", "--json"])
    assert as_json.exit_code == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert found["views"][0]["created_after_spine"]["count"] == 1
    assert found["views"][0]["outside_range"]["after"] == 1
    assert pq.read_metadata(out).num_rows == 2
    assert "wrote 2 rows" in as_json.stderr
    alone = runner.invoke(cli, [*base, "--json"])
    assert alone.exit_code == 2
    assert "--explain" in alone.stderr
    nothing = runner.invoke(cli, base)
    assert nothing.exit_code == 2
    assert "-o/--output" in nothing.stderr


def test_edges_are_exact_to_the_microsecond_in_any_zone(make_repo, open_store):
    """A spine row 1 ns before the first event is before it (truncated toward the past); one at the
    watermark is after it, 1 ns before it is not; staleness keeps sub-second differences."""
    first = ts(0, 1) + timedelta(microseconds=250)
    rows = [(1, first, first, 1, 2, 1.0), (1, ts(1), ts(1), 1, 4, 2.0)]
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(rows)}))
    store.apply()
    store.materialize(ts(0), ts(2))
    instants = [
        pd.Timestamp(first) - pd.Timedelta(1, "ns"),  # before the first event
        pd.Timestamp(first),  # matches it: staleness 0
        pd.Timestamp(first) + pd.Timedelta(500_001, "ns"),  # staleness 500 us (the 1 ns is truncated)
        pd.Timestamp(ts(2)) - pd.Timedelta(1, "ns"),  # just inside the watermark
        pd.Timestamp(ts(2)),  # at the watermark: after it
    ]
    times = pd.Series(instants).dt.tz_convert("America/Los_Angeles")
    frame = pd.DataFrame({"driver_id": [1] * 5, "event_timestamp": times})
    explained = store.training_set(frame, ["driver_stats"]).explain().view("driver_stats")
    outside = explained.outside_range
    assert outside is not None
    assert outside.first_event == first
    assert (outside.before, outside.before_range) == (1, (first - timedelta(microseconds=1),) * 2)
    assert (outside.after, outside.after_range) == (1, (ts(2), ts(2)))
    staleness = explained.staleness
    assert staleness is not None
    assert staleness.matched == 4
    assert staleness.p50 == timedelta(microseconds=500)  # stalenesses 0, 500 us, 1 d - 1 us, 1 d
    assert staleness.max == ts(2) - ts(1)


def test_a_damaged_data_file_is_a_storage_error_naming_it(make_repo, open_store):
    rows = [(1, ts(0), ts(0), 1, 2, 1.0)]
    store = open_store(make_repo(data={"data/trips.parquet": trips_table(rows)}))
    store.apply()
    store.materialize(ts(0), ts(2))
    training = store.training_set(pd.DataFrame({"driver_id": [1], "event_timestamp": [ts(1)]}), ["driver_stats"])
    (path,) = [Path(local_path(f)) for f in store.tables.files("driver_stats", 1, 0)]
    path.write_bytes(b"PAR1 nothing")
    with pytest.raises(StorageError, match="featurekit verify"):
        training.explain()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=60))
def test_staleness_quantiles_are_nearest_ranks(values):
    found = staleness_quantiles(np.array(values, dtype=np.int64))
    assert found.matched == len(values)
    assert [found.p50, found.p90, found.p99] == [nearest_rank(values, p) for p in (50, 90, 99)]
    assert found.max == timedelta(microseconds=max(values))
