"""Window views by example: the rule's edges, names, decay, materialization paths, time travel, skew, bad input.

Each test writes a small repo (``features.py`` + a Parquet source) and checks values worked out
by hand (and, where there are many, by the brute-force oracle in tests/windows_oracle.py).
"""

from __future__ import annotations

import re
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from tests.conftest import ts
from tests.windows_oracle import Agg, Event, expected_row, features_of, mismatches, to_us

HEAD = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
transactions = fk.FileSource(
    "data/tx.parquet", timestamp_field="event_timestamp", created_timestamp_field="created"
)
"""

BODY = """
def customer_spend(tx: pl.DataFrame) -> pl.DataFrame:
    \"\"\"Per-transaction values; featurekit aggregates them.\"\"\"
    return tx.select("customer_id", "event_timestamp", "created", "amount", "qty", "merchant")
"""


def scaled(factor: int) -> str:
    """A function body that multiplies the amount by ``factor``."""
    return BODY.replace('"amount", "qty", "merchant")', f'"qty", "merchant", amount=pl.col("amount") * {factor})')


def view(windows: str, aggregations: str, extra: str = "", body: str = BODY) -> str:
    """A features.py with one window view ``customer_spend``."""
    return (
        HEAD
        + f"""
@fk.window_view(
    entity=customer,
    source=transactions,
    windows=[{windows}],
    aggregations=[{aggregations}],{extra}
)"""
        + body
    )


ALL_AGGS = (
    'agg.count(), agg.count("amount"), agg.sum("amount"), agg.mean("amount"), agg.min("amount"), '
    'agg.max("amount"), agg.std("amount"), agg.var("amount"), agg.count_distinct("merchant"), '
    'agg.first("merchant"), agg.last("merchant"), agg.last_n("amount", 3), agg.sum("qty"), agg.min("qty"), '
    'agg.max("qty"), agg.first("qty"), agg.last("qty"), agg.last_n("qty", 2), agg.count_distinct("qty")'
)
ORACLE_AGGS = [
    Agg("count"),
    Agg("count", "amount"),
    Agg("sum", "amount"),
    Agg("mean", "amount"),
    Agg("min", "amount"),
    Agg("max", "amount"),
    Agg("std", "amount"),
    Agg("var", "amount"),
    Agg("count_distinct", "merchant"),
    Agg("first", "merchant"),
    Agg("last", "merchant"),
    Agg("last_n", "amount", 3),
    Agg("sum", "qty"),
    Agg("min", "qty"),
    Agg("max", "qty"),
    Agg("first", "qty"),
    Agg("last", "qty"),
    Agg("last_n", "qty", 2),
    Agg("count_distinct", "qty"),
]
HOUR = "timedelta(hours=1)"

# (customer_id, event time, created time, amount, qty, merchant)
Row = tuple[int, datetime, datetime | None, float | None, int | None, str | None]


def tx_table(rows: list[Row]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return pa.table(
        {
            "customer_id": pa.array(cols[0], pa.int64()),
            "event_timestamp": pa.array(cols[1], pa.timestamp("us", tz="UTC")),
            "created": pa.array(cols[2], pa.timestamp("us", tz="UTC")),
            "amount": pa.array(cols[3], pa.float64()),
            "qty": pa.array(cols[4], pa.int64()),
            "merchant": pa.array(cols[5], pa.string()),
        }
    )


def spine(rows: list[tuple[int, datetime]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        }
    )


def write_source(root: Path, rows: list[Row]) -> None:
    pq.write_table(tx_table(rows), root / "data" / "tx.parquet")


def minutes(m: float, day: float = 0) -> datetime:
    return ts(day) + timedelta(minutes=m)


def oracle_events(rows: list[Row]) -> list[Event]:
    return [
        Event(c, to_us(e), None if cr is None else to_us(cr), {"amount": a, "qty": q, "merchant": m})
        for c, e, cr, a, q, m in rows
    ]


@pytest.fixture
def repo(make_repo, open_store):
    """``repo(features, rows)``: an applied store over those definitions and source rows."""

    def build(features: str, rows: list[Row], config: str | None = None) -> fk.FeatureStore:
        root = make_repo(features=features, data={"data/tx.parquet": tx_table(rows)}, config=config)
        store = open_store(root)
        store.apply()
        return store

    return build


def train(store: fk.FeatureStore, rows: list[tuple[int, datetime]], features: Any, **options: Any) -> dict[str, list]:
    table = store.training_set(spine(rows), features, **options).to_arrow()
    return {n: table.column(n).to_pylist() for n in table.column_names}


def serve(store: fk.FeatureStore, keys: list[int], features: Any, at: datetime, **options: Any) -> dict[str, list]:
    return store.online_features({"customer_id": keys}, features, at=at, **options).to_dict()


# -- the Feast regression -------------------------------------------------------------------

FEAST = [
    (1, minutes(10), minutes(10), 100.0, 100, "a"),
    (1, minutes(20), minutes(20), 5.0, 5, "b"),
    (1, minutes(30), minutes(30), 7.0, 7, "c"),
    (1, minutes(40), minutes(40), 3.0, 3, "d"),
]
FEAST_AGGS = 'agg.max("amount"), agg.min("amount"), agg.max("qty"), agg.min("qty"), agg.sum("qty"), agg.count()'


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_max_of_100_5_7_3_in_one_hour_is_100_and_min_is_3(repo, order):
    rows = FEAST if order == "sorted" else FEAST[::-1]
    store = repo(view(HOUR, FEAST_AGGS), rows)
    store.materialize(ts(0), minutes(50))
    at = minutes(50)
    trained = train(store, [(1, at)], ["customer_spend"])
    served = serve(store, [1], ["customer_spend"], at)
    for got in (trained, served):
        assert got["amount_max_1h"] == [100.0]
        assert got["amount_min_1h"] == [3.0]
        assert got["qty_max_1h"] == [100]
        assert got["qty_min_1h"] == [3]
        assert got["qty_sum_1h"] == [115]
        assert got["count_1h"] == [4]


def test_the_100_leaves_the_window_exactly_one_hour_after_it(repo):
    store = repo(view(HOUR, FEAST_AGGS), FEAST)
    store.materialize(ts(0), minutes(50))
    edge = minutes(70)  # window [00:10, 01:10): the 100 at 00:10 is its first event
    after = edge + timedelta(microseconds=1)
    trained = train(store, [(1, edge), (1, after), (1, minutes(10)), (1, minutes(41))], ["customer_spend"])
    assert trained["amount_max_1h"] == [100.0, 7.0, None, 100.0]  # at 00:10 the 100 is not yet in: end exclusive
    assert trained["amount_min_1h"] == [3.0, 3.0, None, 3.0]
    assert trained["count_1h"] == [4, 3, 0, 4]
    for at, expected_max in ((edge, 100.0), (after, 7.0), (minutes(100), 3.0), (minutes(101), None)):
        assert serve(store, [1], ["customer_spend:amount_max_1h"], at)["amount_max_1h"] == [expected_max]


# -- empty windows, nulls, types ----------------------------------------------------------------

EMPTY = {
    "count_1h": 0,
    "amount_count_1h": 0,
    "amount_sum_1h": 0.0,
    "amount_mean_1h": None,
    "amount_min_1h": None,
    "amount_max_1h": None,
    "amount_std_1h": None,
    "amount_var_1h": None,
    "merchant_count_distinct_1h": 0,
    "merchant_first_1h": None,
    "merchant_last_1h": None,
    "amount_last_n_1h": None,
    "qty_sum_1h": 0,
    "qty_min_1h": None,
    "qty_max_1h": None,
    "qty_first_1h": None,
    "qty_last_1h": None,
    "qty_last_n_1h": None,
    "qty_count_distinct_1h": 0,
}
TYPES = {
    "count_1h": pa.int64(),
    "amount_count_1h": pa.int64(),
    "amount_sum_1h": pa.float64(),
    "amount_mean_1h": pa.float64(),
    "amount_min_1h": pa.float64(),
    "amount_max_1h": pa.float64(),
    "amount_std_1h": pa.float64(),
    "amount_var_1h": pa.float64(),
    "merchant_count_distinct_1h": pa.int64(),
    "merchant_first_1h": pa.string(),
    "merchant_last_1h": pa.string(),
    "amount_last_n_1h": pa.list_(pa.float64()),
    "qty_sum_1h": pa.int64(),
    "qty_min_1h": pa.int64(),
    "qty_max_1h": pa.int64(),
    "qty_first_1h": pa.int64(),
    "qty_last_1h": pa.int64(),
    "qty_last_n_1h": pa.list_(pa.int64()),
    "qty_count_distinct_1h": pa.int64(),
}


def same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Equal types, whatever the string or list layout (string/large_string, list item names)."""
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_string_view(actual)
    if pa.types.is_list(expected):
        listy = pa.types.is_list(actual) or pa.types.is_large_list(actual)
        return listy and same_type(actual.value_type, expected.value_type)
    return actual == expected


