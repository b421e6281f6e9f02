"""``featurekit verify``: a damaged store is reported file by file, and what is fine stays visible."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

import featurekit as fk
from featurekit.cli import cli
from featurekit.integrity import verify_store
from tests.conftest import trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (2, ts(1), ts(1), 3, 4, 3.0), (1, ts(5), ts(5), 1, 4, 5.0)]


@pytest.fixture
def repo(make_repo) -> Path:
    """Two data versions: [day 0, day 3) then [day 3, day 9) adds its own file."""
    root = make_repo(data={"data/trips.parquet": trips_table(ROWS)})
    with fk.FeatureStore(root, progress=False) as store:
        store.apply()
        store.materialize(ts(0), ts(3))
        store.materialize(ts(3), ts(9))
    return root


def table(root: Path) -> Path:
    return root / ".featurekit" / "offline" / "driver_stats" / "v1"


def new_file(root: Path) -> Path:
    """The data file the second materialization added (not referenced by data version 0)."""
    first = set(DeltaTable(str(table(root)), version=0).file_uris())
    second = set(DeltaTable(str(table(root)), version=1).file_uris())
    (added,) = second - first
    return Path(added.removeprefix("file://"))


def test_a_clean_store_is_ok(repo: Path):
    report = verify_store(repo)
    assert report.ok, report.problems
    assert len(report.fine) == 2
    assert report.files == 2
    result = CliRunner().invoke(cli, ["--repo", str(repo), "verify"])
    assert result.exit_code == 0
    assert "0 problems" in result.stdout


def test_a_truncated_file_is_named_and_older_versions_stay_fine(repo: Path):
    damaged = new_file(repo)
    damaged.write_bytes(damaged.read_bytes()[:40])
    report = verify_store(repo)
    assert not report.ok
    assert any(str(damaged) in p and "truncated" in p and "data version 1" in p for p in report.problems)
    assert any("data version 0" in f for f in report.fine)  # not hidden by the damage
    result = CliRunner().invoke(cli, ["--repo", str(repo), "verify"])
    assert result.exit_code == 1
    assert str(damaged) in result.stdout
    with fk.FeatureStore(repo, progress=False) as store:  # the earlier version still reads
        spine = trips_table([(1, ts(2), ts(2), 0, 0, 0.0)]).select(["driver_id", "event_timestamp"])
        assert store.training_set(spine, ["driver_stats:avg_trip_km"], as_of=2).to_arrow().to_pydict()[
            "avg_trip_km"
        ] == [1.0]


def test_a_missing_file_is_named(repo: Path):
    gone = new_file(repo)
    gone.unlink()
    report = verify_store(repo)
    assert any(str(gone) in p and "missing" in p for p in report.problems)


def test_a_garbage_registry_is_reported_and_the_tables_still_checked(repo: Path):
    registry = repo / ".featurekit" / "registry.db"
    for suffix in ("-wal", "-shm"):
        Path(str(registry) + suffix).unlink(missing_ok=True)
    registry.write_bytes(b"this is not a database" * 100)
    report = verify_store(repo)
    assert any("registry.db" in p and "unreadable" in p for p in report.problems)
    assert any("driver_stats v1 Delta version 1" in f for f in report.fine)
    result = CliRunner().invoke(cli, ["--repo", str(repo), "verify"])
    assert result.exit_code == 1


def test_online_tables_are_checked_against_the_registry(repo: Path):
    online = repo / ".featurekit" / "online.db"
    con = sqlite3.connect(online)
    con.execute('DROP TABLE "driver_stats__v1"')
    con.execute('CREATE TABLE "stray__v3" (__fk_key PRIMARY KEY, x)')
    con.commit()
    con.close()
    problems = verify_store(repo).problems
    assert any("driver_stats__v1 is missing" in p for p in problems)
    assert any("stray__v3 belongs to no registered view version" in p for p in problems)


def test_data_removed_by_gc_is_not_a_problem(repo: Path):
    with fk.FeatureStore(repo, progress=False) as store:
        store.materialize(ts(0), ts(9))  # replaces both windows
        report = store.gc(keep_days=0, keep_versions=1)
        assert report.files > 0
        assert store.check_integrity().ok
