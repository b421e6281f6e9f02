"""Window states in two parts: appends write tails, compaction writes bases, lookups do not tell.

A state built day by day (tails appended, some entities compacted) answers bit for bit as one
built by a single load (bases only), on every online store; a reader that read a tail before a
compaction does not count its events twice; a state of the one-part layout still reads and is
moved to the two-part layout by the next merge.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import featurekit as fk
from featurekit.online import window_state
from featurekit.online.base import OnlineRows
from featurekit.online.memory import MemoryOnlineStore
from featurekit.online.sqlite import SqliteOnlineStore
from featurekit.online.window_state import (
    COLUMNS,
    HEADER,
    JOINED,
    SMALL_STATE,
    TAIL_COLUMNS,
    TAIL_MIN,
    JoinedStates,
    WindowStates,
    read_base,
    state_of,
    tail_table,
)
from tests.conftest import RepoFactory, ts
from tests.redis_server import ONLINE_KINDS, online_yaml

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
tx = fk.FileSource("data/tx.parquet")

@fk.window_view(entity=customer, source=tx, windows=[timedelta(hours=6), timedelta(days=2)],
                aggregations=[agg.count(), agg.sum("amount"), agg.mean("amount"), agg.std("amount"),
                              agg.max("amount"), agg.count_distinct("shop"), agg.last_n("amount", 3)])
def spend(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select("customer_id", "event_timestamp", "amount", "shop")
"""

DAYS = 7
HOT = 0  # the customer with most events: its tail outgrows TAIL_MIN and gets compacted


@pytest.fixture(autouse=True)
def _tails_for_small_states(monkeypatch):
    """These states are small (a few hundred events): give every one of them a tail, as big states get."""
    monkeypatch.setattr(window_state, "SMALL_STATE", 0)


def _events(seed: int = 5) -> pa.Table:
    """Events over DAYS days, every time distinct (float sums then have one order), the hot customer busiest."""
    rng = np.random.default_rng(seed)
    rows = 3_000
    customers = np.where(rng.random(rows) < 0.3, HOT, rng.integers(1, 40, rows))
    micros = rng.choice(DAYS * 86_400_000_000, rows, replace=False)
    return pa.table(
        {
            "customer_id": pa.array(customers, pa.int64()),
            "event_timestamp": pa.array(
                [ts(0) + timedelta(microseconds=int(m)) for m in micros], pa.timestamp("us", tz="UTC")
            ),
            "amount": pa.array(rng.normal(50, 30, rows)),
            "shop": pa.array(rng.integers(0, 9, rows), pa.int64()),
        }
    )


def _lookups(store: fk.FeatureStore, day: int = DAYS) -> list[dict[str, list[object]]]:
    """Every customer at a few instants (one at a time: the scalar path; all at once: the vectorized one)."""
    found = []
    for hours in (0, 5, 30):
        at = ts(day) + timedelta(hours=hours)
        found.append(store.online_features({"customer_id": list(range(41))}, ["spend"], at=at).to_dict())
        for customer in (HOT, 1, 2):
            found.append(store.online_features({"customer_id": [customer]}, ["spend"], at=at).to_dict())
    return found


def _states(store: fk.FeatureStore) -> WindowStates:
    return WindowStates(store.registry.active()["spend"].version)


