"""Checks before commit: each built-in fails and passes, fail vs warn, stored results, metadata-only edits,
bad declarations, the CheckError message, pushes, and a failing check leaving the store byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import textwrap
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import featurekit as fk
from featurekit.cli import cli
from featurekit.offline.tables import OfflineTables
from featurekit.quality.inspection import BACKGROUND_ROWS
from tests.conftest import T0, RepoFactory, trips_table, ts

HEAD = """
from datetime import timedelta
import polars as pl
import featurekit as fk
from featurekit import agg

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")


def long_trips(df: pl.DataFrame) -> tuple[bool, float]:
    longest = df["avg_trip_km"].max()
    return longest is None or longest < 100, longest
"""

VIEW = """
@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7), checks=[{checks}], on_check_failure="{on}")
def driver_stats(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select(
        "driver_id", "event_timestamp", "created",
        conv_rate=pl.col("accepted") / pl.col("offered"),
        avg_trip_km=pl.col("distance_km"),
    )
"""

WINDOW_VIEW = """
@fk.window_view(entity=driver, source=trips, windows=[timedelta(days=1)], aggregations=[agg.sum("distance_km")],
                checks=[{checks}], on_check_failure="{on}")
def driver_activity(trips: pl.DataFrame) -> pl.DataFrame:
    return trips.select("driver_id", "event_timestamp", "created", "distance_km")
"""

Row = tuple[int, datetime, datetime, Any, Any, float]


def good(day: float, driver: int = 1, km: float = 5.0) -> Row:
    return (driver, ts(day), ts(day), 3, 4, km)


def features(checks: str, on: str = "fail", template: str = VIEW) -> str:
    return HEAD + template.format(checks=checks, on=on)


def store_with(
    make_repo: RepoFactory, open_store: Any, checks: str, rows: list[Row], on: str = "fail", template: str = VIEW
) -> fk.FeatureStore:
    root = make_repo(features(checks, on, template), {"data/trips.parquet": trips_table(rows)})
    store: fk.FeatureStore = open_store(root)
    store.apply()
    return store


def rewrite(store: fk.FeatureStore, rows: list[Row]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(trips_table(rows), store.root / "data" / "trips.parquet")


# -- each built-in: a failing and a passing case --------------------------------------------------------

BASE = [good(1, 1), good(1.5, 2), good(2, 3), good(2.5, 1)]
CASES = [
    # check, rows that pass, rows that fail, the observed value of the failing rows
    ('fk.check.not_null("conv_rate", max_fraction=0.25)', [*BASE[:3], (1, ts(2.5), ts(2.5), None, 4, 5.0)],
     [*BASE[:2], (2, ts(2), ts(2), None, 4, 5.0), (1, ts(2.5), ts(2.5), None, 4, 5.0)], 0.5),
    ('fk.check.not_null("conv_rate")', BASE, [*BASE[:3], (1, ts(2.5), ts(2.5), 0, 0, 5.0)], 0.25),  # 0/0: NaN
    ('fk.check.between("conv_rate", 0, 1)', BASE, [*BASE[:3], (1, ts(2.5), ts(2.5), 5, 4, 5.0)], 1),
    ('fk.check.between("avg_trip_km", None, 10)', BASE, [*BASE[:3], good(2.5, 1, km=11.0)], 1),
    ("fk.check.unique_keys()", BASE, [*BASE, good(1, 1, km=7.0)], 1),
    ("fk.check.row_count(min=4)", BASE, BASE[:3], 3),
    ("fk.check.row_count(max=4)", BASE, [*BASE, good(2.7, 2)], 5),
    ("fk.check.freshness(max_age=timedelta(hours=12))", BASE, BASE[:3], 86_400.0),  # window ends at day 3
    ("fk.check.custom(long_trips)", BASE, [*BASE[:3], good(2.5, 1, km=500.0)], 500.0),
]  # fmt: skip


@pytest.mark.parametrize(("check", "passing", "failing", "observed"), CASES, ids=[c[0] for c in CASES])
def test_each_builtin_passes_and_fails(
    make_repo: RepoFactory, open_store: Any, check: str, passing: list[Row], failing: list[Row], observed: Any
) -> None:
    store = store_with(make_repo, open_store, check, passing)
    store.materialize(ts(0), ts(3))
    (stored,) = store.check_results("driver_stats")
    assert stored.passed, stored
    assert [r.status for r in stored.results] == ["passed"]

    rewrite(store, failing)
    with pytest.raises(fk.CheckError) as caught:
        store.materialize(ts(0), ts(3))
    (result,) = [r for r in caught.value.results if not r.passed]
    assert result.observed == pytest.approx(observed)
    assert result.check in str(caught.value)
    assert len(store.check_results("driver_stats")) == 1  # the refused window stored nothing


def test_unique_keys_compare_created_time_and_ignore_hash_neighbours(make_repo: RepoFactory, open_store: Any) -> None:
    # Same keys and event time but another created time: distinct rows (a correction), not duplicates.
    rows = [good(1), (1, ts(1), ts(1.1), 3, 4, 6.0), *[good(1 + i / 1000, driver=i) for i in range(2, 2000)]]
    store = store_with(make_repo, open_store, "fk.check.unique_keys()", rows)
    store.materialize(ts(0), ts(3))
    (stored,) = store.check_results("driver_stats")
    assert stored.results[0].observed == 0


def test_between_counts_nan_as_outside_and_ignores_nulls(make_repo: RepoFactory, open_store: Any) -> None:
    rows = [*BASE, (2, ts(2.2), ts(2.2), None, 4, 5.0)]  # a null conv_rate is ignored
    store = store_with(make_repo, open_store, 'fk.check.between("conv_rate", 0, 1)', rows)
    store.materialize(ts(0), ts(3))
    rewrite(store, [*rows, (3, ts(2.3), ts(2.3), 0, 0, 5.0)])  # 0/0 is NaN: not in [0, 1]
    with pytest.raises(fk.CheckError, match=r"1 of 5 values outside"):
        store.materialize(ts(0), ts(3))


# -- the error message, fail vs warn -----------------------------------------------------------------------


def test_check_error_names_view_check_observed_threshold_and_five_rows(make_repo: RepoFactory, open_store: Any) -> None:
    bad = [(d, ts(1, d), ts(1, d), 9, 4, 5.0) for d in range(8)]  # conv_rate 2.25 for 8 drivers
    store = store_with(make_repo, open_store, 'fk.check.between("conv_rate", 0, 1), fk.check.row_count(min=1)', bad)
    with pytest.raises(fk.CheckError) as caught:
        store.materialize(ts(0), ts(3))
    text = str(caught.value)
    assert "feature view 'driver_stats' v1 (" in text
    assert "features.py:" in text
    assert "failed 1 of 2 checks" in text
    assert "nothing was committed" in text
    assert "between(conv_rate, 0, 1): observed 8, threshold: every value in [0, 1]" in text
    assert "8 of 8 values outside; values range from 2.25 to 2.25" in text
    offending = [line for line in text.splitlines() if "'conv_rate': 2.25" in line]
    assert len(offending) == 5  # up to five rows, with keys and timestamps
    assert "'driver_id': 0" in offending[0]
    assert "'event_timestamp'" in offending[0]
    assert store.registry.last_materialization(store.registry.version("driver_stats", 1).id) is None
    assert store.check_results("driver_stats") == []


def test_warn_commits_records_and_warns(make_repo: RepoFactory, open_store: Any) -> None:
    rows = [*BASE, (1, ts(2.7), ts(2.7), 5, 4, 5.0)]
    store = store_with(make_repo, open_store, 'fk.check.between("conv_rate", 0, 1)', rows, on="warn")
    with pytest.warns(fk.CheckWarning, match=r"committed anyway") as caught:
        (result,) = store.materialize(ts(0), ts(3))
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert result.rows == 5
    (stored,) = store.check_results("driver_stats")
    assert not stored.passed
    assert stored.data_version == result.data_version
    (check,) = stored.results
    assert (check.status, check.on_failure, check.observed) == ("failed", "warn", 1)
    assert check.rows[0]["conv_rate"] == 1.25
    shown = CliRunner().invoke(cli, ["--repo", str(store.root), "show", "driver_stats"]).output
    assert "last checks: FAILED (1 of 1 checks, committed: warn) at data version 0" in shown
    online = store.online_features([{"driver_id": 1}], ["driver_stats:conv_rate"], at=ts(2.8)).to_dict()
    assert online["conv_rate"] == [1.25]  # committed and loaded online


def test_a_warning_raised_as_an_error_comes_after_the_commit(make_repo: RepoFactory, open_store: Any) -> None:
    """With ``-W error`` the caller gets the CheckWarning as an exception, but the window was committed."""
    rows = [*BASE, (1, ts(2.7), ts(2.7), 5, 4, 5.0)]
    store = store_with(make_repo, open_store, 'fk.check.between("conv_rate", 0, 1)', rows, on="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error", fk.CheckWarning)
        with pytest.raises(fk.CheckWarning):
            store.materialize(ts(0), ts(3))
    (stored,) = store.check_results("driver_stats")
    assert stored.data_version == 0
    assert store.registry.online_pending(store.show("driver_stats").version.id) == []  # loaded online too


def test_checks_edited_after_apply_are_checked_against_the_applied_output(
    make_repo: RepoFactory, open_store: Any
) -> None:
    store = store_with(make_repo, open_store, 'fk.check.not_null("conv_rate")', BASE)
    (store.root / "features.py").write_text(textwrap.dedent(features('fk.check.not_null("conv")')))
    edited = open_store(store.root)
    with pytest.raises(fk.DefinitionError, match=r"check not_null\(conv\) of feature view 'driver_stats' names no"):
        edited.materialize(ts(0), ts(3))
    assert edited.registry.last_materialization(edited.show("driver_stats").version.id) is None


# -- results stored per commit, readable from Python and the CLI -------------------------------------------


def test_results_are_stored_per_data_version_and_shown_by_the_cli(make_repo: RepoFactory, open_store: Any) -> None:
    checks = 'fk.check.not_null("conv_rate", max_fraction=0.5), fk.check.row_count(min=1), fk.check.unique_keys()'
    store = store_with(make_repo, open_store, checks, BASE)
    first = store.materialize(ts(0), ts(2))[0]
    second = store.materialize(ts(2), ts(3))[0]
    stored = store.check_results("driver_stats")
    assert [(c.data_version, c.mode, c.window) for c in stored] == [
        (first.data_version, "window", (ts(0), ts(2))),
        (second.data_version, "window", (ts(2), ts(3))),
    ]
    assert [r.check for r in stored[0].results] == ["not_null(conv_rate)", "row_count(min=1)", "unique_keys()"]
    assert [r.observed for r in stored[0].results] == [0.0, 2, 0]
    assert store.check_results("driver_stats", version=1) == stored
    assert store.check_results("driver_stats@v1") == stored

    runner = CliRunner()
    text = runner.invoke(cli, ["--repo", str(store.root), "checks", "driver_stats"], catch_exceptions=False)
    assert text.exit_code == 0, text.output
    assert "driver_stats v1 data version" in text.output
    assert "row_count(min=1): passed, observed 2" in text.output
    lines = runner.invoke(cli, ["--repo", str(store.root), "checks", "driver_stats", "--json"]).output.splitlines()
    assert [json.loads(line)["data_version"] for line in lines] == [first.data_version, second.data_version]
    shown = runner.invoke(cli, ["--repo", str(store.root), "show", "driver_stats"]).output
    assert "checks (on failure: fail): not_null(conv_rate) (null or NaN fraction <= 0.5)" in shown
    assert f"\n  last checks: passed at data version {second.data_version}\n" in shown


def test_a_view_without_checks_stores_no_results(make_repo: RepoFactory, open_store: Any) -> None:
    store = store_with(make_repo, open_store, "", BASE)
    store.materialize(ts(0), ts(3))
    assert store.check_results("driver_stats") == []
    assert "checks" not in store.show("driver_stats").metadata


# -- checks are metadata ------------------------------------------------------------------------------------


def test_changing_checks_is_a_metadata_change(make_repo: RepoFactory, open_store: Any) -> None:
    store = store_with(make_repo, open_store, "", BASE)
    store.materialize(ts(0), ts(3))
    fingerprint = store.show("driver_stats").version.fingerprint
    path = store.root / "features.py"
    edits = [
        'fk.check.not_null("conv_rate"), fk.check.custom(long_trips, name="short_trips")',
        'fk.check.not_null("conv_rate", max_fraction=0.1), fk.check.custom(long_trips)',
        "",
    ]
    for checks in edits:
        path.write_text(textwrap.dedent(features(checks, on="warn")))
        reopened = fk.FeatureStore(store.root, progress=False)
        try:
            plan = reopened.apply()
            (change,) = plan.changes
            assert (change.kind, change.old_version, change.new_version) == ("metadata", 1, 1), str(plan)
            info = reopened.show("driver_stats")
            assert info.version.fingerprint == fingerprint
            assert reopened.registry.last_materialization(info.version.id).data_version == 0  # no new data
        finally:
            reopened.close()
    assert "checks" in str(change)
    assert "on_check_failure" in str(change)


def test_custom_checks_record_their_name_in_metadata(make_repo: RepoFactory, open_store: Any) -> None:
    checks = 'fk.check.custom(long_trips), fk.check.custom(long_trips, name="km")'
    store = store_with(make_repo, open_store, checks, BASE)
    recorded = store.show("driver_stats").metadata["checks"]
    assert [c["name"] for c in recorded] == ["custom(long_trips)", "custom(km)"]


# -- bad declarations ---------------------------------------------------------------------------------------


def test_bad_declarations_are_reported_at_load_with_their_lines(make_repo: RepoFactory, open_store: Any) -> None:
    checks = """
        fk.check.not_null("conv_rate", max_fraction=2),
        fk.check.between("conv_rate", 1, 0),
        fk.check.between("conv_rate", None, None),
        fk.check.row_count(min=-1),
        fk.check.row_count(min=5, max=2),
        fk.check.freshness(max_age=timedelta(0)),
        fk.check.freshness(max_age=3600),
        fk.check.custom(42),
        "not a check",
    """
    root = make_repo(features(checks, on="explode"), {"data/trips.parquet": trips_table(BASE)})
    with pytest.raises(fk.DefinitionError) as caught:
        open_store(root).plan()
    problems = caught.value.problems
    assert len(problems) == 10, problems
    expected = [
        "on_check_failure must be 'fail' or 'warn', got 'explode'",
        "max_fraction must be a number from 0 to 1, got 2",
        "low 1 is above high 0",
        "needs low or high (or both)",
        "min must be a whole number >= 0 or None, got -1",
        "min 5 is above max 2",
        "max_age must be a positive timedelta",
        "max_age must be a positive timedelta, e.g. timedelta(hours=2), got 3600",
        "needs a function of the output frame",
        "check 'not a check' is not one of fk.check's",
    ]
    for problem, text in zip(problems, expected, strict=True):
        assert text in problem
        assert str(root / "features.py") + ":" in problem


def test_a_check_of_a_missing_or_unsuitable_column_is_refused_at_apply(make_repo: RepoFactory, open_store: Any) -> None:
    checks = 'fk.check.not_null("conv_rat"), fk.check.between("event_timestamp", 0, 1)'
    root = make_repo(features(checks), {"data/trips.parquet": trips_table(BASE)})
    with pytest.raises(fk.DefinitionError) as caught:
        open_store(root).apply()
    first, second = caught.value.problems
    assert "check not_null(conv_rat) of feature view 'driver_stats' names no column" in first
    assert "features.py:" in first
    assert "'conv_rate'" in first
    assert "needs a numeric column; 'event_timestamp' is timestamp[us, tz=UTC]" in second


def test_a_custom_check_that_raises_or_answers_badly_names_itself(make_repo: RepoFactory, open_store: Any) -> None:
    store = store_with(make_repo, open_store, "fk.check.custom(lambda df: df['nope'], name='broken')", BASE)
    with pytest.raises(fk.FeatureFunctionError, match=r"check custom\(broken\) of feature view 'driver_stats'"):
        store.materialize(ts(0), ts(3))
    store = store_with(make_repo, open_store, "fk.check.custom(lambda df: True, name='bare')", BASE)
    with pytest.raises(fk.FeatureFunctionError, match=r"returns \(ok, observed\)"):
        store.materialize(ts(0), ts(3))


# -- checks on push -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", ["online", "online_and_offline"])
def test_checks_run_on_push(make_repo: RepoFactory, open_store: Any, to: str) -> None:
    checks = 'fk.check.between("conv_rate", 0, 1), fk.check.row_count(min=1000), fk.check.freshness(timedelta(days=1))'
    store = store_with(make_repo, open_store, checks, BASE, on="warn")
    with pytest.warns(fk.CheckWarning, match=r"row_count\(min=1000\): observed 4"):
        store.materialize(ts(0), ts(3))
    now = datetime.now(UTC)
    with pytest.warns(fk.CheckWarning) as caught:
        store.push("driver_stats", trips_table([(1, now, now, 9, 4, 5.0)]), to=to)  # type: ignore[arg-type]
    assert "between(conv_rate, 0, 1)" in str(caught[0].message)
    assert "freshness" not in str(caught[0].message)
    assert "row_count" not in str(caught[0].message)
    stored = store.check_results("driver_stats")
    if to == "online":  # no registry commit, so nothing stored
        assert len(stored) == 1
        return
    pushed = stored[-1]
    assert pushed.mode == "push"
    assert [r.status for r in pushed.results] == ["failed", "skipped", "passed"]


def test_freshness_of_a_push_is_measured_against_now(make_repo: RepoFactory, open_store: Any) -> None:
    store = store_with(make_repo, open_store, "fk.check.freshness(timedelta(hours=1))", BASE)
    with pytest.raises(fk.CheckError, match=r"before now"):
        store.push("driver_stats", trips_table([good(3)]))
    now = datetime.now(UTC)
    store.push("driver_stats", trips_table([(1, now, now, 3, 4, 5.0)]))


# -- a failing check leaves the store byte-for-byte as it was -----------------------------------------------


def store_state(store: fk.FeatureStore) -> tuple[dict[str, str], list[str]]:
    """A hash of every file under the store folder but the registry, and the registry's content."""
    folder = store.store_root
    files = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("registry.db")
    }
    folders = sorted(str(p.relative_to(folder)) + "/" for p in folder.rglob("*") if p.is_dir())
    with sqlite3.connect(folder / "registry.db") as db:
        registry = list(db.iterdump())
    return {**files, **dict.fromkeys(folders, "folder")}, registry


