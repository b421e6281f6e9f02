"""The CLI's hardening: repo detection, init, null explanations, empty skew checks, help, messages, start-up."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import polars as pl
import pytest

import featurekit as fk
from featurekit.cli import cli, cli_message, duration_text
from featurekit.progress import NoProgress, ProgressBar, make_progress, spinner
from tests.conftest import trips_table, ts
from tests.test_cli_commands import ON_DEMAND, ROWS, error_line, run


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)})


@pytest.fixture
def applied(repo: Path) -> Path:
    assert run("--repo", str(repo), "apply").exit_code == 0
    assert run("--repo", str(repo), "-q", "materialize", "--start", "2026-01-01", "--end", "2026-01-06").exit_code == 0
    return repo


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- item 15: get ------------------------------------------------------------------------------


def test_get_says_why_a_value_is_null(applied: Path):
    expired = run("--repo", str(applied), "get", "driver_id=1", "-f", "driver_stats:avg_trip_km")
    assert expired.exit_code == 0
    # driver 1's newest row is from 2026-01-03: with the 7-day TTL it expired on 2026-01-10
    assert "avg_trip_km: null  (expired at 2026-01-10T00:00:00+00:00" in expired.stdout
    assert "TTL of 7d" in expired.stdout
    assert "None" not in expired.stdout
    found = run("--repo", str(applied), "get", "driver_id=1", "-f", "driver_stats:avg_trip_km", "--at", "2026-01-05")
    assert "avg_trip_km: 2.0" in found.stdout
    unknown = run("--repo", str(applied), "get", "driver_id=99", "-f", "driver_stats", "--at", "2026-01-05")
    assert "conv_rate: null  (unknown entity: driver_stats v1 holds no row for it)" in unknown.stdout
    on_demand = run("--repo", str(applied), "get", "driver_id=99", "-f", "trip_risk", "-r", "trip_km=2")
    assert "risk: null  (computed on demand by trip_risk: null when its inputs are)" in on_demand.stdout
    bad_time = run("--repo", str(applied), "get", "driver_id=1", "-f", "driver_stats", "--at", "soon")
    assert "--at 'soon' is not an ISO-8601 timestamp" in error_line(bad_time)


def test_get_of_a_view_never_materialized(repo: Path):
    assert run("--repo", str(repo), "apply").exit_code == 0
    got = run("--repo", str(repo), "get", "driver_id=1", "-f", "driver_stats:conv_rate")
    assert "conv_rate: null  (driver_stats was never materialized; run `featurekit materialize`)" in got.stdout


# -- item 15: verify -f that compared nothing --------------------------------------------------


def test_verify_fails_when_nothing_was_compared(applied: Path):
    result = run("--repo", str(applied), "verify", "-f", "driver_stats")  # now: every value is past its TTL
    assert result.exit_code == 1
    assert "nothing was compared: every value is null on both sides" in result.stderr
    assert "driver_stats (data ends 2026-01-06T00:00:00+00:00, TTL 7d)" in result.stderr
    compared = run("--repo", str(applied), "verify", "-f", "driver_stats", "--at", "2026-01-05")
    assert compared.exit_code == 0, compared.output


# -- item 15: a folder that is not a repo ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["apply"],
        ["plan"],
        ["history"],
        ["verify"],
        ["get", "driver_id=1", "-f", "driver_stats"],
        ["materialize", "--start", "2026-01-01", "--end", "2026-01-02"],
    ],
)
def test_commands_outside_a_repo_fail_and_create_nothing(tmp_path: Path, args: list[str]):
    (tmp_path / "notes.txt").write_text("not a repo")
    result = run("--repo", str(tmp_path), *args)
    assert result.exit_code == 1
    assert f"no feature repo in {tmp_path}" in error_line(result)
    assert files_under(tmp_path) == ["notes.txt"]


def test_a_folder_with_only_featurekit_yaml_is_a_repo(tmp_path: Path):
    (tmp_path / "featurekit.yaml").write_text("store_dir: .featurekit\n")
    result = run("--repo", str(tmp_path), "list")
    assert result.exit_code == 0
    assert "no feature views applied" in result.stdout


# -- item 15/17: init --------------------------------------------------------------------------


def test_init_refuses_an_existing_repo_and_writes_nothing(tmp_path: Path):
    target = tmp_path / "repo"
    first = run("init", str(target))
    assert first.exit_code == 0
    assert "next steps:" in first.stdout
    assert f"featurekit --repo {target} materialize --start 2026-01-01 --end 2026-02-01" in first.stdout
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*")}
    again = run("init", str(target))
    assert again.exit_code == 1
    assert "already holds a feature repo; nothing written" in error_line(again)
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "features.py").write_text("# my own features\n")
    refused = run("init", str(mine))
    assert refused.exit_code == 1
    assert files_under(mine) == ["features.py"]
    assert (mine / "features.py").read_text() == "# my own features\n"


def test_init_into_a_folder_holding_example_data_writes_nothing(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "trips.parquet").write_text("mine")
    result = run("init", str(tmp_path))
    assert result.exit_code == 1
    assert "already has data/trips.parquet" in error_line(result)
    assert files_under(tmp_path) == ["data", "data/trips.parquet"]


# -- item 15: training-set reports what it wrote; item 18: progress ---------------------------


def test_training_set_prints_the_row_count_and_path(applied: Path, tmp_path: Path):
    spine = tmp_path / "spine.parquet"
    pl.DataFrame({"driver_id": [1, 2, 9], "event_timestamp": [ts(3)] * 3}).write_parquet(spine)
    out = tmp_path / "train.parquet"
    result = run("--repo", str(applied), "training-set", str(spine), "-f", "driver_stats", "-o", str(out))
    assert result.exit_code == 0
    assert f"wrote 3 rows to {out} (registry version 2)" in result.stdout
    assert result.stderr == ""  # not a terminal: no spinner


def test_progress_bar_and_spinner_draw_only_when_asked():
    assert isinstance(make_progress(False), NoProgress)
    assert isinstance(make_progress("auto"), NoProgress)  # the test's stderr is not a terminal
    assert isinstance(make_progress(True), ProgressBar)
    mine = NoProgress()
    assert make_progress(mine) is mine
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.start(10, "driver_stats v1")
    bar.advance(4)
    bar.advance(6)
    bar.finish()
    assert "driver_stats v1" in stream.getvalue()
    assert "10/10" in stream.getvalue()
    quiet, shown = io.StringIO(), io.StringIO()
    with spinner("building", False, stream=quiet):
        pass
    with spinner("building", True, stream=shown):
        pass
    assert quiet.getvalue() == ""
    assert shown.getvalue() != ""


# -- item 15: help, TTLs, start-up --------------------------------------------------------------


def test_help_summaries_are_whole_and_every_option_has_help():
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        summary = command.get_short_help_str(limit=45)
        assert not summary.endswith("..."), f"{name}: {summary!r}"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=3), "3h"),
        (timedelta(days=7), "7d"),
        (timedelta(days=1, hours=2), "1d 2h"),
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=2, seconds=30), "2m 30s"),
        (timedelta(milliseconds=500), "0.5s"),
    ],
)
def test_durations_read_like_people_write_them(delta: timedelta, text: str):
    assert duration_text(delta) == text


def test_show_prints_the_ttl_in_hours(make_repo):
    features = ON_DEMAND.replace("ttl=timedelta(days=7)", "ttl=timedelta(hours=3)")
    repo = make_repo(features, data={"data/trips.parquet": trips_table(ROWS)})
    assert run("--repo", str(repo), "apply").exit_code == 0
    shown = run("--repo", str(repo), "show", "driver_stats").stdout
    assert "  ttl: 3h\n" in shown
    assert "10800" not in shown


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(flag: str):
    code = (
        "import sys\n"
        "from featurekit.cli import main\n"
        f"sys.argv = ['featurekit', '{flag}']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('duckdb', 'polars', 'pandas', 'deltalake', 'pyarrow', 'numpy')\n"
        "print('heavy:', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "heavy: []" in done.stdout


def test_lazy_public_names_still_resolve():
    code = (
        "import sys\nimport featurekit as fk\n"
        "assert 'duckdb' not in sys.modules\n"
        "from featurekit import TrainingSet\n"
        "print(fk.FeatureStore.__name__, TrainingSet.__name__, 'FeatureStore' in dir(fk))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["FeatureStore", "TrainingSet", "True"]
    import featurekit as fk

    with pytest.raises(AttributeError, match="no attribute 'FeatureStor'"):
        _ = fk.FeatureStor  # type: ignore[attr-defined]


# -- item 16: messages ----------------------------------------------------------------------------


def test_errors_name_the_cli_options(applied: Path, tmp_path: Path):
    spine = tmp_path / "spine.parquet"
    pl.DataFrame({"driver_id": [1], "ts": [ts(3)]}).write_parquet(spine)
    out = tmp_path / "t.parquet"
    no_time = error_line(run("--repo", str(applied), "training-set", str(spine), "-f", "driver_stats", "-o", str(out)))
    assert "--timestamp-field" in no_time
    assert "timestamp_field=" not in no_time
    need = error_line(run("--repo", str(applied), "get", "driver_id=1", "-f", "trip_risk"))
    assert "-r trip_km=VALUE" in need
    assert "request=" not in need
    assert "--start" in error_line(run("--repo", str(applied), "materialize", "--start", "x", "--end", "2026-01-02"))


def test_cli_message_respells_api_parameters():
    assert cli_message("pass manifest= alone: it fixes ['features', 'as_of'] already") == (
        "pass --manifest alone: it fixes -f, --as-of already"
    )
    assert cli_message("features ['x'] come from more than one view; pass full_names=True") == (
        "features ['x'] come from more than one view; pass --full-names"
    )


BROKEN = """
from datetime import timedelta
import polars as pl
import featurekit as fk