@pytest.mark.slow
@pytest.mark.parametrize("online", ONLINE_KINDS)
def test_a_state_built_day_by_day_answers_as_one_built_at_once(tmp_path, request, online):
    events = _events()
    repos = RepoFactory(tmp_path)
    daily = repos(FEATURES, {"data/tx.parquet": events}, online_yaml(online, request))
    once = repos(FEATURES, {"data/tx.parquet": events}, online_yaml(online, request))
    with fk.FeatureStore(daily, progress=False) as by_day, fk.FeatureStore(once, progress=False) as at_once:
        by_day.apply()
        at_once.apply()
        by_day.materialize(ts(0), ts(2))
        for day in range(3, DAYS + 1):  # days 4 and 6 compact most entities (stale bases), the others append
            by_day.materialize_incremental(ts(day))
        at_once.materialize(ts(0), ts(DAYS))

        states = _states(by_day)
        tails = by_day.online.read(states.tail, TAIL_COLUMNS, list(range(41)))
        bases = by_day.online.read(states.table, COLUMNS, list(range(41)))
        assert any(row[2] for row in tails.values()), "no entity kept a tail: appends were not taken"
        first_load = _states(at_once)
        assert len(tails) == len(bases) == len(by_day.online.read(first_load.table, COLUMNS, list(range(41))))
        # The hot customer's base was rewritten after the first load (a compaction), and trimmed:
        # it holds no event from before the horizon minus half the longest window.
        generation, hot = read_base(bases[HOT][2], states.layout)
        assert generation == tails[HOT][3]
        horizon = ts(DAYS) - timedelta(days=2)
        oldest = pa.scalar(hot.column(0)[0].as_py(), pa.timestamp("us", tz="UTC")).as_py()
        assert oldest >= horizon - timedelta(days=1)
        assert _lookups(by_day) == _lookups(at_once)

        # Pushes append to tails on both, one of them late (before the state's newest events).
        pushed = pa.table(
            {
                "customer_id": pa.array([HOT, 1, 1], pa.int64()),
                "event_timestamp": pa.array(
                    [ts(DAYS, 1), ts(DAYS) - timedelta(hours=3, microseconds=7), ts(DAYS, 2)],
                    pa.timestamp("us", tz="UTC"),
                ),
                "amount": pa.array([1.25, -3.5, 7.0]),
                "shop": pa.array([99, 98, 97], pa.int64()),
            }
        )
        by_day.push("spend", pushed)
        at_once.push("spend", pushed)
        assert _lookups(by_day) == _lookups(at_once)
        assert by_day.check_integrity().problems == []


def _push(store: fk.FeatureStore, customer: int, count: int, first: datetime) -> None:
    store.push(
        "spend",
        pa.table(
            {
                "customer_id": pa.array([customer] * count, pa.int64()),
                "event_timestamp": pa.array(
                    [first + timedelta(seconds=i) for i in range(count)], pa.timestamp("us", tz="UTC")
                ),
                "amount": pa.array([float(i) / 3 for i in range(count)]),
                "shop": pa.array([i % 4 for i in range(count)], pa.int64()),
            }
        ),
    )


def test_lookups_through_kept_joined_states_answer_as_joined_anew(tmp_path, monkeypatch):
    """Hot states joined once and kept (JOINED, here for every state) answer bit for bit as states
    joined at each lookup: when kept, after a push appends to a tail, after a push compacts."""
    monkeypatch.setattr(JOINED, "min_rows", 1)
    JOINED.clear()
    events = _events()
    repos = RepoFactory(tmp_path)
    daily = repos(FEATURES, {"data/tx.parquet": events})
    once = repos(FEATURES, {"data/tx.parquet": events})
    with fk.FeatureStore(daily, progress=False) as by_day, fk.FeatureStore(once, progress=False) as at_once:
        by_day.apply()
        at_once.apply()
        by_day.materialize(ts(0), ts(DAYS - 1))
        by_day.materialize_incremental(ts(DAYS))
        at_once.materialize(ts(0), ts(DAYS))
        expected = _lookups(at_once)  # bases only: nothing to join
        assert not len(JOINED)
        assert _lookups(by_day) == expected
        assert len(JOINED), "no state was kept"
        kept = len(JOINED)
        assert _lookups(by_day) == expected  # from the kept states
        assert len(JOINED) == kept

        def fresh() -> list[dict[str, list[object]]]:
            monkeypatch.setattr(JOINED, "min_rows", 10**9)  # join at each lookup
            found = _lookups(by_day)
            monkeypatch.setattr(JOINED, "min_rows", 1)
            return found

        for count in (3, TAIL_MIN + 1):  # an append to the tails, then a compaction of one customer
            _push(by_day, HOT, count, ts(DAYS, 1))
            _push(by_day, 1, count, ts(DAYS) - timedelta(hours=2, microseconds=3))  # late: a sorted join
            assert _lookups(by_day) == fresh()
            assert _lookups(by_day) == fresh()
    JOINED.clear()