def assert_unchanged(before: tuple[dict[str, str], list[str]], after: tuple[dict[str, str], list[str]]) -> None:
    (files_before, registry_before), (files_after, registry_after) = before, after
    # A writer's lock file is the handle of an OS lock, never data: it may appear (empty) and stays.
    appeared = {k: v for k, v in files_after.items() if k not in files_before}
    assert all(k.startswith("locks") and v in ("folder", hashlib.sha256(b"").hexdigest()) for k, v in appeared.items())
    assert {k: v for k, v in files_after.items() if k in files_before} == files_before
    assert registry_after == registry_before


BAD = (4, ts(2.7), ts(2.7), 1, 4, 500.0)  # a 500 km trip


@pytest.mark.parametrize("template", [VIEW, WINDOW_VIEW], ids=["feature_view", "window_view"])
@pytest.mark.parametrize("operation", ["first window", "later window", "push online", "push online_and_offline"])
def test_a_failing_check_leaves_the_store_as_it_was(
    make_repo: RepoFactory, open_store: Any, template: str, operation: str
) -> None:
    column = "avg_trip_km" if template is VIEW else "distance_km"
    name = "driver_stats" if template is VIEW else "driver_activity"
    store = store_with(make_repo, open_store, f'fk.check.between("{column}", 0, 100)', BASE, template=template)
    if operation != "first window":
        store.materialize(ts(0), ts(2))
        store.push(name, trips_table([good(2.1, 9)]), to="online_and_offline")
    rewrite(store, [*BASE, BAD])
    before = store_state(store)
    if operation.startswith("push"):
        target = operation.removeprefix("push ")
        with pytest.raises(fk.CheckError, match=r"nothing was committed"):
            store.push(name, trips_table([BAD]), to=target)  # type: ignore[arg-type]
    else:
        with pytest.raises(fk.CheckError, match=r"nothing was committed"):
            store.materialize(ts(2) if operation == "later window" else ts(0), ts(3))
    assert_unchanged(before, store_state(store))
    if operation == "first window":
        assert not (store.store_root / "offline").exists()  # the aborted first write's folders are gone too