def exactly(got: dict[str, list], expected: dict[str, Any], row: int = 0) -> list[str]:
    """Cells that differ in value or Python type (0 is not 0.0)."""
    bad = []
    for name, want in expected.items():
        value = got[name][row]
        if value != want or type(value) is not type(want):
            bad.append(f"{name}: got {value!r}, want {want!r}")
    return bad


def test_an_empty_window_gives_zero_counts_and_sums_and_nulls_with_the_spec_types(repo):
    rows = [(1, minutes(0), minutes(0), 2.5, 2, "a")]  # customer 1's only event is long gone at day 1
    store = repo(view(HOUR, ALL_AGGS), rows)
    store.materialize(ts(0), ts(1))
    spined = [(1, ts(1)), (2, ts(1)), (1, minutes(0))]  # out of range; no events at all; end exclusive
    table = store.training_set(spine(spined), ["customer_spend"]).to_arrow()
    for name, dtype in TYPES.items():
        assert same_type(table.schema.field(name).type, dtype), (name, table.schema.field(name).type)
    got = {n: table.column(n).to_pylist() for n in table.column_names}
    for row in range(3):
        assert exactly(got, EMPTY, row) == []
    response = store.online_features({"customer_id": [1, 2]}, ["customer_spend"], at=ts(1))
    for name, dtype in TYPES.items():
        assert same_type(response.to_arrow().schema.field(name).type, dtype), name
    served = response.to_dict()
    assert exactly(served, EMPTY, 0) == []
    assert exactly(served, EMPTY, 1) == []


def test_nulls_are_ignored_and_one_value_has_no_std(repo):
    rows = [
        (1, minutes(1), None, None, None, None),
        (1, minutes(2), None, 4.0, None, None),
        (1, minutes(3), None, None, 6, None),
        (2, minutes(1), None, None, None, None),
    ]
    store = repo(view(HOUR, ALL_AGGS), rows)
    store.materialize(ts(0), minutes(10))
    at = minutes(10)
    for got in (train(store, [(1, at), (2, at)], ["customer_spend"]), serve(store, [1, 2], ["customer_spend"], at)):
        assert (
            exactly(
                got,
                {
                    "count_1h": 3,
                    "amount_count_1h": 1,
                    "amount_sum_1h": 4.0,
                    "amount_mean_1h": 4.0,
                    "amount_min_1h": 4.0,
                    "amount_std_1h": None,
                    "amount_var_1h": None,
                    "amount_last_n_1h": [4.0],
                    "merchant_count_distinct_1h": 0,
                    "merchant_last_1h": None,
                    "qty_sum_1h": 6,
                    "qty_first_1h": 6,
                    "qty_last_n_1h": [6],
                },
            )
            == []
        )
        # customer 2: one event, every value null
        assert exactly(got, {**EMPTY, "count_1h": 1}, 1) == []


def test_duplicates_and_ties_each_count_and_ties_break_by_created_then_value(repo):
    e = minutes(5)
    rows = [
        (1, e, minutes(6), 1.0, 1, "m"),
        (1, e, minutes(6), 1.0, 1, "m"),  # an exact duplicate
        (1, e, None, 9.0, 9, "z"),  # null created sorts first
        (1, e, minutes(6), 3.0, 3, "b"),  # same created: the value orders
        (1, e, minutes(7), 2.0, 2, "a"),  # the latest created: last
    ]
    store = repo(view(HOUR, ALL_AGGS), rows)
    store.materialize(ts(0), minutes(10))
    at = minutes(10)
    for got in (train(store, [(1, at)], ["customer_spend"]), serve(store, [1], ["customer_spend"], at)):
        assert (
            exactly(
                got,
                {
                    "count_1h": 5,
                    "amount_sum_1h": 16.0,
                    "qty_sum_1h": 16,
                    "qty_count_distinct_1h": 4,
                    "merchant_count_distinct_1h": 4,
                    "qty_first_1h": 9,
                    "merchant_first_1h": "z",
                    "qty_last_1h": 2,
                    "merchant_last_1h": "a",
                    "amount_last_n_1h": [2.0, 3.0, 1.0],
                    "qty_last_n_1h": [2, 3],
                },
            )
            == []
        )


