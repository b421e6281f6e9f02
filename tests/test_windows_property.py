"""Window features against a brute-force oracle of the rule (tests/windows_oracle.py).

Random event logs on a 10-second grid with microsecond offsets (so events land exactly on
``t - delay - w`` and ``t - delay``, and 1 us either side), exact duplicates, ties in event and
created time, nulls in every value column; spines in several time zones (naive = UTC), some with
nanosecond offsets (truncated toward the past); every aggregation over float, integer and string
columns; several windows and delays; integer, string and two-part keys. The data spans the
America/New_York DST change of 2026-03-08. Spine rows and lookup instants are also drawn on
purpose so that an event sits exactly on a window edge.

The properties: the training set equals the oracle (with and without ``known_at``); online
lookups at random instants after materialize (no new events since: values decay) equal the
oracle and the training set, with both online stores; so do they after pushes of fresh events,
and after windows materialized out of order, twice, or in many small batches.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import featurekit as fk
from tests.engines import ENGINES, make_engine
from tests.redis_server import ONLINE_KINDS, online_yaml
from tests.windows_oracle import (
    Agg,
    Event,
    Expected,
    Feature,
    aggregate,
    expected_row,
    features_of,
    from_us,
    mismatches,
    suffix,
    to_us,
    window_events,
)

# 07:00 UTC on 2026-03-08 is the New York spring-forward (02:00 EST -> 03:00 EDT).
BASE = datetime(2026, 3, 8, 6, 58, tzinfo=UTC)
BASE_US = to_us(BASE)
SLOT_US = 10 * 1_000_000  # the grid
EVENT_SLOTS = 16  # events in slots 0..15 (a 2m window spans 12)
END = BASE + timedelta(microseconds=EVENT_SLOTS * SLOT_US)  # every materialized event is before it
END_US = to_us(END)
# Microseconds after a slot: on it, 1 us after, half a second after, 1 us before the next slot.
OFFSETS = [0, 0, 0, 1, 500_000, SLOT_US - 1]
CREATED_AFTER = [0, 1, SLOT_US, 35 * 1_000_000]  # created this long after the event (or null)
MERCHANTS = ["a", "b", "c", "d"]
ZONES: list[str | None] = ["UTC", "America/New_York", "Asia/Kolkata", None]
WINDOWS = [timedelta(seconds=10), timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=2), timedelta(hours=1)]
DELAYS: list[timedelta | None] = [None, timedelta(0), timedelta(seconds=10), timedelta(seconds=30)]
INTEGER_COLUMNS = {"qty"}

AGGREGATIONS = [
    Agg("count"),
    Agg("count", "amount"),
    Agg("sum", "amount"),
    Agg("mean", "amount"),
    Agg("min", "amount"),
    Agg("max", "amount"),
    Agg("std", "amount"),
    Agg("var", "amount"),
    Agg("first", "amount"),
    Agg("last", "amount"),
    Agg("last_n", "amount", 3),
    Agg("count_distinct", "amount"),
    Agg("count", "qty"),
    Agg("sum", "qty"),
    Agg("mean", "qty"),
    Agg("min", "qty"),
    Agg("max", "qty"),
    Agg("std", "qty"),
    Agg("var", "qty"),
    Agg("count_distinct", "qty"),
    Agg("first", "qty"),
    Agg("last", "qty"),
    Agg("last_n", "qty", 2),
    Agg("count", "merchant"),
    Agg("count_distinct", "merchant"),
    Agg("min", "merchant"),
    Agg("max", "merchant"),
    Agg("first", "merchant"),
    Agg("last", "merchant"),
    Agg("last_n", "merchant", 2),
    Agg("sum", "qty", name="units"),
]

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=[KEYS])
transactions = fk.FileSource(
    "data/tx.parquet", timestamp_field="event_timestamp", created_timestamp_field="created"
)

@fk.window_view(
    entity=customer,
    source=transactions,
    windows=[WINDOWS],
    aggregations=[AGGREGATIONS],DELAY
)
def customer_spend(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select(
        KEYS, "event_timestamp", "created", "qty", "merchant",
        amount=pl.col("amount_cents") / 4,
    )
"""

