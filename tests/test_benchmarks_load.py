"""``python -m benchmarks load`` runs at small scale against a real server and redis-server (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_load_benchmark_smoke_run(tmp_path: Path, redis_server) -> None:
    # (redis_server: fails, naming the fix, without redis-server; the run starts a server of its own)
    # (--writer-nice 0, --no-writer-idle: those phases are the pinned one's code with another priority;
    # left out for time, the CLI's --nice and --idle have their own tests)
    command = [sys.executable, "-m", "benchmarks", "load", "--scale", "small", "--seconds", "3", "--rate", "100"]
    command += ["--writer-nice", "0", "--no-writer-idle"]
    done = subprocess.run(
        [*command, "--output", str(tmp_path)], cwd=PROJECT, capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "serving_load.json").read_text())
    stores = record["stores"]
    assert {name: list(phases) for name, phases in stores.items()} == {
        "sqlite": ["idle", "materialize", "materialize_pinned"],  # the pinned writer: on unless --no-writer-pinned
        "redis": ["idle", "materialize", "materialize_pinned", "restart"],
    }
    last_cpu = str((os.cpu_count() or 1) - 1)
    for phases in stores.values():
        for phase in ("materialize", "materialize_pinned"):
            assert phases[phase]["errors"] == 0
            assert phases[phase]["commits"] >= 1
            assert phases[phase]["writer_exit"] == 0
        assert phases["materialize_pinned"]["writer_cpus"] == last_cpu
        assert phases["materialize"]["writer_idle"] is False
        assert phases["materialize"]["writer_cpus"] is None
        # The server's own histograms count every request of the phase (all answered 200).
        for phase in ("idle", "materialize"):
            server = phases[phase]["server"]
            assert server["handler"]["requests"] == server["online_read"]["requests"] == phases[phase]["requests"]
            handler = server["handler"]
            assert 0 <= handler["over_25ms"] <= handler["over_10ms"] <= handler["over_5ms"]
    restart = stores["redis"]["restart"]
    assert set(restart["down"]) == {"503"}
    assert set(restart["after"]) == {"200"}
    report = (tmp_path / "RESULTS.md").read_text()
    assert report.count("## Serving under load (issue 14)") == 1
    assert "| redis | restart |" in report
    assert "| sqlite | materialize_pinned |" in report
    assert f"(writer confined to CPU {last_cpu}: --cpus)" in report