def test_many_values_agree_with_the_oracle_offline_and_online(repo):
    """A denser log (every minute for three hours, two customers) through both paths, against the oracle."""
    rows: list[Row] = []
    for m in range(180):
        for c in (1, 2):
            if (m + c) % 7 == 0:
                continue
            amount = None if m % 11 == c else ((m * 37 + c) % 41 - 20) * 0.25
            qty = None if m % 13 == 0 else (m * c) % 5
            rows.append((c, minutes(m, 0), minutes(m + c), amount, qty, "abc"[(m + c) % 3]))
    rows.append(rows[10])  # a duplicate
    windows = "timedelta(minutes=15), timedelta(hours=1), timedelta(days=7)"
    store = repo(view(windows, ALL_AGGS, "\n    delay=timedelta(minutes=5),"), rows)
    store.materialize(ts(0), minutes(180))
    features = features_of(ORACLE_AGGS, [timedelta(minutes=15), timedelta(hours=1), timedelta(days=7)])
    events = oracle_events(rows)
    delay = to_us(timedelta(minutes=5))
    times = [minutes(m) for m in (0, 5, 6, 20, 64.5, 65, 125, 179)] + [minutes(30) + timedelta(microseconds=1)]
    asked = [(c, t) for t in times for c in (1, 2, 3)]
    want = [expected_row(features, events, c, to_us(t), delay, {"qty"}) for c, t in asked]
    assert mismatches(want, train(store, asked, ["customer_spend"])) == []
    for t in (minutes(180), minutes(181), minutes(200), minutes(250), ts(3), ts(9)):
        want = [expected_row(features, events, c, to_us(t), delay, {"qty"}) for c in (1, 2, 3)]
        assert mismatches(want, serve(store, [1, 2, 3], ["customer_spend"], t)) == [], t


TYPED = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
events = fk.FileSource("data/events.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")
AGGS = [agg.sum("small"), agg.mean("small"), agg.var("small"), agg.sum("single"), agg.mean("single")]
for c in ["flag", "small", "single", "when", "day"]:
    AGGS += [agg.min(c), agg.max(c), agg.first(c), agg.last(c), agg.last_n(c, 2), agg.count_distinct(c)]

@fk.window_view(entity=customer, source=events, windows=[timedelta(hours=1)], aggregations=AGGS)
def typed(events: pl.DataFrame) -> pl.DataFrame:
    return events.select("customer_id", "event_timestamp", "created", "flag", "small", "single", "when", "day")
"""


def test_min_max_first_last_keep_the_columns_type_for_every_orderable_type(make_repo, open_store):
    import datetime as dt

    when = [ts(d) for d in (3, 1, 2, 0, 4)]
    days = [dt.date(2026, 1, d) for d in (5, 2, 9, 1, 3)]
    table = pa.table(
        {
            "customer_id": pa.array([1] * 5, pa.int64()),
            "event_timestamp": pa.array([minutes(m) for m in range(5)], pa.timestamp("us", tz="UTC")),
            "created": pa.array([minutes(0)] * 5, pa.timestamp("us", tz="UTC")),
            "flag": pa.array([True, False, None, True, False]),
            "small": pa.array([3, -1, None, 7, 2], pa.int32()),
            "single": pa.array([1.5, -2.25, None, 0.5, 8.0], pa.float32()),
            "when": pa.array(when, pa.timestamp("us", tz="UTC")),
            "day": pa.array(days, pa.date32()),
        }
    )
    store = open_store(make_repo(features=TYPED, data={"data/events.parquet": table}))
    store.apply()
    store.materialize(ts(0), minutes(10))
    at = minutes(10)
    trained = store.training_set(spine([(1, at), (2, at)]), ["typed"]).to_arrow()
    response = store.online_features({"customer_id": [1, 2]}, ["typed"], at=at)
    expected = {
        "small_sum_1h": (pa.int64(), 11),
        "small_mean_1h": (pa.float64(), 2.75),
        "small_var_1h": (pa.float64(), pytest.approx(131 / 12, rel=1e-9)),
        "single_sum_1h": (pa.float64(), 7.75),
        "single_mean_1h": (pa.float64(), 1.9375),
        "flag_min_1h": (pa.bool_(), False),
        "flag_max_1h": (pa.bool_(), True),
        "flag_first_1h": (pa.bool_(), True),
        "flag_last_1h": (pa.bool_(), False),
        "flag_last_n_1h": (pa.list_(pa.bool_()), [False, True]),
        "flag_count_distinct_1h": (pa.int64(), 2),
        "small_min_1h": (pa.int32(), -1),
        "small_last_n_1h": (pa.list_(pa.int32()), [2, 7]),
        "single_max_1h": (pa.float32(), 8.0),
        "single_first_1h": (pa.float32(), 1.5),
        "when_min_1h": (pa.timestamp("us", tz="UTC"), ts(0)),
        "when_first_1h": (pa.timestamp("us", tz="UTC"), ts(3)),
        "when_last_n_1h": (pa.list_(pa.timestamp("us", tz="UTC")), [ts(4), ts(0)]),
        "when_count_distinct_1h": (pa.int64(), 5),
        "day_max_1h": (pa.date32(), dt.date(2026, 1, 9)),
        "day_last_1h": (pa.date32(), dt.date(2026, 1, 3)),
    }
    served = response.to_dict()
    for name, (dtype, value) in expected.items():
        assert same_type(trained.schema.field(name).type, dtype), (name, trained.schema.field(name).type)
        assert same_type(response.to_arrow().schema.field(name).type, dtype), name
        assert trained.column(name).to_pylist()[0] == value, name
        assert served[name][0] == value, name
        empty = 0 if name.endswith(("count_distinct_1h", "small_sum_1h")) else 0.0 if name == "single_sum_1h" else None
        assert trained.column(name).to_pylist()[1] == empty, name
        assert served[name][1] == empty, name


ODD_NAMES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

thing = fk.Entity("thing", join_keys=["KEY"])
events = fk.FileSource("data/events.parquet", timestamp_field="event_timestamp")

@fk.window_view(
    entity=thing, source=events, windows=[timedelta(hours=1)],
    aggregations=[agg.count("COL"), agg.sum("COL"), agg.mean("COL"), agg.min("COL"), agg.max("COL"), agg.std("COL"),
                  agg.count_distinct("COL"), agg.first("COL"), agg.last("COL"), agg.last_n("COL", 2)],
)
def odd(events: pl.DataFrame) -> pl.DataFrame:
    return events.select("KEY", "event_timestamp", "COL")
"""


