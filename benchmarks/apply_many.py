"""Cold apply of a repo with many feature views (featurekit side; Feast's is in ``feast_child``).

There is no hand-written floor: an apply's work (import the definitions, infer each view's output
schema, hash its code, record it) has no equivalent a user would write by hand, and a bare SQLite
insert of the definitions would only measure SQLite.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import featurekit as fk
from benchmarks.data import FEATURES

_HEADER = """\
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource({source!r}, created_timestamp_field="created")
"""

_VIEW = """

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def view_{index:02d}(rows: pl.DataFrame) -> pl.DataFrame:
    \"\"\"Scaled trip signals, variant {index}.\"\"\"
    scaled = [(pl.col(f) * {index}).alias(f) for f in {features!r}]
    return rows.select("driver_id", "event_timestamp", "created", *scaled)
"""


def many_views_py(source: Path, count: int) -> str:
    """A features module of ``count`` distinct views over one source (8 features each)."""
    return _HEADER.format(source=str(source)) + "".join(
        _VIEW.format(index=i, features=FEATURES) for i in range(1, count + 1)
    )


def fk_apply_many(folder: Path, work: Path, count: int) -> dict[str, object]:
    repo = work / "apply_many"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    (repo / "features.py").write_text(many_views_py(folder / "sources" / "stats_a.parquet", count))
    began = time.perf_counter()
    with fk.FeatureStore(repo, progress=False) as store:
        plan = store.apply()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "views": len(plan.new_versions)}
