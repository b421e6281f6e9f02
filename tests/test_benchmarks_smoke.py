"""The benchmark harness runs at small scale and its correctness check holds (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


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
            "--no-feast",
            "--only",
            "training_1view_arrow,training_3views_arrow,materialize_online,lookup_1",
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
    assert set(results) == {"training_1view_arrow", "training_3views_arrow", "materialize_online", "lookup_1"}
    assert results["materialize_online"]["featurekit"]["online_rows"] == 2000
    assert results["lookup_1"]["featurekit"]["calls"] == 5000
    report = (tmp_path / "RESULTS.md").read_text()
    assert "| training set, 1 view, to Arrow |" in report
