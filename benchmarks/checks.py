"""``python -m benchmarks.checks``: what checks before commit cost an offline materialize.

Two repos over the same source (``stats_a`` of a scale: 1M rows of 100k drivers at medium, eight
float features): one view without checks, one with the checks of the issue's example
(``not_null``, ``between``, ``unique_keys``, ``row_count``, ``freshness``). Each repetition
materializes ``[START, END)`` offline into a fresh store with checks on and off, alternating, and
the report gives the median of each and their difference (and that of the fastest runs). It also times the checks alone
(:class:`featurekit.quality.checks.CheckRun` over the committed output, batch by batch as a
materialization feeds them), which the machine's noise does not blur.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

import featurekit as fk
from benchmarks.data import END, SCALES, START, ensure

FEATURES_PY = """\
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
source = fk.FileSource("SOURCE", created_timestamp_field="created")


@fk.feature_view(entity=driver, source=source, ttl=timedelta(days=7)CHECKS)
def stats_a(rows: pl.DataFrame) -> pl.DataFrame:
    return rows
"""

CHECKS = """,
    checks=[
        fk.check.not_null("f0", max_fraction=0.01),
        fk.check.between("f0", 0, 1),
        fk.check.unique_keys(),
        fk.check.row_count(min=1_000),
        fk.check.freshness(max_age=timedelta(hours=2)),
    ],
    on_check_failure="fail",
"""


def _repo(base: Path, name: str, source: Path, checks: bool) -> Path:
    repo = base / name
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    text = FEATURES_PY.replace("SOURCE", str(source)).replace("CHECKS", CHECKS if checks else "")
    (repo / "features.py").write_text(text)
    (repo / "featurekit.yaml").write_text("offline:\n  batch_rows: 2000000\n")  # the demo repo's setting
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
    return repo


def _materialize(repo: Path) -> float:
    with fk.FeatureStore(repo, progress=False) as store:
        began = time.perf_counter()
        store.materialize(START, END, online=False)
        return time.perf_counter() - began


def _checks_alone(repo: Path, repeat: int) -> float:
    """Median seconds of the checks over the committed output, fed in 8 batches as a materialization would."""
    from featurekit.quality.checks import CheckRun

    with fk.FeatureStore(repo, progress=False) as store:
        view = store.definitions.views["stats_a"]
        version = store.show("stats_a").version
        last = store.registry.last_materialization(version.id)
        assert last is not None
        files = store.tables.files("stats_a", version.version, last.data_version)
        table = pq.ParquetDataset([f.removeprefix("file://") for f in files]).read().cast(version.schema)
        order = table.column("driver_id").to_numpy() % 8  # batches of whole entities
        batches = [table.filter(order == i) for i in range(8)]
        times = []
        for _ in range(repeat):
            run = CheckRun(view, version, window=(START, END), mode="window")
            began = time.perf_counter()
            for batch in batches:
                run.add(batch)
            run.conclude()
            times.append(time.perf_counter() - began)
            assert all(r.passed for r in run.results), run.results
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium", choices=sorted(SCALES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--source", type=Path, default=None, help="stats_a.parquet to use instead of the cached one")
    options = parser.parse_args()
    source = options.source or ensure(SCALES[options.scale]) / "sources" / "stats_a.parquet"
    work = Path(tempfile.mkdtemp(prefix="featurekit-checks-bench-"))
    try:
        _materialize(_repo(work, "warmup", source, checks=False))  # the source into the page cache
        seconds: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(options.repeat):
            for kind in ("off", "on"):
                seconds[kind].append(_materialize(_repo(work, kind, source, checks=kind == "on")))
        alone = _checks_alone(work / "on", options.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    off, on = statistics.median(seconds["off"]), statistics.median(seconds["on"])
    report = {
        "scale": options.scale,
        "rows": pq.ParquetFile(source).metadata.num_rows,
        "materialize_offline_s": {"checks_off": off, "checks_on": on, "runs": seconds},
        "difference": (on - off) / off,
        "difference_of_fastest": (min(seconds["on"]) - min(seconds["off"])) / min(seconds["off"]),
        "checks_alone_s": alone,
        "checks_alone_share": alone / off,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