def test_kept_joined_states_stay_within_their_budget():
    layout = pa.schema([pa.field("__fk_o", pa.int64())])
    batch = pa.RecordBatch.from_arrays([pa.array(np.arange(1000, dtype=np.int64))], schema=layout)
    tail = b"0123456789"
    kept = JoinedStates(budget_bytes=4 * (batch.nbytes + len(tail)) + 8, min_rows=1)
    for i in range(6):
        kept.put(("t", i), tail, batch)
        assert kept.nbytes <= kept.budget_bytes
    assert len(kept) == 4
    assert kept.get(("t", 0), tail) is None  # the least recently used went first
    assert kept.get(("t", 1), tail) is None
    assert kept.get(("t", 2), tail) is batch
    kept.put(("t", 6), tail, batch)
    assert kept.get(("t", 2), tail) is batch  # a hit made ("t", 2) recent
    assert kept.get(("t", 3), tail) is None
    assert kept.get(("t", 2), b"0123456780") is None  # another tail: not this state
    newer = b"0123456789+"
    kept.put(("t", 2), newer, batch)  # a newer tail's state replaces the older's
    assert len(kept) == 4
    assert kept.get(("t", 2), tail) is None
    assert kept.get(("t", 2), newer) is batch
    assert kept.nbytes == 4 * (batch.nbytes + len(tail)) + 1
    kept.put(("big", 0), b"", pa.RecordBatch.from_arrays([pa.array(np.arange(10**4))], schema=layout))
    assert kept.get(("big", 0), b"") is None  # over a quarter of the budget: not kept


def _store_with_tails(tmp_path) -> fk.FeatureStore:
    store = fk.FeatureStore(RepoFactory(tmp_path)(FEATURES, {"data/tx.parquet": _events()}), progress=False)
    store.apply()
    store.materialize(ts(0), ts(DAYS - 1))
    store.materialize_incremental(ts(DAYS))
    return store


def test_a_reader_that_read_a_tail_before_a_compaction_counts_it_once(tmp_path):
    with _store_with_tails(tmp_path) as store:
        states = _states(store)
        customer = next(
            k for k, row in store.online.read(states.tail, TAIL_COLUMNS, list(range(1, 41))).items() if row[2]
        )
        old_tail = store.online.read(states.tail, TAIL_COLUMNS, [customer])[customer]
        before = state_of(store.online.read(states.table, COLUMNS, [customer])[customer], old_tail, states.layout, 0)
        # Enough pushed events to compact the customer: its tail's events move into a new base.
        count = TAIL_MIN + 1
        store.push(
            "spend",
            pa.table(
                {
                    "customer_id": pa.array([customer] * count, pa.int64()),
                    "event_timestamp": pa.array(
                        [ts(DAYS, 1) + timedelta(seconds=i) for i in range(count)], pa.timestamp("us", tz="UTC")
                    ),
                    "amount": pa.array([float(i) for i in range(count)]),
                    "shop": pa.array([1] * count, pa.int64()),
                }
            ),
        )
        base = store.online.read(states.table, COLUMNS, [customer])[customer]
        new_tail = store.online.read(states.tail, TAIL_COLUMNS, [customer])[customer]
        assert new_tail[2] == b"", "the push should have compacted the customer"
        after = state_of(base, new_tail, states.layout, 0)
        assert after.num_rows == before.num_rows + count
        # Tail read before the compaction, base after it: the old tail is ignored, not added again.
        assert state_of(base, old_tail, states.layout, 0).equals(after)


