"""One FeatureStore shared by threads that push window events and look window features up at once.

Pushes merge into stored states (read, merge, write) under the view's lock; lookups read states
and training sets run the block plan on their own cursors. No push may be lost, no call may raise.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from tests.conftest import ts

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
tx = fk.FileSource("data/tx.parquet")

@fk.window_view(entity=customer, source=tx, windows=[timedelta(days=30)],
                aggregations=[agg.count(), agg.sum("amount")])
def spend(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select("customer_id", "event_timestamp", "amount")
"""


def rows(customer: int, times: list[datetime], amount: float) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([customer] * len(times), pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "amount": pa.array([amount] * len(times)),
        }
    )


def test_pushes_lookups_and_training_sets_share_one_store(make_repo, open_store):
    store = open_store(make_repo(features=FEATURES, data={"data/tx.parquet": rows(1, [ts(0)], 1.0)}))
    store.apply()
    store.materialize(ts(0), ts(1))
    now = datetime.now(UTC)
    errors: list[BaseException] = []
    pushes_per_thread, pushers = 15, 4

    def push(worker: int) -> None:
        try:
            for i in range(pushes_per_thread):
                at = now - timedelta(seconds=worker * 100 + i + 1)
                store.push("spend", rows(10 + worker % 2, [at], 2.0))  # two pushers per customer
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    def look() -> None:
        try:
            for _ in range(30):
                store.online_features([{"customer_id": 10}, {"customer_id": 11}], ["spend"])
                spine = pa.table(
                    {"customer_id": [1], "event_timestamp": pa.array([ts(1)], pa.timestamp("us", tz="UTC"))}
                )
                assert store.training_set(spine, ["spend"]).to_arrow().column("count_30d").to_pylist() == [1]
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(w,)) for w in range(pushers)]
    threads += [threading.Thread(target=look) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = store.online_features([{"customer_id": 10}, {"customer_id": 11}], ["spend"]).to_dict()
    expected = pushes_per_thread * pushers // 2
    assert final["count_30d"] == [expected, expected]  # no merge lost another's events
    assert final["amount_sum_30d"] == [2.0 * expected, 2.0 * expected]
