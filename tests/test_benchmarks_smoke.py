"""The benchmark harness runs at small scale and its correctness check holds (no timing asserted).

Covers a training set per sink and view count, the incremental materialize of a day (offline and
online), the 50-view apply, an on-demand lookup with and without POLARS_MAX_THREADS=1, the report
and its charts.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
WORKLOADS = [
    "training_1view_arrow",
    "training_3views_parquet",
    "materialize_incremental_day",
    "apply_50_views",
    "lookup_1_on_demand",
    "lookup_1_on_demand_single_thread",
]


@pytest.mark.slow
def test_harness_smoke_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "run",
            "--scale",
            "small",
            "--repeat",
            "1",
            "--quick-repeat",
            "1",
            "--no-feast",
            "--only",
            ",".join(WORKLOADS),
            "--output",
            str(tmp_path),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "small.json").read_text())
    assert record["correctness"] == ["featurekit's training sets equal the floor's, row for row"]
    results = record["results"]
    assert list(results) == WORKLOADS
    incremental = results["materialize_incremental_day"]
    assert incremental["featurekit"]["window_rows"] == incremental["floor"]["window_rows"] == 333
    assert incremental["featurekit"]["online_rows"] == incremental["floor"]["online_rows"]
    assert results["apply_50_views"]["featurekit"]["views"] == 50
    assert results["lookup_1_on_demand_single_thread"]["featurekit"]["calls"] == 5000
    report = (tmp_path / "RESULTS.md").read_text()
    assert "POLARS_MAX_THREADS=1 p50 / p99" in report  # the side-by-side lookup table
    if importlib.util.find_spec("matplotlib") is None:  # charts need the bench extra
        assert "Charts were not drawn" in report
    else:
        assert "| [training set, 1 view, to Arrow](charts/training_1view_arrow.png) |" in report
        assert (tmp_path / "charts" / "training_1view_arrow.png").stat().st_size > 0