def test_a_state_of_the_one_part_layout_reads_and_moves_to_two_parts(tmp_path):
    with _store_with_tails(tmp_path) as store:
        states = _states(store)
        keys = sorted(store.online.read(states.table, COLUMNS, list(range(41))))
        expected = _lookups(store)
        # What the one-part layout wrote: the record batch alone, no tail table.
        merged = [
            state_of(row, tail, states.layout, 0)
            for row, tail in (
                (store.online.read(states.table, COLUMNS, [k])[k], store.online.read(states.tail, TAIL_COLUMNS, [k])[k])
                for k in keys
            )
        ]
        rows = store.online.read(states.table, COLUMNS, keys)
        store.online.drop_table(states.table)
        store.online.drop_table(states.tail)
        store.online.create_table(states.table, COLUMNS)
        store.online.write(
            states.table,
            OnlineRows(
                keys=keys,
                event_us=[rows[k][0] for k in keys],
                created_us=[rows[k][1] for k in keys],
                columns={
                    COLUMNS[0]: [m.serialize().to_pybytes() for m in merged],
                    "valid_from": [rows[k][3] for k in keys],
                },
            ),
        )
        assert _lookups(store) == expected
        # A merge touching an entity rewrites it in the two-part layout; the others still read.
        store.push(
            "spend",
            pa.table(
                {
                    "customer_id": pa.array([3], pa.int64()),
                    "event_timestamp": pa.array([ts(DAYS, 4)], pa.timestamp("us", tz="UTC")),
                    "amount": pa.array([2.0]),
                    "shop": pa.array([5], pa.int64()),
                }
            ),
        )
        moved = store.online.read(states.table, COLUMNS, [3, 4])
        assert moved[3][2][:8] == HEADER
        assert moved[4][2][:8] != HEADER
        at = ts(DAYS) + timedelta(hours=5)
        served = store.online_features({"customer_id": [3]}, ["spend"], at=at).to_dict()
        assert served["count_6h"] == [expected[4]["count_6h"][3] + 1]
        assert store.check_integrity().problems == []


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_joint_write_that_fails_writes_nothing(tmp_path, kind):
    store = MemoryOnlineStore() if kind == "memory" else SqliteOnlineStore(tmp_path / "online.db")
    store.create_table("a__v1", ["x"])
    rows = OnlineRows(keys=[1, 2], event_us=[5, 5], created_us=[0, 0], columns={"x": [1, 2]})
    with pytest.raises(Exception):  # noqa: B017, PT011 (the second table is missing: each store's own error)
        store.write_joint([("a__v1", rows), (tail_table("a__v1"), rows)])
    assert store.read("a__v1", ["x"], [1, 2]) == {}
    store.create_table(tail_table("a__v1"), ["x"])
    assert store.write_joint([("a__v1", rows), (tail_table("a__v1"), rows)]) == 4
    assert store.read(tail_table("a__v1"), ["x"], [2]) == {2: (5, 0, 2)}
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 2])
def test_a_kill_during_a_window_merge_leaves_states_a_rerun_completes(tmp_path, kill_at):
    # The fourth day compacts every entity (each base reaches back before the horizon by more than
    # half the longest window): SQLite writes the bases, then the tails, in one transaction; the
    # kill lands halfway through the bases (1) or through the tails, the bases all written (2).
    repos = RepoFactory(tmp_path)
    killed_repo, clean_repo = (repos(FEATURES, {"data/tx.parquet": _events()}) for _ in range(2))
    for repo in (killed_repo, clean_repo):
        with fk.FeatureStore(repo, progress=False) as store:
            store.apply()
            store.materialize(ts(0), ts(2))
            store.materialize_incremental(ts(3))
    worker = Path(__file__).parent / "reliability" / "_crash_worker.py"
    command = json.dumps({"op": "incremental", "end": ts(4).isoformat()})
    env = {**os.environ, "FEATUREKIT_CRASH_AT": f"online.mid_upsert:{kill_at}"}
    done = subprocess.run(
        [sys.executable, str(worker), str(killed_repo), command], env=env, capture_output=True, timeout=300, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    with fk.FeatureStore(killed_repo, progress=False) as again, fk.FeatureStore(clean_repo, progress=False) as clean:
        again.materialize_incremental(ts(4))  # loads what the killed run did not
        clean.materialize_incremental(ts(4))
        served = _lookups(again, day=4)
        assert served == _lookups(clean, day=4)
        assert sum(served[0]["count_2d"]) > 0  # (states that hold the last two days' events)


def test_small_states_are_rewritten_whole_and_answer_as_states_with_tails(tmp_path, monkeypatch):
    """With the default SMALL_STATE, an entity whose state stays within it never keeps a tail (its
    lookups read nothing to join); bigger ones do; both answer as a store built at once."""
    monkeypatch.setattr(window_state, "SMALL_STATE", SMALL_STATE)
    events = _events()
    repos = RepoFactory(tmp_path)
    daily, once = (repos(FEATURES, {"data/tx.parquet": events}) for _ in range(2))
    with fk.FeatureStore(daily, progress=False) as by_day, fk.FeatureStore(once, progress=False) as at_once:
        by_day.apply()
        at_once.apply()
        by_day.materialize(ts(0), ts(2))
        by_day.materialize_incremental(ts(3))
        at_once.materialize(ts(0), ts(3))
        states = _states(by_day)
        tails = by_day.online.read(states.tail, TAIL_COLUMNS, list(range(41)))
        bases = by_day.online.read(states.table, COLUMNS, list(range(41)))
        sizes = {k: read_base(row[2], states.layout)[1].num_rows for k, row in bases.items()}
        with_tail = {k for k, row in tails.items() if row[2]}
        assert HOT in with_tail  # the busiest customer (about 600 events) appends to its tail
        assert all(sizes[k] > SMALL_STATE for k in with_tail)
        assert any(sizes[k] <= SMALL_STATE for k in bases), "no small state to check"
        assert _lookups(by_day, day=3) == _lookups(at_once, day=3)


def test_kept_joined_states_under_threads_never_answer_a_partial_or_older_state(tmp_path, monkeypatch):
    """Readers sharing JOINED (kept for every state, so each push replaces the hot customer's entry
    while others read it) while a pusher appends to that customer's tail and compacts it: each
    reader sees the count only grow, only by whole pushes, and ends where a fresh join does."""
    import threading

    monkeypatch.setattr(JOINED, "min_rows", 1)
    JOINED.clear()
    at = ts(DAYS) + timedelta(hours=5)
    pushes = [3, TAIL_MIN + 1, 2, 5, TAIL_MIN + 2, 1, 4, 3]  # the big ones compact the hot customer
    with _store_with_tails(tmp_path) as store:

        def count() -> int:
            found = store.online_features({"customer_id": [HOT, 1, 2]}, ["spend"], at=at).to_dict()
            store.online_features({"customer_id": [3]}, ["spend"], at=at)  # another entry in JOINED
            return int(found["count_6h"][0])

        start = count()
        totals = {start + sum(pushes[:k]) for k in range(len(pushes) + 1)}
        done = threading.Event()
        errors: list[BaseException] = []
        seen: list[list[int]] = [[] for _ in range(3)]

        def push() -> None:
            try:
                for k, n in enumerate(pushes):
                    _push(store, HOT, n, ts(DAYS, 1) + timedelta(minutes=k))
            except BaseException as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)
            finally:
                done.set()

        def read(reader: int) -> None:
            try:
                while not done.is_set() or len(seen[reader]) < 5:
                    seen[reader].append(count())
            except BaseException as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)

        threads = [threading.Thread(target=push)] + [threading.Thread(target=read, args=(r,)) for r in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert errors == []
        for values in seen:
            assert values == sorted(values), "a reader saw an older state after a newer one"
            assert set(values) <= totals, f"a count no sequence of whole pushes gives: {set(values) - totals}"
        assert count() == start + sum(pushes)
        assert len(JOINED) >= 4  # the states read were kept
        kept = _lookups(store)
        monkeypatch.setattr(JOINED, "min_rows", 10**9)  # join at each lookup
        assert kept == _lookups(store)
    JOINED.clear()