def test_a_large_batch_is_checked_and_profiled_beside_the_write(make_repo: RepoFactory, open_store: Any) -> None:
    # A batch of BACKGROUND_ROWS rows or more is checked and profiled on the inspection's worker
    # thread while Delta writes it: its verdicts, errors and profile are the same as inline.
    n = BACKGROUND_ROWS + 4_000
    rows = [good(2 * i / n, 1 + i % 5_000, km=float(i % 97)) for i in range(n)]
    checks = 'fk.check.between("avg_trip_km", 0, 100), fk.check.unique_keys(), fk.check.row_count(min=1000)'
    store = store_with(make_repo, open_store, checks, rows)
    (result,) = store.materialize(ts(0), ts(3))
    assert result.rows == n
    (stored,) = store.check_results("driver_stats")
    assert [(r.observed, r.passed) for r in stored.results] == [(0, True), (0, True), (n, True)]
    profile = store.profile("driver_stats").columns["avg_trip_km"]
    assert (profile.rows, profile.min, profile.max, profile.distinct) == (n, 0.0, 96.0, 97)

    rewrite(store, [*rows, BAD])
    before = store_state(store)
    with pytest.raises(fk.CheckError, match=r"between\(avg_trip_km.*observed 1"):
        store.materialize(ts(0), ts(3))
    assert_unchanged(before, store_state(store))

    store = store_with(make_repo, open_store, "fk.check.custom(lambda df: df['nope'], name='broken')", rows)
    with pytest.raises(fk.FeatureFunctionError, match=r"check custom\(broken\) of feature view 'driver_stats'"):
        store.materialize(ts(0), ts(3))
    assert not store.check_results("driver_stats")


