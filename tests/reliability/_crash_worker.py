"""Runs one featurekit command against a repo, for the crash tests (``python _crash_worker.py REPO COMMAND``).

``COMMAND`` is JSON: ``{"op": "materialize", "start": ISO, "end": ISO}``, ``{"op": "incremental",
"end": ISO}``, ``{"op": "push", "view": NAME, "rows": PARQUET_PATH_IN_REPO}`` or ``{"op": "apply"}``.
The worker prints ``ready`` once its imports are done (random kills are timed from that line), runs
the command, then prints ``done SECONDS`` (the command's own duration) and exits 0. The crash tests
set ``FEATUREKIT_CRASH_AT`` in its environment to kill it at a named point.

The test process imports :func:`run_command` from here, so a re-run after a kill runs exactly the
same code as the killed process did.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def run_command(repo: Path, command: dict[str, Any]) -> None:
    """Run ``command`` against the repo at ``repo`` (in this process)."""
    import pyarrow.parquet as pq

    import featurekit as fk

    op = command["op"]
    with fk.FeatureStore(repo, progress=False) as store:
        if op == "materialize":
            store.materialize(
                datetime.fromisoformat(command["start"]), datetime.fromisoformat(command["end"]), command.get("views")
            )
        elif op == "incremental":
            store.materialize_incremental(end=datetime.fromisoformat(command["end"]))
        elif op == "push":
            store.push(command["view"], pq.read_table(repo / command["rows"]), to="online_and_offline")
        elif op == "apply":
            store.apply()
        else:
            raise ValueError(f"unknown op {op!r}")


def main() -> None:
    repo, command = Path(sys.argv[1]), json.loads(sys.argv[2])
    # Everything a command needs is imported before "ready", so a random delay after that line
    # lands inside the command and not inside the interpreter's start-up.
    import deltalake  # noqa: F401
    import duckdb  # noqa: F401
    import polars  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import featurekit  # noqa: F401

    print("ready", flush=True)
    began = time.perf_counter()
    run_command(repo, command)
    print(f"done {time.perf_counter() - began:.4f}", flush=True)


if __name__ == "__main__":
    main()