@pytest.mark.parametrize(
    ("key", "column"),
    [("k", "x"), ("k", "X"), ("x", "amount"), ("k", "v"), ("k", "o"), ("k", "c"), ("order", "select"), ("k", "lambda")],
)
def test_any_valid_key_or_column_name_works_offline_and_online(make_repo, open_store, key, column):
    """Names the engine's SQL uses for itself (a lambda's parameter, struct fields, keywords) are fine as columns."""
    table = pa.table(
        {
            key: pa.array([1, 1, 1], pa.int64()),
            "event_timestamp": pa.array([minutes(1), minutes(2), minutes(3)], pa.timestamp("us", tz="UTC")),
            column: pa.array([2.0, 1.0, 4.0]),
        }
    )
    features = ODD_NAMES.replace('"KEY"', repr(key).replace("'", '"')).replace('"COL"', repr(column).replace("'", '"'))
    store = open_store(make_repo(features=features, data={"data/events.parquet": table}))
    store.apply()
    store.materialize(ts(0), minutes(10))
    at = minutes(10)
    probe = pa.table({key: pa.array([1], pa.int64()), "event_timestamp": pa.array([at], pa.timestamp("us", tz="UTC"))})
    trained = store.training_set(probe, ["odd"]).to_arrow()
    served = store.online_features({key: [1]}, ["odd"], at=at).to_dict()
    expected = {"sum": 7.0, "min": 1.0, "max": 4.0, "first": 2.0, "last": 4.0, "last_n": [4.0, 1.0], "count": 3}
    for fn, value in expected.items():
        name = f"{column}_{fn}_1h"
        assert trained.column(name).to_pylist() == [value], name
        assert served[name] == [value], name


def exact_stats(values: list[float]) -> tuple[float, float, float, float]:
    """Sum, mean, sample variance and std of the stored doubles, computed exactly (Fractions)."""
    from fractions import Fraction

    exact = [Fraction(v) for v in values]
    total = sum(exact, Fraction(0))
    mean = total / len(exact)
    var = sum(((x - mean) ** 2 for x in exact), Fraction(0)) / (len(exact) - 1)
    return float(total), float(mean), float(var), float(var) ** 0.5


def test_float_aggregates_stay_within_1e_9_on_ill_conditioned_data(repo):
    """A large mean with a small spread (naive sums of squares lose 1e-6 here) and huge values just outside."""
    rows: list[Row] = [(1, minutes(0), None, 1e17, 0, "a"), (1, minutes(1), None, -3e16, 0, "a")]
    values = [1e5 + (i % 7) * 0.1 + i * 1e-3 for i in range(120)]
    rows += [(1, minutes(120) + timedelta(seconds=30 * i), None, v, 0, "a") for i, v in enumerate(values)]
    rows += [(2, minutes(120 + i), None, 1e-6 * (i + 1) if i % 2 else 1e6 / (i + 1), 0, "a") for i in range(50)]
    store = repo(view(HOUR, 'agg.sum("amount"), agg.mean("amount"), agg.var("amount"), agg.std("amount")'), rows)
    store.materialize(ts(0), minutes(180))
    # at 03:00 customer 1's window [02:00, 03:00) holds the 120 values; the +-1e17 are an hour older
    at = minutes(180)
    in_window = {1: values, 2: [r[3] for r in rows if r[0] == 2 and r[1] < at and r[1] >= at - timedelta(hours=1)]}
    trained = train(store, [(1, at), (2, at)], ["customer_spend"])
    served = serve(store, [1, 2], ["customer_spend"], at)
    for index, key in enumerate((1, 2)):
        for name, want in zip(
            ("amount_sum_1h", "amount_mean_1h", "amount_var_1h", "amount_std_1h"),
            exact_stats(in_window[key]),
            strict=True,
        ):
            for path, got in (("training", trained), ("online", served)):
                value = got[name][index]
                assert value == pytest.approx(want, rel=1e-9, abs=0), (path, key, name, value, want)
    edges = train(store, [(1, minutes(60)), (1, minutes(61)), (1, minutes(119))], ["customer_spend"])
    assert edges["amount_sum_1h"] == [7e16, -3e16, 0.0]  # both huge values; the second alone; neither
    assert edges["amount_var_1h"][0] == pytest.approx(exact_stats([1e17, -3e16])[2], rel=1e-9)


def test_negative_zero_counts_once_on_both_paths(repo):
    """-0.0 == 0.0 (as in Python and SQL): one distinct value, offline and online alike."""
    rows = [(1, minutes(1), None, -0.0, 0, "a"), (1, minutes(2), None, 0.0, 0, "a"), (1, minutes(3), None, 0.0, 0, "a")]
    store = repo(view(HOUR, 'agg.count_distinct("amount"), agg.min("amount"), agg.max("amount")'), rows)
    store.materialize(ts(0), minutes(10))
    at = minutes(10)
    trained = train(store, [(1, at)], ["customer_spend"])
    served = serve(store, [1], ["customer_spend"], at)
    assert trained["amount_count_distinct_1h"] == served["amount_count_distinct_1h"] == [1]
    assert trained["amount_min_1h"] == served["amount_min_1h"] == [0.0]


# -- names and references -------------------------------------------------------------------------


def test_feature_names_and_every_way_to_ask_for_them(repo):
    windows = (
        "timedelta(seconds=30), timedelta(minutes=15), timedelta(hours=1), timedelta(days=7), "
        "timedelta(minutes=90), timedelta(hours=36), timedelta(seconds=86401)"
    )
    aggregations = 'agg.count(), agg.sum("amount", name="spend"), agg.count_distinct("merchant")'
    rows = [(1, minutes(1), None, 2.0, 1, "a"), (1, minutes(2), None, 3.0, 1, "b")]
    store = repo(view(windows, aggregations), rows)
    store.materialize(ts(0), minutes(10))
    suffixes = ["30s", "15m", "1h", "7d", "90m", "36h", "86401s"]
    names = [f"{p}_{s}" for p in ("count", "spend", "merchant_count_distinct") for s in suffixes]
    assert sorted(store.show("customer_spend").version.features) == sorted(names)
    at = minutes(10)
    everything = train(store, [(1, at)], ["customer_spend"])
    assert sorted(everything) == sorted(["customer_id", "event_timestamp", *names])
    assert everything["count_15m"] == [2]
    assert everything["spend_7d"] == [5.0]
    assert everything["merchant_count_distinct_90m"] == [2]
    assert everything["count_30s"] == [0]
    loaded = store.definitions.views["customer_spend"]
    asked = ["customer_spend:spend_1h", loaded["count_1h"], "customer_spend@v1:merchant_count_distinct_7d"]
    picked = train(store, [(1, at)], asked)
    assert list(picked)[-3:] == ["spend_1h", "count_1h", "merchant_count_distinct_7d"]
    assert [picked[n] for n in list(picked)[-3:]] == [[5.0], [2], [2]]
    served = serve(store, [1], asked, at)
    assert [served[n] for n in ("spend_1h", "count_1h", "merchant_count_distinct_7d")] == [[5.0], [2], [2]]
    assert serve(store, [1], ["customer_spend@v1"], at)["spend_36h"] == [5.0]
    with pytest.raises(fk.UnknownNameError, match=r"count_2h.*did you mean 'count_1h'"):
        train(store, [(1, at)], ["customer_spend:count_2h"])
    with pytest.raises(fk.UnknownNameError):
        train(store, [(1, at)], ["customer_spend:amount_sum_1h"])  # name= replaced the prefix


