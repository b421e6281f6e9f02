"""A window training set is a function of the registry version and the spine, bit for bit.

Float sums depend on the order of addition, and DuckDB orders rows with equal keys differently
from run to run (on a log where every time repeats, most sums differed in their last bits between
two runs). The window join orders frames by a key unique per distinct row, so rebuilding a
training set, from its manifest or not, gives the same bytes.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa

import featurekit as fk
from tests.conftest import ts

FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
tx = fk.FileSource("data/tx.parquet")

@fk.window_view(entity=customer, source=tx, windows=[timedelta(hours=1), timedelta(days=2)],
                aggregations=[agg.sum("amount"), agg.mean("amount"), agg.std("amount"), agg.var("amount")])
def spend(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select("customer_id", "event_timestamp", "amount")
"""


def test_float_window_sums_are_identical_on_every_rebuild(make_repo, open_store, tmp_path):
    rng = np.random.default_rng(3)
    rows = 200_000
    # 50 customers, times on a coarse grid (a minute), so that many events share a time.
    minutes = rng.integers(0, 3 * 24 * 60, rows)
    events = pa.table(
        {
            "customer_id": pa.array(rng.integers(0, 50, rows), pa.int64()),
            "event_timestamp": pa.array(
                [ts(0) + timedelta(minutes=int(m)) for m in minutes], pa.timestamp("us", tz="UTC")
            ),
            "amount": pa.array(rng.normal(0, 1e6, rows)),
        }
    )
    store = open_store(make_repo(features=FEATURES, data={"data/tx.parquet": events}))
    store.apply()
    store.materialize(ts(0), ts(3))
    spine = pa.table(
        {
            "customer_id": pa.array(rng.integers(0, 50, 5_000), pa.int64()),
            "event_timestamp": pa.array(
                [ts(0) + timedelta(minutes=int(m)) for m in rng.integers(60, 3 * 24 * 60, 5_000)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    first = store.training_set(spine, ["spend"])
    path = first.to_parquet(tmp_path / "train.parquet")
    built = [first.to_arrow()] + [store.training_set(spine, ["spend"]).to_arrow() for _ in range(2)]
    built.append(store.training_set(spine, manifest=path).to_arrow())
    assert all(b.equals(built[0]) for b in built[1:])
    assert isinstance(first, fk.TrainingSet)
