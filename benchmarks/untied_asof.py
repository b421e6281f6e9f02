"""``python -m benchmarks.untied_asof``: the join plans on shape data without (key, event time) ties.

The shapes' sources (`dense`: 1,000 entities x 2,000 rows, 100k spine; `lowcard`: 10 x 1M rows,
1M spine; TTL 7 days) have 1% of rows tied on (key, event time) on purpose. Here the first row of
each (key, event time) is kept (1,980,186 and 9,900,387 rows), materialized into a fresh repo
under a temporary folder (the shared data stay read-only). In interleaved rounds, in one
process: the engine's ``asof_rows`` and ``asof`` plans on the same files and spine (their
results must be equal; ``asof_rows`` is the plan for views declared tie-free), and polars
``join_asof`` on in-memory frames (inputs read before the timer, sorts included, as in
:mod:`benchmarks.shapes`). Writes ``benchmarks/results/untied_asof.json``, one record per shape.
The record of 2026-12-02 was taken at commit 3a2c2d4, where materialize also measured ties
(``store_plan``, ``recorded.unique_times`` and ``data_stats_cpu_seconds``, the CPU of that
check, which was then reverted: see NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(8)]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _untied_repo(work: Path, name: str) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import featurekit as fk
    from benchmarks.data import SHAPES, START
    from benchmarks.shapes import shape_repo

    shape = SHAPES[name]
    dense = shape_repo(shape)
    table = pq.read_table(dense.parent / "sources" / "stats_a.parquet")
    numbered = pa.table({"k": table["driver_id"], "e": table["event_timestamp"], "i": pa.array(range(table.num_rows))})
    first = numbered.group_by(["k", "e"]).aggregate([("i", "min")])["i_min"]
    (work / "sources").mkdir()
    pq.write_table(table.take(np.sort(first.to_numpy())), work / "sources" / "stats_a.parquet")
    repo = work / "fk_repo"
    repo.mkdir()
    (repo / "features.py").write_text((dense / "features.py").read_text())
    with fk.FeatureStore(repo, progress=False) as store:
        store.apply()
        store.materialize(START, shape.end, online=False)
    return repo


def measure(rounds: int, name: str = "dense") -> dict[str, Any]:
    import polars as pl
    import pyarrow.parquet as pq

    import featurekit as fk
    from benchmarks.data import SHAPES
    from benchmarks.shapes import shape_repo
    from featurekit.offline.duckdb_engine import DuckDBEngine
    from featurekit.offline.engine import ViewInput
    from featurekit.offline.spine import prepare_spine
    from featurekit.offline.training import TrainingSet

    shape = SHAPES[name]
    spine_path = shape_repo(shape).parent / "spine.parquet"
    with tempfile.TemporaryDirectory() as folder:
        repo = _untied_repo(Path(folder), name)
        with fk.FeatureStore(repo, progress=False) as store:
            record = store.registry.last_materialization(1)
            files = store.tables.files("stats_a", 1, record.data_version)
            plan = store.training_set(spine_path, [f"stats_a:{f}" for f in FEATURES]).description.splitlines()[0]
        local = [f.removeprefix("file://") for f in files]
        schema = pq.read_schema(local[0])
        spine = pq.read_table(spine_path)
        prepared = prepare_spine(spine, "event_timestamp", {"driver_id": schema.field("driver_id").type})
        frames = pl.from_arrow(pq.read_table(local, columns=["driver_id", "event_timestamp", *FEATURES]))
        left_frame = pl.from_arrow(spine)
        assert isinstance(frames, pl.DataFrame)
        assert isinstance(left_frame, pl.DataFrame)
        tolerance = f"{shape.ttl_days}d"
        samples: dict[str, list[tuple[float, float]]] = {"asof_rows": [], "asof": [], "polars": []}
        results: dict[str, Any] = {}
        for _ in range(rounds):
            for plan_name, taken in samples.items():
                wall, cpu = time.perf_counter(), _cpu()
                if plan_name == "polars":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        left = left_frame.with_row_index("__rn").sort("event_timestamp")
                        right = frames.sort("event_timestamp")
                        joined = left.join_asof(
                            right, on="event_timestamp", by="driver_id", strategy="backward", tolerance=tolerance
                        ).sort("__rn")
                    covered = joined.height - joined["f0"].null_count()
                else:
                    view = ViewInput(
                        name="stats_a",
                        files=files,
                        schema=schema,
                        join_keys=["driver_id"],
                        timestamp_field="event_timestamp",
                        created_field="created",
                        ttl=timedelta(days=shape.ttl_days),
                        features=[(f, f) for f in FEATURES],
                        entities=record.entities,
                        unique_times=plan_name == "asof_rows",
                    )
                    engine = DuckDBEngine(repo)
                    join = engine.point_in_time(prepared.spine, [view])
                    assert join.strategies[0].name == plan_name
                    table = TrainingSet(join).to_arrow()
                    engine.close()
                    covered = table.num_rows - table.column("f0").null_count
                    results[plan_name] = table
                taken.append((time.perf_counter() - wall, _cpu() - cpu))
                results[f"{plan_name}_covered"] = covered
    summary = {
        name: {
            "median": statistics.median(w for w, _ in values),
            "min": min(w for w, _ in values),
            "cpu_seconds": statistics.median(c for _, c in values),
            "walls": [w for w, _ in values],
            "covered": results[f"{name}_covered"],
        }
        for name, values in samples.items()
    }
    return {
        "shape": name,
        "store_plan": plan,
        "recorded": {"entities": record.entities, "unique_times": record.unique_times, "rows": record.rows},
        "asof_rows_equals_asof": bool(results["asof_rows"].equals(results["asof"])),
        "contenders": summary,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.untied_asof")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="dense,lowcard", help="comma-separated shapes of benchmarks.data.SHAPES")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "untied_asof.json")
    options = parser.parse_args()
    records = json.loads(options.output.read_text()) if options.output.exists() else {}
    for name in options.only.split(","):
        load = os.getloadavg()
        record = measure(options.rounds, name)
        record["load_before"], record["load_after"] = load, os.getloadavg()
        records[name] = record
        options.output.write_text(json.dumps(records, indent=2) + "\n")
        print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