def test_pins_read_each_version_side_by_side(repo, make_repo):
    rows = [(1, minutes(1), minutes(1), 2.0, 1, "a"), (1, minutes(50), minutes(50), 3.0, 1, "b")]
    store = repo(view(HOUR, 'agg.sum("amount")'), rows)
    store.materialize(ts(0), minutes(60))
    root = store.root
    store.close()
    doubled = scaled(2)
    (root / "features.py").write_text(
        textwrap.dedent(view("timedelta(minutes=30), timedelta(hours=1)", 'agg.sum("amount")', body=doubled))
    )
    store = fk.FeatureStore(root, progress=False)
    try:
        store.apply()
        store.materialize(ts(0), minutes(60))
        at = minutes(60)
        got = train(store, [(1, at)], ["customer_spend@v1:amount_sum_1h", "customer_spend"], full_names=True)
        assert got["customer_spend_v1__amount_sum_1h"] == [5.0]
        assert got["customer_spend__amount_sum_1h"] == [10.0]
        assert got["customer_spend__amount_sum_30m"] == [6.0]
        served = serve(store, [1], ["customer_spend@v1:amount_sum_1h", "customer_spend"], at, full_names=True)
        assert served["customer_spend_v1__amount_sum_1h"] == [5.0]
        assert served["customer_spend__amount_sum_30m"] == [6.0]
        with pytest.raises(fk.UnknownNameError):
            train(store, [(1, at)], ["customer_spend@v1:amount_sum_30m"])  # v1 had no 30m window
    finally:
        store.close()


# -- decay and the online paths ---------------------------------------------------------------------


def test_a_1h_count_falls_to_zero_an_hour_later_without_materialization(repo):
    store = repo(view(HOUR, 'agg.count(), agg.sum("amount"), agg.max("amount"), agg.last_n("qty", 2)'), [])
    write_source(store.root, [(1, minutes(0), minutes(0), 1.5, 4, "a")])
    store.materialize(ts(0), minutes(5))
    features = ["customer_spend"]
    cases = [
        (minutes(5), 1, 1.5, 1.5, [4]),
        (minutes(60), 1, 1.5, 1.5, [4]),  # t - 1h == e: the window's start is inclusive
        (minutes(60) + timedelta(microseconds=1), 0, 0.0, None, None),
        (minutes(61), 0, 0.0, None, None),
        (ts(30), 0, 0.0, None, None),
    ]
    for at, count, total, top, last in cases:
        served = serve(store, [1], features, at)
        assert exactly(served, {"count_1h": count, "amount_sum_1h": total, "amount_max_1h": top}) == [], at
        assert served["qty_last_n_1h"] == [last], at
        assert train(store, [(1, at)], features)["count_1h"] == [count]


def test_online_lookups_in_any_time_zone_and_before_the_materialized_end(repo):
    rows = [(1, minutes(10), None, 1.0, 1, "a"), (1, minutes(30), None, 2.0, 1, "a")]
    store = repo(view(HOUR, 'agg.count(), agg.sum("amount")'), rows)
    store.materialize(ts(0), minutes(40))
    at = minutes(75)  # window [00:15, 01:15): the 00:30 event only
    for zone in ("Asia/Kolkata", "America/New_York"):
        assert serve(store, [1], ["customer_spend"], at.astimezone(ZoneInfo(zone)))["count_1h"] == [1]
    assert serve(store, [1], ["customer_spend"], at.replace(tzinfo=None))["amount_sum_1h"] == [2.0]
    early = minutes(20)  # before the materialized end: exact, or a clear OnlineHistoryError
    try:
        served = serve(store, [1], ["customer_spend"], early)
    except fk.OnlineHistoryError as caught:
        refused: Exception | None = caught
    else:
        refused = None
    if refused is not None:
        assert "customer_spend" in str(refused)
    else:
        assert served == {k: v for k, v in train(store, [(1, early)], ["customer_spend"]).items() if k in served}


def test_incremental_materialize_then_online_equals_training(repo):
    day0 = [(c, minutes(60 * h + c), minutes(60 * h + c), float(h), h, "ab"[h % 2]) for h in range(20) for c in (1, 2)]
    day1 = [(1, minutes(30, 1), minutes(30, 1), 100.0, 100, "z"), (3, minutes(40, 1), None, 7.0, 7, "y")]
    windows = "timedelta(hours=1), timedelta(days=1), timedelta(days=7)"
    store = repo(view(windows, ALL_AGGS), day0)
    store.materialize_incremental(end=ts(1))
    write_source(store.root, day0 + day1)
    (result,) = store.materialize_incremental(end=ts(2))
    assert result.source_rows == len(day1)  # only the new day was read
    keys = [1, 2, 3, 4]
    features = features_of(ORACLE_AGGS, [timedelta(hours=1), timedelta(days=1), timedelta(days=7)])
    events = oracle_events(day0 + day1)
    for at in (ts(2), minutes(31, 1) + timedelta(days=1), ts(3), ts(8, 0.5), ts(9)):
        served = serve(store, keys, ["customer_spend"], at)
        trained = train(store, [(k, at) for k in keys], ["customer_spend"])
        want = [expected_row(features, events, k, to_us(at), 0, {"qty"}) for k in keys]
        assert mismatches(want, served) == [], at
        assert mismatches(want, trained) == [], at
    assert serve(store, [1], ["customer_spend:amount_max_7d"], ts(2))["amount_max_7d"] == [100.0]


def test_rematerializing_a_window_with_changed_source_data_corrects_online_values(repo):
    rows = [
        (1, minutes(10), None, 5.0, 5, "a"),
        (1, minutes(20), None, 6.0, 6, "b"),
        (2, minutes(30), None, 1.0, 1, "c"),
    ]
    store = repo(view("timedelta(days=1)", ALL_AGGS), rows)
    store.materialize(ts(0), ts(0, 12))
    at = ts(0, 13)
    assert serve(store, [1, 2], ["customer_spend:amount_sum_1d"], at)["amount_sum_1d"] == [11.0, 1.0]
    corrected = [(1, minutes(10), None, 50.0, 50, "a"), (1, minutes(25), None, 1.0, 1, "d")]  # 2's event is gone
    write_source(store.root, corrected)
    store.materialize(ts(0), ts(0, 12))
    served = serve(store, [1, 2], ["customer_spend"], at)
    trained = train(store, [(1, at), (2, at)], ["customer_spend"])
    features = features_of(ORACLE_AGGS, [timedelta(days=1)])
    want = [expected_row(features, oracle_events(corrected), k, to_us(at), 0, {"qty"}) for k in (1, 2)]
    assert mismatches(want, served) == []
    assert mismatches(want, trained) == []
    assert served["amount_sum_1d"] == [51.0, 0.0]
    assert served["merchant_last_1d"] == ["d", None]


