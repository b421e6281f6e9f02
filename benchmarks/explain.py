"""``python -m benchmarks.explain [scale]``: the cost of ``ts.explain()`` beside the training set's own.

Runs on a copy of the scale's prepared featurekit repo (see :func:`benchmarks.contenders.fk_repo`), so
the cached store is never migrated or written. For one and for all three views, five interleaved
runs of the training set (``to_arrow``) and of ``explain()`` on a fresh training set; the fastest
and the median run of each (the fastest is the steadier figure on a loaded machine).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import featurekit as fk
from benchmarks.contenders import fk_repo
from benchmarks.data import FEATURES, SCALES, VIEWS, ensure

RUNS = 5


def seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


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
                training, explaining = [], []
                for _ in range(RUNS):
                    training.append(seconds(lambda build=build: build().to_arrow()))
                    explaining.append(seconds(build().explain))
                print(
                    f"{scale_name}, {views} view(s): training set {min(training):.2f} s "
                    f"(median {statistics.median(training):.2f}), explain() {min(explaining):.2f} s "
                    f"(median {statistics.median(explaining):.2f})"
                )


if __name__ == "__main__":
    main(*sys.argv[1:2])