def test_an_aborted_write_removes_exactly_the_files_it_created(tmp_path: Path) -> None:
    """Past Delta's target file size the writer has finished files before the input fails: they go."""
    tables = OfflineTables(tmp_path)
    rows = 4_000_000  # 128 MB of random floats: at least one finished Parquet file before the failure
    window = (T0, T0 + timedelta(days=1))
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "t": pa.array(np.full(rows, int(T0.timestamp() * 1e6)), pa.timestamp("us", tz="UTC")),
            **{f"x{i}": rng.random(rows) for i in range(4)},
        }
    )

    def failing() -> Any:
        yield from table.to_batches(max_chunksize=1_000_000)
        raise fk.CheckError("refused")

    def files() -> dict[str, int]:
        return {str(p.relative_to(tmp_path)): p.stat().st_size for p in tmp_path.rglob("*")}

    with tables.lock("v"):
        for existing in (False, True):
            before = files()
            reader = pa.RecordBatchReader.from_batches(table.schema, failing())
            with pytest.raises(Exception, match="refused"):
                tables.write_window("v", 1, reader, timestamp_field="t", window=window, note={}, scope="all")
            assert files() == before
            if not existing:  # then the same over a table with a commit
                assert not tables.path("v", 1).exists()
                first = pa.RecordBatchReader.from_batches(table.schema, table.slice(0, 10).to_batches())
                tables.write_window("v", 1, first, timestamp_field="t", window=window, note={}, scope="all")