def test_a_backfilled_window_reaches_the_online_values(repo):
    old = [(1, ts(0, 6), None, 2.0, 2, "a"), (2, ts(0, 7), None, 3.0, 3, "b")]
    new = [(1, ts(1, 6), None, 4.0, 4, "c")]
    store = repo(view("timedelta(days=7)", 'agg.count(), agg.sum("qty"), agg.first("merchant")'), old + new)
    store.materialize(ts(1), ts(2))  # the recent day first
    store.materialize(ts(0), ts(1))  # then the backfill
    at = ts(2)
    served = serve(store, [1, 2], ["customer_spend"], at)
    assert served["count_7d"] == [2, 1]
    assert served["qty_sum_7d"] == [6, 3]
    assert served["merchant_first_7d"] == ["a", "b"]
    assert served == {k: v for k, v in train(store, [(1, at), (2, at)], ["customer_spend"]).items() if k in served}


def test_push_updates_online_windows_through_the_view_function(repo):
    body = scaled(10)
    store = repo(view(HOUR, 'agg.count(), agg.sum("amount"), agg.last("merchant")', body=body), [])
    write_source(store.root, [(1, minutes(0), minutes(0), 1.0, 1, "a")])
    store.materialize(ts(0), minutes(10))
    store.push("customer_spend", tx_table([(1, minutes(20), minutes(20), 2.0, 1, "b")]), to="online")
    served = serve(store, [1], ["customer_spend"], minutes(30))
    assert exactly(served, {"count_1h": 2, "amount_sum_1h": 30.0, "merchant_last_1h": "b"}) == []
    served = serve(store, [1], ["customer_spend"], minutes(70))  # the 00:00 event left; the pushed one stays
    assert exactly(served, {"count_1h": 1, "amount_sum_1h": 20.0, "merchant_last_1h": "b"}) == []
    assert train(store, [(1, minutes(30))], ["customer_spend"])["count_1h"] == [1]  # online only


# -- known_at and time travel -------------------------------------------------------------------


def test_known_at_leaves_out_events_created_after_it(repo):
    rows = [
        (1, minutes(10), minutes(10), 1.0, 1, "a"),
        (1, minutes(10), ts(2), 10.0, 10, "late"),  # a correction written on day 2: another event
        (1, minutes(20), None, 100.0, 100, "unknown"),  # no created time: never known
    ]
    store = repo(view("timedelta(days=1)", 'agg.count(), agg.sum("qty"), agg.last("merchant")'), rows)
    store.materialize(ts(0), ts(1))
    probe = [(1, minutes(30))]
    assert train(store, probe, ["customer_spend"]) == {
        "customer_id": [1],
        "event_timestamp": [minutes(30)],
        "count_1d": [3],
        "qty_sum_1d": [111],
        "merchant_last_1d": ["unknown"],
    }
    known = train(store, probe, ["customer_spend"], known_at=ts(1))
    assert (known["count_1d"], known["qty_sum_1d"], known["merchant_last_1d"]) == ([1], [1], ["a"])
    later = train(store, probe, ["customer_spend"], known_at=ts(3).astimezone(ZoneInfo("Asia/Kolkata")))
    assert (later["count_1d"], later["qty_sum_1d"], later["merchant_last_1d"]) == ([2], [11], ["late"])
    assert train(store, probe, ["customer_spend"], known_at=minutes(10))["count_1d"] == [1]  # created == known_at


def test_as_of_and_manifests_rebuild_a_window_training_set_bit_for_bit(repo):
    rows = [(1, minutes(10), minutes(10), 1.0, 1, "a"), (2, minutes(20), minutes(20), 2.0, 2, "b")]
    store = repo(view(HOUR, 'agg.count(), agg.sum("amount"), agg.last_n("merchant", 2)'), rows)
    store.materialize(ts(0), ts(1))
    probe = spine([(1, minutes(30)), (2, minutes(30)), (1, ts(2)), (3, minutes(30))])
    first = store.training_set(probe, ["customer_spend"])
    t1, manifest = first.to_arrow(), first.manifest
    time.sleep(0.002)
    moment = datetime.now(UTC)
    time.sleep(0.002)
    root = store.root
    store.close()
    # v2: another function and another window, re-materialized over changed data
    doubled = scaled(2)
    (root / "features.py").write_text(
        textwrap.dedent(view("timedelta(hours=1), timedelta(days=1)", 'agg.count(), agg.sum("amount")', body=doubled))
    )
    write_source(root, [*rows, (1, minutes(15), minutes(40), 5.0, 5, "c")])
    store = fk.FeatureStore(root, progress=False)
    try:
        store.apply()
        store.materialize(ts(0), ts(1))
        now = store.training_set(probe, ["customer_spend:amount_sum_1h"]).to_arrow()
        assert now.column("amount_sum_1h").to_pylist() == [12.0, 4.0, 0.0, 0.0]
        assert store.training_set(probe, ["customer_spend"], as_of=moment).to_arrow().equals(t1)
        assert store.training_set(probe, manifest=manifest).to_arrow().equals(t1)
        assert t1.column("amount_sum_1h").to_pylist() == [1.0, 2.0, 0.0, 0.0]
        assert t1.column("merchant_last_n_1h").to_pylist() == [["a"], ["b"], None, None]
        pinned = store.training_set(probe, ["customer_spend@v1"]).to_arrow()
        assert pinned.column("amount_sum_1h").to_pylist() == [1.0, 2.0, 0.0, 0.0]  # v1 kept its own data
    finally:
        store.close()


def test_gc_and_integrity_keep_window_views_answering(repo):
    rows = [(1, minutes(10), minutes(10), 1.0, 1, "a"), (1, minutes(30), minutes(30), 2.0, 2, "b")]
    store = repo(view(HOUR, 'agg.count(), agg.sum("amount")'), rows)
    store.materialize(ts(0), minutes(20))
    old = store.training_set(spine([(1, minutes(40))]), ["customer_spend"])
    store.materialize(ts(0), minutes(40))  # replaces the first window: its files become old
    report = store.gc(keep_days=0, keep_versions=1)
    assert report.files >= 1
    assert store.check_integrity().ok
    assert train(store, [(1, minutes(40))], ["customer_spend"])["amount_sum_1h"] == [3.0]
    assert serve(store, [1], ["customer_spend"], minutes(45))["count_1h"] == [2]
    with pytest.raises(fk.RetentionError):  # the old data version is gone: said, not wrong rows
        store.training_set(spine([(1, minutes(40))]), manifest=old.manifest).to_arrow()


def test_show_describes_a_window_view(repo):
    store = repo(view(HOUR, 'agg.count(), agg.last_n("merchant", 2)', "\n    delay=timedelta(minutes=5),"), [])
    shown = str(store.show("customer_spend"))
    assert "count_1h" in shown
    assert "merchant_last_n_1h" in shown
    assert re.search(r"delay 300s|5m|0:05:00", shown), shown


