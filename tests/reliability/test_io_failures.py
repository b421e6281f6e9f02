"""Injected I/O failures: the 1st, 2nd, ... write operation of a command fails, until it completes.

An LD_PRELOAD shim (``iofail/failio.c``, compiled here with the system C compiler) makes every
write, fsync, truncate, rename or link into the store fail from the Nth one on, with ENOSPC (a
full disk) or EIO (a failing device), in SQLite, DuckDB and deltalake's Rust code alike. For each
N the command runs in a child process against a fresh copy of the same store; afterwards, with
a healthy disk:

* the child failed with a :class:`featurekit.StorageError` saying to free space and run again
  (any other exception fails the test: it would be an unexplained crash);
* the registry loads and every earlier state reads back identical;
* the current state is the old one or the new one, never a mix, offline and online;
* running the same command again converges to the result of a run that never failed, without
  duplicate rows.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import featurekit as fk
from tests.conftest import BASIC_FEATURES, trips_table, ts
from tests.reliability._fork_server import ForkServer
from tests.reliability.conftest import duplicate_rows, offline_rows, online_rows, subprocess_env

pytestmark = pytest.mark.slow

SHIM = Path(__file__).parent / "iofail" / "failio.c"
ROWS = [(d % 5, ts(d % 9, d % 24), ts(d % 9, d % 24), 1 + d % 3, 3, float(d)) for d in range(120)]
PUSHED = [(d % 7, ts(9, d), ts(9, d), 1, 2, 100.0 + d) for d in range(12)]
SPINE = pa.table(
    {
        "driver_id": pa.array([0, 1, 2, 3, 4, 5, 6], pa.int64()),
        "event_timestamp": pa.array([ts(9, 23)] * 7, pa.timestamp("us", tz="UTC")),
    }
)

# Every write of a materialization fails in turn; push and apply share its write paths (registry,
# Delta, online store), so every second one of theirs keeps the suite within minutes.
STRIDE = {"materialize": 1, "push": 2, "apply": 2}
COMMANDS = {
    "materialize": "store.materialize('2026-01-01', '2026-01-10')",
    "push": f"store.push('driver_stats', trips_table({PUSHED!r}), to='online_and_offline')",
    "apply": "store.apply()",
}
CHILD = """
import datetime
import sys
import featurekit as fk
from tests.conftest import trips_table
try:
    with fk.FeatureStore(sys.argv[1], progress=False) as store:
        {command}
except fk.FeaturekitError as exc:
    print(type(exc).__name__, exc)
    sys.exit(1)
except BaseException:
    import traceback
    traceback.print_exc()
    sys.exit(2)
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "the I/O failure tests need a C compiler (gcc) to build their LD_PRELOAD shim"
    target = tmp_path_factory.mktemp("shim") / "failio.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(target), str(SHIM), "-ldl"], check=True)
    return target


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 applied and [day 0, day 4) materialized; the source changes before the commands run."""
    root = tmp_path_factory.mktemp("base") / "repo"
    (root / "data").mkdir(parents=True)
    (root / "features.py").write_text(textwrap.dedent(BASIC_FEATURES))
    import pyarrow.parquet as pq

    pq.write_table(trips_table(ROWS), root / "data" / "trips.parquet")
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(4))
    changed = BASIC_FEATURES.replace('avg_trip_km=pl.col("distance_km")', 'avg_trip_km=pl.col("distance_km") + 1')
    (root / "changed_features.py.txt").write_text(textwrap.dedent(changed))
    return root


@pytest.fixture(scope="module")
def children(shim: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """The children's fork server, the shim preloaded (inert until a child sets FAILIO_PREFIX)."""
    env = {**subprocess_env(), "LD_PRELOAD": str(shim)}
    folder = tmp_path_factory.mktemp("children")
    server = ForkServer(env, folder / "logs", folder)
    yield server
    server.close()


def run_child(children: ForkServer, repo: Path, command: str, fail_at: int | None, count: Path | None = None):
    """The command in a child with the shim armed for the repo's store (failing from write ``fail_at`` on)."""
    env: dict[str, str | None] = {
        "FAILIO_PREFIX": str(repo / ".featurekit"),
        "FAILIO_AT": None if fail_at is None else str(fail_at),
        "FAILIO_ERRNO": None if fail_at is None else "EIO" if fail_at % 2 else "ENOSPC",
        "FAILIO_COUNT": None if count is None else str(count),
    }
    script = textwrap.dedent(CHILD).format(command=COMMANDS[command])
    return children.run(
        ["-c", script, str(repo)],
        repo.parent,
        120,
        env=env,
        start_calls=("failio_reset",),
        exit_calls=("failio_report",),
    )