def test_the_feature_server_answers_a_refused_push_with_422_and_the_client_raises_check_error() -> None:
    from featurekit.server import problems

    status, body = problems.from_error(fk.CheckError("feature view 'driver_stats' v1: failed 1 of 1 checks"))
    assert status == 422
    raised = problems.to_error(status, body)
    assert isinstance(raised, fk.CheckError)
    assert "failed 1 of 1 checks" in str(raised)


# -- the built-ins against a brute-force oracle, over random outputs split into entity batches --------------

TIMES = [T0 + timedelta(hours=h) for h in range(3)]
value = st.one_of(st.none(), st.just(math.nan), st.floats(-2, 3, allow_nan=False))
output_row = st.tuples(st.integers(0, 4), st.sampled_from(TIMES), st.one_of(st.none(), st.sampled_from(TIMES)), value)


@fk.feature_view(
    entity=fk.Entity("driver", join_keys=["driver_id"]),
    source=fk.FileSource("trips.parquet", created_timestamp_field="created"),
    checks=[fk.check.not_null("x", max_fraction=0.3), fk.check.between("x", 0, 1), fk.check.unique_keys()],
    on_check_failure="warn",  # conclude() decides without raising; the observed values are compared
)
def random_output(rows: Any) -> Any:
    return rows


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(output_row, max_size=40), batches=st.integers(1, 4))
def test_built_in_checks_equal_a_brute_force_oracle(rows: list[tuple[Any, ...]], batches: int) -> None:
    from featurekit.quality.checks import CheckRun
    from featurekit.quality.profiling import ColumnTally, ProfileState
    from featurekit.registry import ViewVersion

    stamp = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("driver_id", pa.int64()), ("event_timestamp", stamp), ("created", stamp), ("x", pa.float64())])
    version = ViewVersion(1, "random_output", 1, "f", "c", {}, schema, None, "", "here", 1)
    run = CheckRun(random_output, version, window=(T0, T0 + timedelta(days=1)), mode="window")
    # The same checks fed the profile's counts, as a materialization does: the same results, rows included.
    profiled = CheckRun(random_output, version, window=(T0, T0 + timedelta(days=1)), mode="window")
    profile = ProfileState.empty(schema, ["x"])
    # And fed the tally a large batch's checks get before its profile is done: the same counts.
    tallied = CheckRun(random_output, version, window=(T0, T0 + timedelta(days=1)), mode="window")
    tally = ColumnTally("numeric")
    for part in range(batches):  # every row of a driver in one batch, as materialize feeds them
        chosen = [dict(zip(schema.names, r, strict=True)) for r in rows if r[0] % batches == part]
        batch = pa.Table.from_pylist(chosen, schema=schema)
        run.add(batch)
        counts = profile.add(batch)
        profiled.add(batch, counts)
        own = tally.add(batch.column("x"))
        assert own == counts["x"]
        tallied.add(batch, {"x": own})
    run.conclude()
    profiled.conclude()
    tallied.conclude()
    assert profiled.results == run.results
    assert tallied.results == run.results
    missing = sum(1 for r in rows if r[3] is None or math.isnan(r[3]))
    outside = sum(1 for r in rows if r[3] is not None and not 0 <= r[3] <= 1)  # NaN is outside
    duplicates = len(rows) - len({r[:3] for r in rows})
    assert {r.kind: r.observed for r in run.results} == {
        "not_null": pytest.approx(missing / len(rows) if rows else 0.0),
        "between": outside,
        "unique_keys": duplicates,
    }
    assert [r.passed for r in run.results] == [
        (missing / len(rows) if rows else 0.0) <= 0.3,
        outside == 0,
        duplicates == 0,
    ]


