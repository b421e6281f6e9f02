"""The time-travel commands: history, diff, show VIEW@vN, gc, training-set --as-of/--manifest/--known-at."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import featurekit as fk
from featurekit.manifest import load_manifest
from tests.conftest import store_files, trips_table, ts
from tests.test_cli_commands import ON_DEMAND, ROWS, error_line, run

V2 = ON_DEMAND.replace('avg_trip_km=pl.col("distance_km")', 'avg_trip_km=pl.col("distance_km") * 2')


@pytest.fixture
def two_versions(make_repo, tmp_path: Path) -> tuple[Path, Path, Path]:
    """v1 applied and materialized, a training set written, then v2 applied and materialized."""
    repo = make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)})
    spine = tmp_path / "spine.parquet"
    pl.DataFrame({"driver_id": [1, 2], "event_timestamp": [ts(3), ts(3)], "trip_km": [1.0, 2.0]}).write_parquet(spine)
    for args in (["apply"], ["materialize", "--start", "2026-01-01", "--end", "2026-01-06"]):
        assert run("--repo", str(repo), "-q", *args).exit_code == 0
    first = tmp_path / "t1.parquet"
    made = run("--repo", str(repo), "training-set", str(spine), "-f", "driver_stats", "-o", str(first))
    assert made.exit_code == 0
    assert "registry version 2" in made.stdout
    (repo / "features.py").write_text(V2)
    for args in (["apply"], ["materialize", "--start", "2026-01-01", "--end", "2026-01-06"]):
        assert run("--repo", str(repo), "-q", *args).exit_code == 0
    return repo, spine, first


def test_history_lists_applies_and_materializations(two_versions):
    repo, _, _ = two_versions
    text = run("--repo", str(repo), "history", "driver_stats").stdout.splitlines()
    assert len(text) == 4
    assert "apply" in text[0]
    assert "driver_stats v1" in text[0]
    assert "new" in text[0]
    assert "[2026-01-01T00:00:00+00:00, 2026-01-06T00:00:00+00:00) 3 rows -> data version 0" in text[1]
    assert "driver_stats v2" in text[2]
    assert "changed" in text[2]
    entries = [json.loads(line) for line in run("--repo", str(repo), "history", "--json").stdout.splitlines()]
    assert {e["view"] for e in entries} == {"driver_stats", "trip_risk"}
    assert all(e["registry_version"] >= 1 for e in entries)
    assert "no feature view 'nope'" in error_line(run("--repo", str(repo), "history", "nope"))


def test_diff_and_show_an_old_version(two_versions):
    repo, _, _ = two_versions
    shown = run("--repo", str(repo), "diff", "driver_stats", "v1", "v2")
    assert shown.exit_code == 0
    assert '+        avg_trip_km=pl.col("distance_km") * 2,' in shown.stdout
    assert '-        avg_trip_km=pl.col("distance_km"),' in shown.stdout
    old = run("--repo", str(repo), "show", "driver_stats@v1").stdout
    assert 'avg_trip_km=pl.col("distance_km"),' in old
    assert "v1 or 1" in error_line(run("--repo", str(repo), "diff", "driver_stats", "one", "v2"))
    assert "no version 7" in error_line(run("--repo", str(repo), "diff", "driver_stats", "v1", "7"))


def test_training_set_as_of_and_from_a_manifest(two_versions, tmp_path: Path):
    repo, spine, first = two_versions
    again = tmp_path / "again.parquet"
    result = run(
        "--repo", str(repo), "training-set", str(spine), "-f", "driver_stats", "-o", str(again), "--as-of", "2"
    )
    assert result.exit_code == 0
    assert pq.read_table(again).equals(pq.read_table(first))
    now = tmp_path / "now.parquet"
    assert run("--repo", str(repo), "training-set", str(spine), "-f", "driver_stats", "-o", str(now)).exit_code == 0
    assert pq.read_table(now).column("avg_trip_km").to_pylist() == [4.0, 6.0]  # v2 doubles
    replay = tmp_path / "replay.parquet"
    result = run("--repo", str(repo), "training-set", str(spine), "--manifest", str(first), "-o", str(replay))
    assert result.exit_code == 0
    assert pq.read_table(replay).equals(pq.read_table(first))
    assert load_manifest(replay).spine_digest == load_manifest(first).spine_digest
    other = tmp_path / "other.parquet"
    pl.DataFrame({"driver_id": [1], "event_timestamp": [ts(3)], "trip_km": [1.0]}).write_parquet(other)
    bad = run(
        "--repo", str(repo), "training-set", str(other), "--manifest", str(first), "-o", str(tmp_path / "x.parquet")
    )
    assert "spine differs" in error_line(bad)
    assert not (tmp_path / "x.parquet").exists()
    usage = run("--repo", str(repo), "training-set", str(spine), "-o", str(tmp_path / "y.parquet"))
    assert usage.exit_code == 2


def test_training_set_known_at(two_versions, tmp_path: Path):
    repo, spine, _ = two_versions
    out = tmp_path / "known.parquet"
    args = [
        "training-set",
        str(spine),
        "-f",
        "driver_stats:avg_trip_km",
        "-o",
        str(out),
        "--known-at",
        "2026-01-01T12:00",
    ]
    assert run("--repo", str(repo), *args).exit_code == 0
    assert pq.read_table(out).column("avg_trip_km").to_pylist() == [2.0, None]  # driver 2's row was created on day 1


def test_gc_dry_run_then_gc(two_versions):
    repo, _, _ = two_versions
    for _ in range(2):
        assert (
            run("--repo", str(repo), "-q", "materialize", "--start", "2026-01-01", "--end", "2026-01-06").exit_code == 0
        )
    before = store_files(repo)
    dry = run("--repo", str(repo), "gc", "--keep-days", "0", "--keep-versions", "1", "--dry-run")
    assert dry.exit_code == 0
    assert "would remove" in dry.stdout
    assert store_files(repo) == before
    done = run("--repo", str(repo), "gc", "--keep-days", "0", "--keep-versions", "1")
    assert "removed" in done.stdout
    assert len(store_files(repo)) < len(before)
    assert "keep_versions >= 1" in error_line(run("--repo", str(repo), "gc", "--keep-versions", "0"))


def test_to_parquet_stores_the_manifest_on_every_write_path(two_versions, tmp_path: Path):
    repo, spine, _ = two_versions
    with fk.FeatureStore(repo, progress=False) as store:
        streamed = store.training_set(spine, ["driver_stats"]).to_parquet(tmp_path / "duckdb.parquet")  # DuckDB COPY
        batched = store.training_set(spine, ["trip_risk"]).to_parquet(tmp_path / "batches.parquet")  # on-demand
        cached = store.training_set(spine, ["driver_stats"])
        cached.to_arrow()
        written = cached.to_parquet(tmp_path / "cached.parquet")
        for path in (streamed, batched, written):
            manifest = load_manifest(path)
            assert manifest.registry_version == store.registry.head_commit()
            rebuilt = store.training_set(spine, manifest=path).to_arrow()
            # DuckDB's writer marks never-null columns NOT NULL; values and types are the same
            assert pq.read_table(path).cast(rebuilt.schema).equals(rebuilt)