def state(repo: Path, as_of: int | None = None) -> dict[str, Any]:
    """What readers see: the head, the applied versions, the training set, the online rows."""
    with fk.FeatureStore(repo, progress=False) as store:
        head = store.registry.head_commit()
        applied = store.registry.active()["driver_stats"].version
        materialized = store.registry.last_materialization(applied.id)
        try:
            # Read through the registry (as_of): after a failed apply the repo's code is ahead of it.
            at = as_of if as_of is not None else head
            training: pa.Table | None = store.training_set(SPINE, ["driver_stats"], as_of=at).to_arrow()
        except fk.DataError:  # a newly applied version has no data yet
            training = None
    duplicates = []
    if materialized is not None:
        data = offline_rows(repo / ".featurekit", "driver_stats", applied.version, materialized.data_version)
        duplicates = duplicate_rows(data, ["driver_id"], "event_timestamp")
    return {
        "head": head,
        "applied": applied.version,
        "training": training,
        "online": online_rows(repo / ".featurekit"),
        "duplicates": duplicates,
    }


def same(a: pa.Table | None, b: pa.Table | None) -> bool:
    return a is None if b is None else a is not None and a.equals(b)


def prepare(base: Path, target: Path, command: str) -> Path:
    shutil.copytree(base, target)
    if command == "apply":
        (target / "features.py").write_text((target / "changed_features.py.txt").read_text())
    return target


def rerun(repo: Path, command: str) -> None:
    """The same command again, on a healthy disk (in this process: the child's code, no shim)."""
    with fk.FeatureStore(repo, progress=False) as store:
        exec(COMMANDS[command], {"store": store, "trips_table": trips_table, "datetime": datetime})  # noqa: S102 -- our own fixed text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_failing_write_leaves_the_store_intact(command: str, base: Path, children: ForkServer, tmp_path: Path):
    before = state(base)
    clean = prepare(base, tmp_path / "clean", command)
    counter = tmp_path / "count"
    done = run_child(children, clean, command, None, counter)
    assert done.returncode == 0, done.stdout + done.stderr
    operations = int(counter.read_text())
    assert operations > 3, "the shim saw no writes: is LD_PRELOAD effective?"
    after = state(clean)
    assert after["head"] > before["head"]
    outcomes: dict[str, int] = {}
    for n in sorted({*range(1, operations + 1, STRIDE[command]), operations}):
        repo = prepare(base, tmp_path / f"n{n}", command)
        failed = run_child(children, repo, command, n)
        if failed.returncode == 0:
            # Only writes whose failure is harmless were left (SQLite's checkpoint at close, the
            # lock file's pid note): the command completed, and its result must be the clean one.
            assert same(state(repo)["training"], after["training"]), f"write {n}: success with a wrong result"
            outcomes["completed"] = outcomes.get("completed", 0) + 1
            shutil.rmtree(repo)
            continue
        assert failed.returncode == 1, f"write {n}/{operations}: {failed.stdout}{failed.stderr}"
        assert failed.stdout.startswith("StorageError "), failed.stdout
        assert "Free disk space or fix the device" in failed.stdout
        seen = state(repo, as_of=before["head"])
        assert same(seen["training"], before["training"])  # every earlier state reads back the same
        now = state(repo)
        outcome = _which(now, before, after)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        rerun(repo, command)
        converged = state(repo)
        assert same(converged["training"], after["training"]), f"write {n}: re-run did not converge"
        assert converged["applied"] == after["applied"]
        assert converged["online"] == after["online"], f"write {n}: online store did not converge"
        assert converged["duplicates"] == []
        shutil.rmtree(repo)
    assert outcomes.get("old", 0) > 0  # failures before the commit point were exercised


def _which(now: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> str:
    """Whether readers see the old state or the new one (offline), with online rows of either."""
    if now["applied"] == before["applied"] and same(now["training"], before["training"]):
        offline = "old"
    else:
        assert now["applied"] == after["applied"], "readers see neither the old nor the new applied version"
        assert same(now["training"], after["training"]), "readers see neither the old nor the new training set"
        offline = "new"
    for table, rows in now["online"].items():
        old_rows, new_rows = before["online"].get(table, {}), after["online"].get(table, {})
        for key, row in rows.items():
            assert row in (old_rows.get(key), new_rows.get(key)), f"online {table}[{key}] is {row}: garbage"
    return offline