def _typed(values: list[float | None], dtype: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(dtype):
        return pa.array([None if v is None else Decimal(str(v)) for v in values], dtype)
    if pa.types.is_integer(dtype):
        return pa.array([None if v is None else int(v) for v in values], dtype)
    return pa.array(values, dtype)


@pytest.mark.parametrize("dtype", [pa.float32(), pa.decimal128(9, 3), pa.int32()], ids=str)
def test_checks_fed_the_profiles_counts_equal_their_own_pass(dtype: pa.DataType) -> None:
    from featurekit.quality.checks import CheckRun
    from featurekit.quality.profiling import ColumnTally, ProfileState
    from featurekit.registry import ViewVersion

    stamp = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("driver_id", pa.int64()), ("event_timestamp", stamp), ("created", stamp), ("x", dtype)])
    version = ViewVersion(1, "random_output", 1, "f", "c", {}, schema, None, "", "here", 1)
    batches = [[0.5, None, 1.0], [2.0, -1.0, None], [0.75, 0.0]]  # the second fails between, the third not
    runs = [CheckRun(random_output, version, window=(T0, T0 + timedelta(days=1)), mode="window") for _ in range(3)]
    profile = ProfileState.empty(schema, ["x"])
    tally = ColumnTally("numeric")  # what a large batch's checks get before its profile is done
    for part, values in enumerate(batches):
        times = pa.array(TIMES[: len(values)], stamp)
        batch = pa.table([pa.array([part] * len(values)), times, times, _typed(values, dtype)], schema=schema)
        runs[0].add(batch)
        runs[1].add(batch, profile.add(batch))
        runs[2].add(batch, {"x": tally.add(batch.column("x"))})
    for run in runs:
        run.conclude()
    assert runs[1].results == runs[0].results
    assert runs[2].results == runs[0].results
    kinds = {r.kind: r for r in runs[0].results}
    assert kinds["between"].observed == 2
    assert len(kinds["between"].rows) == 2
    assert kinds["not_null"].observed == pytest.approx(2 / 8)