COMPOUND = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

store_item = fk.Entity("store_item", join_keys=["shop", "item_id"])
sales = fk.FileSource("data/sales.parquet", timestamp_field="event_timestamp")

@fk.window_view(
    entity=store_item, source=sales, windows=[timedelta(hours=1)], aggregations=[agg.count(), agg.sum("units")]
)
def item_sales(sales: pl.DataFrame) -> pl.DataFrame:
    return sales.select("shop", "item_id", "event_timestamp", "units")
"""


def test_a_compound_key_and_no_created_timestamp(make_repo, open_store):
    table = pa.table(
        {
            "shop": ["x", "x", "y", "x"],
            "item_id": pa.array([1, 1, 1, 2], pa.int64()),
            "event_timestamp": pa.array([minutes(1), minutes(2), minutes(3), minutes(4)], pa.timestamp("us", tz="UTC")),
            "units": pa.array([5, 6, 7, 8], pa.int64()),
        }
    )
    store = open_store(make_repo(features=COMPOUND, data={"data/sales.parquet": table}))
    store.apply()
    store.materialize(ts(0), minutes(10))
    probe = pa.table(
        {
            "shop": ["x", "y", "x", "y"],
            "item_id": pa.array([1, 1, 2, 2], pa.int64()),
            "event_timestamp": pa.array([minutes(10)] * 4, pa.timestamp("us", tz="UTC")),
        }
    )
    trained = store.training_set(probe, ["item_sales"]).to_arrow()
    assert trained.column("count_1h").to_pylist() == [2, 1, 1, 0]
    assert trained.column("units_sum_1h").to_pylist() == [11, 7, 8, 0]
    served = store.online_features(
        {"shop": ["x", "y", "x", "y"], "item_id": [1, 1, 2, 2]}, ["item_sales"], at=minutes(10)
    )
    assert served.to_dict()["units_sum_1h"] == [11, 7, 8, 0]
    with pytest.raises(fk.SchemaError, match="known_at"):
        store.training_set(probe, ["item_sales"], known_at=minutes(10))


MIXED = """
@fk.feature_view(entity=customer, source=transactions, ttl=timedelta(days=1))
def last_purchase(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select("customer_id", "event_timestamp", "created", last_amount="amount")

@fk.on_demand(inputs=["customer_spend:amount_sum_1h", "customer_spend:count_1h"], request={"basket": pl.Float64})
def spend_ratio(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(ratio=(pl.col("amount_sum_1h") + pl.col("basket")) / (pl.col("count_1h") + 1))
"""


def test_window_features_with_row_features_and_on_demand_views(repo):
    rows = [(1, minutes(10), minutes(10), 4.0, 1, "a"), (1, minutes(20), minutes(20), 2.0, 1, "b")]
    store = repo(view(HOUR, 'agg.count(), agg.sum("amount")') + MIXED, rows)
    store.materialize(ts(0), minutes(30))
    asked = ["customer_spend", "last_purchase:last_amount", "spend_ratio"]
    probe = spine([(1, minutes(20)), (1, minutes(30)), (2, minutes(30))]).append_column(
        "basket", pa.array([3.0, 3.0, 1.0])
    )
    trained = store.training_set(probe, asked).to_arrow()
    # at 00:20 the 00:20 event is the row feature's newest row (e <= t) but not yet in the window (e < t)
    assert trained.column("last_amount").to_pylist() == [2.0, 2.0, None]
    assert trained.column("count_1h").to_pylist() == [1, 2, 0]
    assert trained.column("ratio").to_pylist() == [3.5, 3.0, 1.0]
    served = store.online_features({"customer_id": [1, 2]}, asked, request={"basket": [3.0, 1.0]}, at=minutes(30))
    assert served.to_dict()["ratio"] == [3.0, 1.0]
    assert served.to_dict()["last_amount"] == [2.0, None]


# -- the skew check -------------------------------------------------------------------------------


def test_the_skew_check_covers_window_features_and_finds_no_skew(repo):
    # 0.1 + 0.2 + 0.7 depends on the order of summation: the check allows 1e-9 relative for float sums.
    rows = [
        (c, minutes(m), minutes(m), v, m, "xyz"[m % 3])
        for c in (1, 2, 3)
        for m, v in ((1, 0.1), (2, 0.2), (3, 0.7), (4, 1e-3), (5, 1e5), (6, 0.3))
    ]
    windows = "timedelta(minutes=3), timedelta(hours=1)"
    aggregations = (
        'agg.count(), agg.sum("amount"), agg.mean("amount"), agg.std("amount"), agg.var("amount"), '
        'agg.max("qty"), agg.last_n("merchant", 2)'
    )
    store = repo(view(windows, aggregations), rows)
    store.materialize(ts(0), minutes(7))
    report = store.verify(["customer_spend"], entities={"customer_id": [1, 2, 3, 4]}, at=minutes(7))
    assert report.ok, str(report)
    assert report.compared >= 3 * 14
    assert "no skew" in str(report)
    sampled = store.verify(["customer_spend"], at=minutes(8))  # entities sampled from the window view
    assert sampled.ok, str(sampled)
    assert sampled.entities == 3
    store.push("customer_spend", tx_table([(1, minutes(8), minutes(8), 9.0, 9, "q")]), to="online")  # skew on purpose
    skewed = store.verify(
        ["customer_spend:count_1h", "customer_spend:qty_max_1h"], entities={"customer_id": [1]}, at=minutes(9)
    )
    assert not skewed.ok
    assert {m.feature for m in skewed.mismatches} == {"count_1h", "qty_max_1h"}
    assert ": 2 mismatches\n" in str(skewed)


def test_the_skew_check_allows_only_summation_order_differences_in_float_aggregates(repo):
    # With these values the training path and the online path add in different orders (their float
    # sums, means, std and var differed in the last bits when this was written): no skew within 1e-9.
    n = 200
    rows = [(1 + i % 2, minutes(i / 6), None, (i % 10) * 0.1 + 0.01 * (i % 3), i, "a") for i in range(n)]
    aggregations = 'agg.sum("amount"), agg.mean("amount"), agg.std("amount"), agg.var("amount"), agg.sum("qty")'
    store = repo(view(HOUR, aggregations), rows)
    end = minutes(n / 6)
    store.materialize(ts(0), end)
    report = store.verify(["customer_spend"], entities={"customer_id": [1, 2]}, at=end)
    assert report.ok, str(report)
    assert report.compared == 10
    # a real difference is still one: an event pushed online only moves every aggregate
    store.push("customer_spend", tx_table([(1, end, None, 0.5, 1, "a")]), to="online")
    skewed = store.verify(["customer_spend"], entities={"customer_id": [1, 2]}, at=end + timedelta(minutes=1))
    assert {m.feature for m in skewed.mismatches} == {
        "amount_sum_1h",
        "amount_mean_1h",
        "amount_std_1h",
        "amount_var_1h",
        "qty_sum_1h",
    }
    assert {m.entity["customer_id"] for m in skewed.mismatches} == {1}


# -- bad input ----------------------------------------------------------------------------------


def line_of(source: str, needle: str) -> int:
    """The 1-based line of ``needle`` in the dedented features.py."""
    lines = textwrap.dedent(source).splitlines()
    found = [i + 1 for i, line in enumerate(lines) if needle in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def aggregations_on_lines(*calls: str) -> str:
    """One aggregation per line, so each has a line of its own."""
    return "\n        " + ",\n        ".join(calls) + ",\n    "


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        ('agg.sum("amout")', r"amout"),  # unknown column
        ('agg.last("nope")', r"nope"),
        ('agg.count("event_timestamp")', r"event_timestamp"),  # the time is not a value column
        ('agg.sum("merchant")', r"sum.*merchant|merchant.*sum"),  # a string is not numeric
        ('agg.mean("merchant")', r"mean.*merchant|merchant.*mean"),
        ('agg.std("merchant")', r"std.*merchant|merchant.*std"),
        ('agg.var("merchant")', r"var.*merchant|merchant.*var"),
    ],
)
def test_a_bad_column_is_refused_at_apply_with_the_aggregations_file_and_line(make_repo, open_store, call, pattern):
    source = view(HOUR, aggregations_on_lines("agg.count()", call, 'agg.sum("amount")'))
    root = make_repo(features=source, data={"data/tx.parquet": tx_table([(1, minutes(1), None, 1.0, 1, "a")])})
    store = open_store(root)
    with pytest.raises(fk.FeaturekitError, match=pattern) as caught:
        store.apply()
    assert f"features.py:{line_of(source, call)}" in str(caught.value)
    assert store.list_views() == []  # nothing was applied


VIEW = "view"  # the error names the view's line (its decorator or its def)
STATIC_CASES = [
    ("timedelta(0)", ["agg.count()"], r"window", VIEW),
    ("timedelta(hours=-1)", ["agg.count()"], r"window", VIEW),
    ("timedelta(seconds=1.5)", ["agg.count()"], r"whole number of seconds", VIEW),
    ("timedelta(milliseconds=1)", ["agg.count()"], r"whole number of seconds", VIEW),
    (HOUR, ['agg.last_n("amount", 0)'], r"last_n.*n must be|n >= 1|at least 1", {0}),
    (HOUR, ['agg.last_n("amount", -2)'], r"last_n.*n must be|n >= 1|at least 1", {0}),
    (HOUR, ['agg.sum("amount")', 'agg.sum("amount", name=None)'], r"amount_sum_1h", {0, 1}),
    (HOUR, ["agg.count()", 'agg.sum("amount", name="count")'], r"count_1h", {0, 1}),
    ("timedelta(minutes=60), timedelta(hours=1)", ["agg.count()"], r"count_1h", {0}),
]


@pytest.mark.parametrize(("windows", "calls", "pattern", "where"), STATIC_CASES)
def test_a_bad_definition_is_a_definition_error_at_load_with_file_and_line(
    make_repo, open_store, windows, calls, pattern, where
):
    body = BODY.replace("return tx", 'raise AssertionError("the function must not run")\n    return tx')
    source = view(windows, aggregations_on_lines(*calls), body=body)
    root = make_repo(features=source, data={"data/tx.parquet": tx_table([(1, minutes(1), None, 1.0, 1, "a")])})
    store = open_store(root)
    with pytest.raises(fk.DefinitionError, match=pattern) as caught:
        store.definitions  # noqa: B018 -- loading alone finds it
    message = str(caught.value)
    if where == VIEW:
        lines = {line_of(source, "@fk.window_view("), line_of(source, "def customer_spend(")}
    else:
        lines = {line_of(source, calls[i]) for i in where}
    assert any(f"features.py:{n}" in message for n in lines), (lines, message)
    with pytest.raises(fk.DefinitionError):
        store.apply()
    assert store.list_views() == []


@pytest.mark.parametrize("days", [1_000_000, 999_999_999])
def test_a_window_longer_than_the_calendar_works_or_is_refused_at_load(make_repo, open_store, days):
    """A window reaching back before year 1 either counts every event or is a DefinitionError, never a crash."""
    rows = [(1, minutes(1), None, 1.0, 1, "a"), (1, minutes(2), None, 2.0, 1, "a")]
    root = make_repo(
        features=view(f"timedelta(days={days})", 'agg.count(), agg.sum("amount")'),
        data={"data/tx.parquet": tx_table(rows)},
    )
    store = open_store(root)
    try:
        store.apply()
    except fk.DefinitionError as caught:
        refused: fk.DefinitionError | None = caught
    else:
        refused = None
    if refused is not None:
        assert re.search(r"features\.py:\d+", str(refused))
        assert "window" in str(refused)
        return
    store.materialize(ts(0), minutes(10))
    assert train(store, [(1, minutes(10))], ["customer_spend"])["count_" + f"{days}d"] == [2]
    assert serve(store, [1], ["customer_spend"], minutes(10))[f"amount_sum_{days}d"] == [3.0]


def test_every_definition_problem_is_reported_at_once(make_repo, open_store):
    source = view("timedelta(0), timedelta(seconds=0.5)", aggregations_on_lines('agg.last_n("amount", 0)'))
    root = make_repo(features=source, data={"data/tx.parquet": tx_table([])})
    with pytest.raises(fk.DefinitionError) as caught:
        open_store(root).apply()
    assert len(caught.value.problems) == 3, caught.value.problems
    assert f"features.py:{line_of(source, 'agg.last_n')}" in str(caught.value)


def test_windows_and_delay_must_be_timedeltas(make_repo, open_store):
    for windows, extra in (("3600", ""), (HOUR, "\n    delay=timedelta(minutes=-5),")):
        source = view(windows, "agg.count()", extra)
        root = make_repo(features=source, data={"data/tx.parquet": tx_table([])})
        with pytest.raises(fk.DefinitionError, match=r"timedelta") as caught:
            open_store(root).apply()
        assert re.search(r"features\.py:\d+", str(caught.value))


def test_the_rule_is_stated_in_the_docstring_and_the_readme_next_to_the_row_rule():
    doc = " ".join((fk.window_view.__doc__ or "").split())
    assert "t - delay - w <= e < t - delay" in doc
    assert "t - ttl <= e <= t" in doc
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert re.search(r"t - d(elay)? - w <= e < t - d(elay)?", readme)
    assert "t - ttl <= e <= t" in readme