# How the oracle's customers 1, 2, 3 are keyed: one integer, one string, or two parts that overlap
# (1 -> (1, "x"), 2 -> (1, "y"), 3 -> (2, "x")).
KEY_KINDS = ["int", "str", "pair"]


def key_columns(kind: str, customers: list[int]) -> dict[str, pa.Array]:
    if kind == "int":
        return {"customer_id": pa.array(customers, pa.int64())}
    if kind == "str":
        return {"customer_id": pa.array([f"c{c}" for c in customers], pa.string())}
    assert kind == "pair"
    return {
        "customer_id": pa.array([1 if c < 3 else 2 for c in customers], pa.int64()),
        "region": pa.array(["y" if c == 2 else "x" for c in customers], pa.string()),
    }


SOURCE_SCHEMA = pa.schema(
    [
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("amount_cents", pa.int64()),  # amount = cents / 4: multiples of 0.25, so float sums are exact
        ("qty", pa.int64()),
        ("merchant", pa.string()),
    ]
)

# (customer, slot, offset index, created index or None, cents, qty, merchant)
RawEvent = tuple[int, int, int, int | None, int | None, int | None, str | None]


def event_rows(slots: tuple[int, int], keys: tuple[int, int] = (1, 2)) -> st.SearchStrategy[RawEvent]:
    return st.tuples(
        st.integers(*keys),
        st.integers(*slots),
        st.integers(0, len(OFFSETS) - 1),
        st.one_of(st.none(), st.integers(0, len(CREATED_AFTER) - 1)),
        st.one_of(st.none(), st.integers(-200, 200)),
        st.one_of(st.none(), st.integers(-4, 4)),
        st.one_of(st.none(), st.sampled_from(MERCHANTS)),
    )


@st.composite
def event_logs(
    draw: Any,
    slots: tuple[int, int] = (0, EVENT_SLOTS - 1),
    min_size: int = 0,
    max_size: int = 25,
    keys: tuple[int, int] = (1, 2),
):
    """Events, then exact copies of some of them (every copy is a separate event)."""
    rows = draw(st.lists(event_rows(slots, keys), min_size=min_size, max_size=max_size))
    if rows:
        rows += draw(st.lists(st.sampled_from(rows), max_size=4))
    return rows


# (customer, slot, offset index, nanoseconds added)
spine_row = st.tuples(
    st.integers(1, 3),  # customer 3 never has an event
    st.integers(0, EVENT_SLOTS + 14),
    st.integers(0, len(OFFSETS) - 1),
    st.sampled_from([0, 0, 0, 1, 999, -1]),
)
windows_strategy = st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=3, unique=True)


def event_us(slot: int, offset: int) -> int:
    return BASE_US + slot * SLOT_US + OFFSETS[offset]


def oracle_events(raw: list[RawEvent]) -> list[Event]:
    events = []
    for key, slot, offset, created, cents, qty, merchant in raw:
        at = event_us(slot, offset)
        events.append(
            Event(
                key,
                at,
                None if created is None else at + CREATED_AFTER[created],
                {"amount": None if cents is None else cents / 4, "qty": qty, "merchant": merchant},
            )
        )
    return events


def source_table(raw: list[RawEvent], kind: str = "int") -> pa.Table:
    events = oracle_events(raw)
    keys = pa.table(key_columns(kind, [r[0] for r in raw]))
    values = pa.table(
        {
            "event_timestamp": [from_us(e.time_us) for e in events],
            "created": [None if e.created_us is None else from_us(e.created_us) for e in events],
            "amount_cents": [r[4] for r in raw],
            "qty": [r[5] for r in raw],
            "merchant": [r[6] for r in raw],
        },
        schema=SOURCE_SCHEMA,
    )
    for name, column in zip(values.column_names, values.columns, strict=True):
        keys = keys.append_column(name, column)
    return keys


def features_source(
    windows: list[timedelta], delay: timedelta | None, aggs: list[Agg] = AGGREGATIONS, kind: str = "int"
) -> str:
    def literal(w: timedelta) -> str:
        return f"timedelta(seconds={int(w.total_seconds())})"

    text = FEATURES.replace("KEYS", ", ".join(f'"{k}"' for k in key_columns(kind, [])))
    text = text.replace("WINDOWS", ", ".join(literal(w) for w in windows))
    text = text.replace("AGGREGATIONS", ", ".join(a.code() for a in aggs))
    return text.replace("DELAY", "" if delay is None else f"\n    delay={literal(delay)},")