driver = fk.Entity("driver", join_keys=["driver_id"])
trips = fk.FileSource("data/trips.parquet", timestamp_field="event_timestamp", created_timestamp_field="created")

@fk.feature_view(entity=driver, source=trips, ttl=timedelta(days=7))
def bad(trips: pl.DataFrame) -> pl.DataFrame:
    raise ValueError("boom")
"""


def test_a_view_error_names_the_view_once(make_repo):
    repo = make_repo(BROKEN, data={"data/trips.parquet": trips_table(ROWS)})
    line = error_line(run("--repo", str(repo), "apply"))
    assert line.count("feature view 'bad'") == 1, line
    assert "raised ValueError: boom" in line


# -- materialize-incremental with nothing new ------------------------------------------------------


def test_materialize_incremental_says_nothing_new(applied: Path):
    with fk.FeatureStore(applied, progress=False) as store:
        commits = len(store.registry.commits())
    for _ in range(2):  # no source rows after the watermark: nothing is committed, and it says so
        result = run("--repo", str(applied), "-q", "materialize-incremental", "--end", "2026-01-08")
        assert result.exit_code == 0
        assert "nothing new: every view is up to date" in result.stdout
    with fk.FeatureStore(applied, progress=False) as store:
        assert len(store.registry.commits()) == commits


def test_plan_and_diff_print_ttls_in_hours(make_repo):
    repo = make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)})
    assert run("--repo", str(repo), "apply").exit_code == 0
    (repo / "features.py").write_text(ON_DEMAND.replace("ttl=timedelta(days=7)", "ttl=timedelta(days=1, hours=2)"))
    planned = run("--repo", str(repo), "plan").stdout
    assert "driver_stats v1 -> v2: new version: ttl changed" in planned
    assert "ttl_us" not in planned
    assert run("--repo", str(repo), "apply").exit_code == 0
    shown = run("--repo", str(repo), "diff", "driver_stats", "v1", "v2").stdout
    assert "# ttl: 7d -> 1d 2h" in shown
    assert "604800000000" not in shown
