"""A serving process keeps the memory a hot entity's window lookup needs instead of faulting it in each time.

glibc's ``malloc`` trims its heap's free top back to the OS beyond a threshold that grows with the
largest block the process freed (featurekit/online/heap.py). The tests count minor page faults
(``ru_minflt``) in fresh processes, so nothing this test process allocated before interferes.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import featurekit as fk

pytestmark = [
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the trim threshold is glibc's"),
    pytest.mark.skipif(any(k.startswith("MALLOC_") for k in os.environ), reason="malloc tuned by the environment"),
]

PROJECT = Path(__file__).resolve().parent.parent


def faults_per_round(script: str) -> float:
    """Run ``script`` in a fresh interpreter; it prints the minor faults of one round."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


BUFFERS = """
import resource
from featurekit.online import heap
{settle}

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def round_():  # what a hot lookup allocates: a 2 MB blob and a copy of it, both written, then freed
    blob = b"x" * 2_000_000
    copy = blob[:-1]
    del blob, copy

for _ in range(5):
    round_()
before = faults()
for _ in range(50):
    round_()
print((faults() - before) / 50)
"""


def test_after_settle_megabyte_buffers_stop_faulting_in_again():
    without = faults_per_round(BUFFERS.format(settle=""))
    settled = faults_per_round(BUFFERS.format(settle="heap.settle()"))
    assert without > 400  # each 4 KB page of the 4 MB comes back from the OS on every round
    assert settled < 20


FEATURES = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

customer = fk.Entity("customer", join_keys=["customer_id"])
tx = fk.FileSource("data/tx.parquet", timestamp_field="event_timestamp")


@fk.window_view(
    entity=customer,
    source=tx,
    windows=[timedelta(hours=1), timedelta(days=7), timedelta(days=30)],
    aggregations=[agg.count(), agg.sum("amount"), agg.mean("amount"), agg.max("amount")],
)
def customer_spend(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select("customer_id", "event_timestamp", "amount")
"""

LOOKUPS = """
import resource
from datetime import datetime, UTC
import featurekit as fk

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

with fk.FeatureStore({root!r}, progress=False) as store:
    at = datetime(2026, 2, 1, tzinfo=UTC)
    for _ in range(5):
        store.online_features({{"customer_id": [1]}}, ["customer_spend"], at=at)
    before = faults()
    for _ in range(30):
        store.online_features({{"customer_id": [1]}}, ["customer_spend"], at=at)
    print((faults() - before) / 30)
"""


@pytest.mark.slow
def test_hot_window_entity_lookups_in_a_fresh_process_do_not_fault_in_their_state(make_repo, tmp_path):
    events = 130_000  # a 2 MB state: time and amount of each event
    rng = np.random.default_rng(3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = np.sort(rng.integers(0, 30 * 86_400 * 1_000_000, events)) + int(start.timestamp() * 1_000_000)
    table = pa.table(
        {
            "customer_id": pa.array(np.ones(events, dtype=np.int64)),
            "event_timestamp": pa.array(times, pa.timestamp("us", "UTC")),
            "amount": pa.array(rng.random(events)),
        }
    )
    root = make_repo(features=FEATURES, data={"data/tx.parquet": table})
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(start, start + timedelta(days=31))
    assert faults_per_round(LOOKUPS.format(root=str(root))) < 100  # without heap.settle: about 1,000