def make_store(
    base: Path,
    raw: list[RawEvent],
    windows: list[timedelta],
    delay: timedelta | None,
    config: str = "",
    kind: str = "int",
    engine_name: str = "duckdb",
):
    root = base / "repo"
    (root / "data").mkdir(parents=True)
    (root / "features.py").write_text(textwrap.dedent(features_source(windows, delay, kind=kind)))
    if config:
        (root / "featurekit.yaml").write_text(config)
    pq.write_table(source_table(raw, kind), root / "data" / "tx.parquet")
    engine = make_engine(engine_name, root) if engine_name != "duckdb" else None
    store = fk.FeatureStore(root, progress=False, engine=engine)
    store.apply()
    return store


NS = 1000
# Spine rows on an event's window edge: (event, window, start edge or end edge, -1/0/+1 us, nanoseconds added).
EDGE_ROWS = st.lists(
    st.tuples(
        st.integers(0, 10**6),
        st.integers(0, 2),
        st.booleans(),
        st.sampled_from([-1, 0, 1]),
        st.sampled_from([0, 1, -1]),
    ),
    max_size=8,
)


def grid_spine(spine: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """(customer, instant in nanoseconds) of grid spine rows."""
    return [(key, event_us(slot, offset) * NS + ns) for key, slot, offset, ns in spine]


def edge_spine(events: list[Event], windows: list[timedelta], delay: timedelta | None, picks: list) -> list:
    """(customer, nanoseconds) rows that put an event on ``t - delay - w`` or ``t - delay`` (or 1 us off)."""
    rows = []
    for event_index, window_index, start, jitter, ns in picks:
        if not events:
            break
        event = events[event_index % len(events)]
        t = event.time_us + delay_us(delay) + jitter
        if start:
            t += to_us(windows[window_index % len(windows)])
        rows.append((event.key, t * NS + ns))
    return rows


def spine_table(spine: list[tuple[int, int]], zone: str | None, kind: str = "int") -> pa.Table:
    nanos = [n for _, n in spine]
    unit = "ns" if any(n % 1000 for n in nanos) else "us"
    values = nanos if unit == "ns" else [n // 1000 for n in nanos]
    utc = pa.array(values, pa.timestamp(unit, tz="UTC"))
    times = utc.cast(pa.timestamp(unit)) if zone is None else utc.cast(pa.timestamp(unit, tz=zone))
    return pa.table(
        {**key_columns(kind, [r[0] for r in spine]), "event_timestamp": times, "row": pa.array(range(len(spine)))}
    )


def spine_us(row: tuple[int, int]) -> int:
    """The spine instant truncated toward the past to a whole microsecond."""
    return row[1] // NS


def instant(t_us: int, zone: str | None) -> datetime:
    """``t_us`` as a datetime in ``zone`` (None: naive UTC)."""
    moment = from_us(t_us)
    return moment.replace(tzinfo=None) if zone is None else moment.astimezone(ZoneInfo(zone))


def delay_us(delay: timedelta | None) -> int:
    return 0 if delay is None else to_us(delay)


def columns(table: pa.Table) -> dict[str, list[Any]]:
    return {name: table.column(name).to_pylist() for name in table.column_names}


def expected_type(feature: Feature) -> str:
    """The result type by the spec, given the function's output types (amount f64, qty i64, merchant str)."""
    fn, column = feature.agg.fn, feature.agg.column
    if fn in ("count", "count_distinct"):
        return "int64"
    if fn in ("mean", "std", "var"):
        return "double"
    kind = {"amount": "double", "qty": "int64", "merchant": "string"}[column or ""]
    if fn == "sum":
        return "int64" if kind == "int64" else "double"
    return f"list<{kind}>" if fn == "last_n" else kind


def check_types(schema: pa.Schema, features: list[Feature]) -> None:
    for feature in features:
        dtype = schema.field(feature.name).type
        assert type_name(dtype) == expected_type(feature), (
            f"{feature.name} is {dtype}, spec says {expected_type(feature)}"
        )


def type_name(dtype: pa.DataType) -> str:
    """``int64``, ``double``, ``string`` (any string layout), ``list<...>`` (any list layout, any item name)."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_list_view(dtype):
        return f"list<{type_name(dtype.value_type)}>"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    return str(dtype)


def expected_rows(
    features: list[Feature],
    events: list[Event],
    rows: list[tuple[int, int]],
    delay: timedelta | None,
    known_at_us: int | None = None,
) -> list[dict[str, Expected]]:
    return [expected_row(features, events, k, t, delay_us(delay), INTEGER_COLUMNS, known_at_us) for k, t in rows]


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- the oracle itself, by hand ---------------------------------------------------------------


def test_the_oracle_by_hand():
    def ev(t, value, created=None, key=1):
        return Event(key, t, created, {"x": value, "s": None if value is None else str(value)})

    # window [t - delay - w, t - delay) = [10, 20) for t=25, delay=5, w=10
    events = [
        ev(9, 1.0),
        ev(10, 2.0),
        ev(15, None),
        ev(15, 4.0),
        ev(15, 4.0),
        ev(19, 8.0),
        ev(20, 16.0),
        ev(12, 0.5, 0, 2),
    ]
    chosen = window_events(events, 1, 25, 10, 5)
    assert [e.time_us for e in chosen] == [10, 15, 15, 15, 19]
    assert aggregate(Agg("count"), chosen, False).value == 5
    assert aggregate(Agg("count", "x"), chosen, False).value == 4
    assert aggregate(Agg("sum", "x"), chosen, False).value == 18.0
    assert aggregate(Agg("mean", "x"), chosen, False).value == 4.5
    # sample variance of 2, 4, 4, 8: mean 4.5, squares 6.25 + 0.25 + 0.25 + 12.25 = 19, / 3
    assert aggregate(Agg("var", "x"), chosen, False).matches(19 / 3)
    assert aggregate(Agg("std", "x"), chosen, False).matches((19 / 3) ** 0.5)
    assert aggregate(Agg("min", "x"), chosen, False).value == 2.0
    assert aggregate(Agg("max", "x"), chosen, False).value == 8.0
    assert aggregate(Agg("count_distinct", "x"), chosen, False).value == 3
    assert aggregate(Agg("first", "x"), chosen, False).value == 2.0
    assert aggregate(Agg("last", "x"), chosen, False).value == 8.0
    assert aggregate(Agg("last_n", "x", 3), chosen, False).value == [8.0, 4.0, 4.0]
    assert aggregate(Agg("last_n", "s", 9), chosen, False).value == ["8.0", "4.0", "4.0", "2.0"]
    # empty: zeros for counts and sums (int for integer columns), null otherwise
    nothing = window_events(events, 3, 25, 10, 5)
    assert nothing == []
    assert aggregate(Agg("sum", "x"), nothing, True).matches(0)
    assert not aggregate(Agg("sum", "x"), nothing, True).matches(0.0)
    assert aggregate(Agg("sum", "x"), nothing, False).matches(0.0)
    assert not aggregate(Agg("sum", "x"), nothing, False).matches(0)
    for fn in ("mean", "min", "max", "std", "var", "first", "last", "last_n"):
        assert aggregate(Agg(fn, "x", 2), nothing, False).value is None
    assert aggregate(Agg("std", "x"), [ev(1, 3.0)], False).value is None  # one value
    assert aggregate(Agg("var", "x"), [ev(1, 3.0), ev(1, None)], False).value is None
    assert aggregate(Agg("var", "x"), [ev(1, 3.0), ev(2, 3.0)], False).value == 0.0
    # ties: created (null first), then the value
    tied = [ev(5, 7.0, 3), ev(5, 9.0, None), ev(5, 1.0, 3), ev(5, 4.0, 2)]
    assert aggregate(Agg("first", "x"), tied, False).value == 9.0
    assert aggregate(Agg("last", "x"), tied, False).value == 7.0
    assert aggregate(Agg("last_n", "x", 3), tied, False).value == [7.0, 1.0, 4.0]
    # known_at: created after it, or null, is not known
    assert [e.time_us for e in window_events(tied, 1, 6, 10, 0, known_at_us=2)] == [5]
    # names
    assert [suffix(s * 1_000_000) for s in (30, 90, 900, 3600, 5400, 86_400, 604_800, 86_401)] == [
        "30s", "90s", "15m", "1h", "90m", "1d", "7d", "86401s",
    ]  # fmt: skip
    names = [f.name for f in features_of([Agg("count"), Agg("sum", "x", name="spend")], [timedelta(hours=1)])]
    assert names == ["count_1h", "spend_1h"]
    # tolerance: float results within 1e-9 relative, exact types otherwise
    assert Expected(1.0, 1e-9).matches(1.0 + 1e-12)
    assert not Expected(1.0, 1e-9).matches(1.0 + 1e-6)
    assert not Expected(3).matches(3.0)
    assert not Expected([1, 2]).matches([1.0, 2.0])


# -- training sets ---------------------------------------------------------------------------


# The training-set property's inputs, shared by the DuckDB test and the other engines' variant.
TRAINING_CASES: dict[str, st.SearchStrategy[Any]] = {
    "raw": event_logs(),
    "spine": st.lists(spine_row, min_size=1, max_size=12),
    "edges": EDGE_ROWS,
    "windows": windows_strategy,
    "delay": st.sampled_from(DELAYS),
    "zone_index": st.integers(0, len(ZONES) - 1),
    "split": st.integers(1, EVENT_SLOTS - 1),
    "known_at": st.one_of(st.none(), st.tuples(st.integers(0, EVENT_SLOTS + 4), st.integers(0, len(OFFSETS) - 1))),
    "kind": st.sampled_from(KEY_KINDS),
}


@SETTINGS
@example(  # events exactly at t - delay - w (in) and at t - delay (out), 1 us either side
    raw=[
        (1, 3, 0, None, 4, 1, "a"),
        (1, 3, 5, None, 8, 2, "b"),
        (1, 6, 0, 0, 12, 3, "c"),
        (1, 5, 5, 0, 16, 4, "d"),
        (1, 6, 3, 0, 20, 5, "a"),
    ],
    spine=[(1, 7, 0, 0), (1, 7, 0, 1), (1, 7, 0, -1), (1, 7, 3, 0)],
    windows=[timedelta(seconds=30)],
    delay=timedelta(seconds=10),
    zone_index=1,
    split=4,
    known_at=None,
    edges=[],
    kind="int",
)
@example(  # exact duplicates and ties in event and created time
    raw=[(2, 1, 0, 1, 4, 1, "a")] * 3 + [(2, 1, 0, 1, -4, 1, "b"), (2, 1, 0, None, 0, None, None)],
    spine=[(2, 2, 0, 0), (2, 1, 0, 0), (2, 1, 3, 0)],
    windows=[timedelta(seconds=10), timedelta(hours=1)],
    delay=None,
    zone_index=2,
    split=EVENT_SLOTS - 1,
    known_at=None,
    edges=[],
    kind="int",
)
@given(**TRAINING_CASES)
def test_training_set_matches_the_oracle(
    tmp_path_factory, raw, spine, edges, windows, delay, zone_index, split, known_at, kind
):
    check_training(tmp_path_factory, "duckdb", raw, spine, edges, windows, delay, zone_index, split, known_at, kind)


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", [e for e in ENGINES if e != "duckdb"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**TRAINING_CASES)
def test_training_set_matches_the_oracle_on_other_engines(
    tmp_path_factory, engine_started, engine_name, raw, spine, edges, windows, delay, zone_index, split, known_at, kind
):
    """The same oracle on engines whose every query is a job (Spark): fewer examples."""
    check_training(tmp_path_factory, engine_name, raw, spine, edges, windows, delay, zone_index, split, known_at, kind)


@pytest.fixture
def engine_started(engine_name: str, tmp_path: Path) -> None:
    """Start the engine before hypothesis runs (pyspark changes the recursion limit when it starts)."""
    make_engine(engine_name, tmp_path).close()


def check_training(
    tmp_path_factory, engine_name, raw, spine, edges, windows, delay, zone_index, split, known_at, kind
) -> None:
    features = features_of(AGGREGATIONS, windows)
    events = oracle_events(raw)
    spine = grid_spine(spine) + edge_spine(events, windows, delay, edges)
    known_at_us = None if known_at is None else event_us(*known_at)
    with make_store(tmp_path_factory.mktemp("train"), raw, windows, delay, kind=kind, engine_name=engine_name) as store:
        split_at = BASE + timedelta(microseconds=split * SLOT_US)
        store.materialize(BASE, split_at)  # two committed windows
        store.materialize(split_at, END)
        asked = {} if known_at_us is None else {"known_at": instant(known_at_us, ZONES[zone_index])}
        table = spine_table(spine, ZONES[zone_index], kind)
        result = store.training_set(table, ["customer_spend"], **asked).to_arrow()
    assert result.column("row").to_pylist() == list(range(len(spine)))  # whole, in order
    check_types(result.schema, features)
    want = expected_rows(features, events, [(r[0], spine_us(r)) for r in spine], delay, known_at_us)
    assert mismatches(want, columns(result)) == []


# -- online lookups ----------------------------------------------------------------------------

# How long after the materialized end a lookup happens: at it, just after, across every window edge.
LOOKUP_AFTER = st.one_of(
    st.sampled_from([0, 1, SLOT_US - 1, SLOT_US, 3 * SLOT_US + 1, 7 * SLOT_US, 3_600_000_000, 7_200_000_000]),
    st.integers(0, 16 * SLOT_US),
)
ONLINE_KEYS = [1, 2, 3, 1]  # 3: no materialized event; 1 twice in one lookup
# Lookups on a window's edge: (event, window, start edge or end edge, -1/0/+1 us).
EDGE_PICKS = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 2), st.booleans(), st.sampled_from([-1, 0, 1])), max_size=4
)


def edge_instants(
    events: list[Event], windows: list[timedelta], delay: timedelta | None, picks: list, floor_us: int
) -> list[int]:
    """Instants t at or after ``floor_us`` with an event on ``t - delay - w`` or ``t - delay`` (or 1 us off)."""
    found = []
    for event_index, window_index, start, jitter in picks:
        if not events:
            break
        event = events[event_index % len(events)]
        t = event.time_us + delay_us(delay) + jitter
        if start:
            t += to_us(windows[window_index % len(windows)])
        if t >= floor_us:
            found.append(t)
    return found


def check_online(
    store, features, events, delay, t_us, zone, *, training: bool = True, loaded=None, kind: str = "int"
) -> None:
    """Online at ``t_us`` equals the oracle (and, with ``training``, the training set at ``t_us``).

    ``loaded``: the entities the online store was loaded with (default: all); the others have no events online.
    """
    at = instant(t_us, zone)
    entities = {k: v.to_pylist() for k, v in key_columns(kind, ONLINE_KEYS).items()}
    served = store.online_features(entities, ["customer_spend"], at=at)
    online_events = events if loaded is None else [e for e in events if e.key in loaded]
    want = expected_rows(features, online_events, [(k, t_us) for k in ONLINE_KEYS], delay)
    assert mismatches(want, served.to_dict()) == [], f"online at {at.isoformat()}"
    check_types(served.to_arrow().schema, features)
    for index, key in enumerate(ONLINE_KEYS[:3]):  # one entity a lookup: its own (scalar) path
        alone = {k: v[index : index + 1] for k, v in entities.items()}
        one = store.online_features(alone, ["customer_spend"], at=at).to_dict()
        assert mismatches(want[index : index + 1], one) == [], f"online at {at.isoformat()}, entity {key} alone"
    if training:
        spine = pa.table(
            {**key_columns(kind, ONLINE_KEYS), "event_timestamp": pa.array([from_us(t_us)] * len(ONLINE_KEYS))}
        )
        trained = store.training_set(spine, ["customer_spend"]).to_arrow()
        want = expected_rows(features, events, [(k, t_us) for k in ONLINE_KEYS], delay)
        assert mismatches(want, columns(trained)) == [], f"training at {at.isoformat()}"


@pytest.mark.slow
@pytest.mark.parametrize("online", ONLINE_KINDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=event_logs(min_size=1),
    windows=windows_strategy,
    delay=st.sampled_from(DELAYS),
    split=st.integers(1, EVENT_SLOTS - 1),
    lookups=st.lists(st.tuples(LOOKUP_AFTER, st.integers(0, len(ZONES) - 1)), min_size=1, max_size=4),
    edges=EDGE_PICKS,
    kind=st.sampled_from(KEY_KINDS),
)
def test_online_equals_the_oracle_at_any_later_instant(
    tmp_path_factory, request, online, raw, windows, delay, split, lookups, edges, kind
):
    features = features_of(AGGREGATIONS, windows)
    events = oracle_events(raw)
    instants = [(END_US + after, zone) for after, zone in lookups]
    instants += [(t, i % len(ZONES)) for i, t in enumerate(edge_instants(events, windows, delay, edges, END_US))]
    config = online_yaml(online, request) or ""  # Redis: a new key prefix per example
    with make_store(tmp_path_factory.mktemp("online"), raw, windows, delay, config, kind) as store:
        store.materialize(BASE, BASE + timedelta(microseconds=split * SLOT_US))
        store.materialize_incremental(END)  # only the new events
        for t_us, zone in sorted(instants):  # later and later, with no new events: values decay
            check_online(store, features, events, delay, t_us, ZONES[zone], kind=kind)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["online", "online_and_offline"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=event_logs(),
    first=event_logs(slots=(EVENT_SLOTS, EVENT_SLOTS + 6), min_size=1, max_size=8, keys=(1, 3)),
    second=event_logs(slots=(EVENT_SLOTS + 7, EVENT_SLOTS + 12), max_size=8, keys=(1, 3)),
    windows=windows_strategy,
    delay=st.sampled_from(DELAYS),
    lookups=st.lists(st.tuples(LOOKUP_AFTER, st.integers(0, len(ZONES) - 1)), min_size=1, max_size=3),
    edges=EDGE_PICKS,
    kind=st.sampled_from(KEY_KINDS),
)
def test_online_equals_the_oracle_after_pushes(
    tmp_path_factory, target, raw, first, second, windows, delay, lookups, edges, kind
):
    features = features_of(AGGREGATIONS, windows)
    with make_store(tmp_path_factory.mktemp("push"), raw, windows, delay, kind=kind) as store:
        store.materialize(BASE, END)
        pushed: list[RawEvent] = []
        for batch in (first, second):
            if not batch:
                continue
            store.push("customer_spend", source_table(batch, kind), to=target)
            pushed += batch
            events = oracle_events(raw + pushed)
            newest = max(e.time_us for e in events)
            instants = [(newest + after, zone) for after, zone in lookups]
            instants += [
                (t, i % len(ZONES)) for i, t in enumerate(edge_instants(events, windows, delay, edges, newest))
            ]
            for t_us, zone in sorted(instants):
                training = target != "online"
                check_online(store, features, events, delay, t_us, ZONES[zone], training=training, kind=kind)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=event_logs(min_size=1),
    windows=windows_strategy,
    delay=st.sampled_from(DELAYS),
    split=st.integers(1, EVENT_SLOTS - 1),
    order=st.sampled_from(["forward", "backfill", "again", "late_kept_offline"]),
    lookups=st.lists(st.tuples(LOOKUP_AFTER, st.integers(0, len(ZONES) - 1)), min_size=1, max_size=3),
)
def test_online_equals_the_oracle_after_backfills_and_many_batches(
    tmp_path_factory, raw, windows, delay, split, order, lookups
):
    """Several batches per window (batch_rows 3), windows materialized out of order or twice."""
    features = features_of(AGGREGATIONS, windows)
    events = oracle_events(raw)
    split_at = BASE + timedelta(microseconds=split * SLOT_US)
    early, late = (BASE, split_at), (split_at, END)
    plan = {
        "forward": [(early, True), (late, True)],
        "backfill": [(late, True), (early, True)],
        "again": [(early, True), (late, True), (early, True), (late, True)],
        # as for row views: the late window never reached the online store, so only the entities
        # the early window touched are loaded (from everything committed offline)
        "late_kept_offline": [(late, False), (early, True)],
    }[order]
    config = "offline:\n  batch_rows: 3\n"
    loaded = None
    if order == "late_kept_offline":
        loaded = {e.key for e in events if e.time_us < to_us(split_at)}
    with make_store(tmp_path_factory.mktemp("backfill"), raw, windows, delay, config) as store:
        for (start, end), online in plan:
            store.materialize(start, end, online=online)
        for after, zone in sorted(lookups):
            check_online(store, features, events, delay, END_US + after, ZONES[zone], loaded=loaded)
