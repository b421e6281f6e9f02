"""``python -m benchmarks.explain [scale]``: the cost of ``ts.explain()`` beside the training set's own.

Runs on a copy of the scale's prepared featurekit repo (see :func:`benchmarks.contenders.fk_repo`), so
the cached store is never migrated or written. For one and for all three views: the training set
(``to_arrow``), then ``explain()`` of a fresh training set; the median of three runs of each.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import featurekit as fk
from benchmarks.contenders import fk_repo
from benchmarks.data import FEATURES, SCALES, VIEWS, ensure

RUNS = 3


def median_seconds(work: object) -> float:
    found = []
    for _ in range(RUNS):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        found.append(time.perf_counter() - start)
    return statistics.median(found)


def main(scale_name: str = "medium") -> None:
    folder = ensure(SCALES[scale_name])
    prepared = fk_repo(folder)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary) / scale_name
        shutil.copytree(prepared, work / "fk_repo", ignore=shutil.ignore_patterns("online.db*"))
        (work / "sources").symlink_to(folder / "sources")
        spine = folder / "spine.parquet"
        with fk.FeatureStore(work / "fk_repo", progress=False) as store:
            for views in (1, len(VIEWS)):
                features = [f"{v}:{f}" for v in VIEWS[:views] for f in FEATURES]

                def build(features: list[str] = features, views: int = views) -> fk.TrainingSet:
                    return store.training_set(spine, features, full_names=views > 1)

                build().to_arrow()  # warm the page cache and DuckDB
                training = median_seconds(lambda build=build: build().to_arrow())
                explaining = median_seconds(lambda build=build: build().explain())
                print(
                    f"{scale_name}, {views} view(s): training set {training:.2f} s, explain() {explaining:.2f} s "
                    f"({explaining / training:.2f}x)"
                )


if __name__ == "__main__":
    main(*sys.argv[1:2])
