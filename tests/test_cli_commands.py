"""Every CLI command, success and failure: exit codes, the one-line errors, and what was written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import featurekit as fk
from featurekit.cli import cli
from tests.conftest import BASIC_FEATURES, store_files, trips_table, ts

ROWS = [(1, ts(0), ts(0), 1, 2, 1.0), (1, ts(2), ts(2), 2, 4, 2.0), (2, ts(1), ts(1), 3, 4, 3.0)]
ON_DEMAND = (
    BASIC_FEATURES
    + """

@fk.on_demand(inputs=["driver_stats:conv_rate"], request={"trip_km": pl.Float64})
def trip_risk(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(risk=pl.col("conv_rate") * pl.col("trip_km"))
"""
)


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo(ON_DEMAND, data={"data/trips.parquet": trips_table(ROWS)})


@pytest.fixture
def applied(repo: Path) -> Path:
    assert run("--repo", str(repo), "apply").exit_code == 0
    assert run("--repo", str(repo), "-q", "materialize", "--start", "2026-01-01", "--end", "2026-01-06").exit_code == 0
    return repo


def test_init_writes_a_working_repo(tmp_path: Path):
    target = tmp_path / "new_repo"
    result = run("init", str(target))
    assert result.exit_code == 0
    assert "created" in result.stdout
    assert (target / "features.py").exists()
    assert (target / "data" / "trips.parquet").exists()
    assert run("--repo", str(target), "apply").exit_code == 0
    again = run("init", str(target))
    assert again.exit_code == 1
    assert "nothing written" in error_line(again)


def test_init_into_a_file_fails(tmp_path: Path):
    (tmp_path / "taken").write_text("x")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "taken")])
    assert result.exit_code != 0


def test_plan_then_apply_prints_the_diff(repo: Path):
    planned = run("--repo", str(repo), "plan")
    assert planned.exit_code == 0
    assert "+ driver_stats v1: new view, features conv_rate, avg_trip_km" in planned.stdout
    assert "+ trip_risk v1" in planned.stdout
    assert store_files(repo) == ["registry.db", "registry.db-shm", "registry.db-wal"] or not any(
        "offline" in f for f in store_files(repo)
    )
    applied = run("--repo", str(repo), "apply")
    assert applied.exit_code == 0
    assert "applied as registry version 1" in applied.stdout
    again = run("--repo", str(repo), "apply")
    assert "nothing to apply" in again.stdout


def test_apply_of_a_broken_repo_fails_with_file_and_line(repo: Path):
    (repo / "features.py").write_text(ON_DEMAND + "\ndef broken(:\n")
    result = run("--repo", str(repo), "apply")
    assert result.exit_code == 1
    line = error_line(result)
    assert "features.py:" in line
    assert "SyntaxError" in line


def test_debug_shows_the_traceback(repo: Path):
    (repo / "features.py").write_text("raise ValueError('nope')\n")
    result = CliRunner().invoke(cli, ["--repo", str(repo), "--debug", "apply"])
    assert result.exit_code == 1
    assert isinstance(result.exception, fk.DefinitionError)


def test_materialize_and_incremental(repo: Path):
    assert run("--repo", str(repo), "apply").exit_code == 0
    done = run("--repo", str(repo), "-q", "materialize", "--start", "2026-01-01", "--end", "2026-01-02")
    assert done.exit_code == 0
    assert "driver_stats v1: 1 rows" in done.stdout
    inc = run("--repo", str(repo), "-q", "materialize-incremental", "--end", "2026-01-06")
    assert inc.exit_code == 0
    assert "driver_stats v1: 2 rows for [2026-01-02T00:00:00+00:00, 2026-01-06T00:00:00+00:00)" in inc.stdout
    again = run("--repo", str(repo), "-q", "materialize-incremental", "--end", "2026-01-06")
    assert "nothing new: every view is up to date" in again.stdout
    offline = run(
        "--repo",
        str(repo),
        "-q",
        "materialize",
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-06",
        "--view",
        "driver_stats",
        "--offline-only",
    )
    assert "0 entities online" in offline.stdout


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--start", "2026-01-05", "--end", "2026-01-01"], "must be before --end"),
        (["--start", "2026-01-01", "--end", "2999-01-01"], "is in the future"),
        (["--start", "yesterday", "--end", "2026-01-01"], "'yesterday' is not an ISO-8601 timestamp"),
        (["--start", "2026-01-01", "--end", "2026-01-02", "--view", "driver_stat"], "did you mean 'driver_stats'"),
    ],
)
def test_materialize_failures(repo: Path, args: list[str], culprit: str):
    assert run("--repo", str(repo), "apply").exit_code == 0
    before = store_files(repo)
    result = run("--repo", str(repo), "materialize", *args)
    assert result.exit_code == 1
    assert culprit in error_line(result)
    assert store_files(repo) == before


def test_training_set_writes_the_api_result(applied: Path, tmp_path: Path):
    spine = pl.DataFrame({"driver_id": [1, 2, 9], "event_timestamp": [ts(3), ts(3), ts(3)], "trip_km": [1.0, 2.0, 3.0]})
    spine.write_parquet(tmp_path / "spine.parquet")
    out = tmp_path / "out" / "train.parquet"
    result = run(
        "--repo",
        str(applied),
        "training-set",
        str(tmp_path / "spine.parquet"),
        "-f",
        "driver_stats:avg_trip_km",
        "-f",
        "trip_risk",
        "-o",
        str(out),
    )
    assert result.exit_code == 0
    with fk.FeatureStore(applied, progress=False) as store:
        expected = store.training_set(spine, ["driver_stats:avg_trip_km", "trip_risk"]).to_arrow()
    assert pq.read_table(out).equals(expected)
    assert pq.read_table(out).column("avg_trip_km").to_pylist() == [2.0, 3.0, None]


def test_training_set_failures_write_nothing(applied: Path, tmp_path: Path):
    pl.DataFrame({"rider_id": [1], "event_timestamp": [ts(3)]}).write_parquet(tmp_path / "spine.parquet")
    out = tmp_path / "train.parquet"
    result = run(
        "--repo", str(applied), "training-set", str(tmp_path / "spine.parquet"), "-f", "driver_stats", "-o", str(out)
    )
    assert result.exit_code == 1
    assert "no column 'driver_id'" in error_line(result)
    assert not out.exists()
    unknown = run(
        "--repo", str(applied), "training-set", str(tmp_path / "spine.parquet"), "-f", "drivr_stats", "-o", str(out)
    )
    assert "did you mean 'driver_stats'" in error_line(unknown)


def test_list_and_show(applied: Path):
    listed = run("--repo", str(applied), "list")
    assert listed.exit_code == 0
    assert "driver_stats v1  conv_rate, avg_trip_km  (2026-01-06T00:00:00+00:00)" in listed.stdout
    as_json = json.loads(run("--repo", str(applied), "list", "--json").stdout)
    assert {"view": "trip_risk", "version": 1, "features": ["risk"], "watermark": None} in as_json
    shown = run("--repo", str(applied), "show", "driver_stats")
    assert "ttl: 7d" in shown.stdout
    assert "def driver_stats(" in shown.stdout
    old = run("--repo", str(applied), "show", "driver_stats@v1")
    assert old.exit_code == 0
    missing = run("--repo", str(applied), "show", "driver_stats@v9")
    assert "registered versions: v1" in error_line(missing)
    unknown = run("--repo", str(applied), "show", "drivers_stats")
    assert "did you mean 'driver_stats'" in error_line(unknown)


def test_list_of_an_empty_repo(repo: Path):
    assert "no feature views applied" in run("--repo", str(repo), "list").stdout


def test_get_and_verify(applied: Path):
    got = run("--repo", str(applied), "get", "driver_id=1", "-f", "driver_stats:avg_trip_km", "--json")
    assert got.exit_code == 0
    assert json.loads(got.stdout) == {"driver_id": 1, "avg_trip_km": None}  # older than the 7-day TTL by now
    bad = run("--repo", str(applied), "get", "driver_id", "-f", "driver_stats")
    assert "must look like name=value" in error_line(bad)
    wrong_type = run("--repo", str(applied), "get", "driver_id=abc", "-f", "driver_stats")
    assert "'driver_id' is str" in error_line(wrong_type)
    need = run("--repo", str(applied), "get", "driver_id=1", "-f", "trip_risk")
    assert "request input 'trip_km'" in error_line(need)
    ok = run(
        "--repo",
        str(applied),
        "verify",
        "-f",
        "driver_stats",
        "-f",
        "trip_risk",
        "-r",
        "trip_km=2",
        "--at",
        "2026-01-05",
    )
    assert ok.exit_code == 0, ok.stdout
    assert "no skew" in ok.stdout
    with fk.FeatureStore(applied, progress=False) as store:
        store.push(
            "driver_stats",
            [
                {
                    "driver_id": 2,
                    "event_timestamp": ts(4),
                    "created": ts(4),
                    "accepted": 1,
                    "offered": 1,
                    "distance_km": 5.0,
                }
            ],
        )
    skewed = run("--repo", str(applied), "verify", "-f", "driver_stats:avg_trip_km", "--at", "2026-01-05")
    assert skewed.exit_code == 1
    assert "avg_trip_km for {'driver_id': 2}: training 3.0 != serving 5.0" in skewed.stdout


def test_repo_option_env_var_and_missing_repo(applied: Path, tmp_path: Path):
    from_env = run("list", env={"FEATUREKIT_REPO": str(applied)})
    assert "driver_stats v1" in from_env.stdout
    missing = run("--repo", str(tmp_path / "nope"), "list")
    assert missing.exit_code == 1
    assert "is not a folder" in error_line(missing)
    assert not (tmp_path / "nope").exists()


def test_version_option():
    result = run("--version")
    assert result.exit_code == 0
    assert fk.__version__ in result.stdout


def test_a_real_process_exits_non_zero_with_one_line(repo: Path):
    done = subprocess.run(
        [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "materialize", "--start", "x", "--end", "y"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1
    ok = subprocess.run(
        [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "plan"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    assert "+ driver_stats v1" in ok.stdout


def test_every_command_is_there_however_the_cli_is_started():
    """The quality commands live in featurekit.cli_quality; the console script, `python -m featurekit.cli`
    and an import of `featurekit.cli.cli` (as these tests do) all offer them."""
    quality = {"checks", "profile", "drift", "consistency"}
    assert quality <= set(cli.commands)
    for command in ([sys.executable, "-m", "featurekit.cli", "--help"], ["featurekit", "--help"]):
        listed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        names = {line.split()[0] for line in listed.split("Commands:")[1].splitlines() if line.startswith("  ")}
        assert quality <= names, command


PRIORITY_PROBE = """
import os as _os, pathlib as _pl
_threads = sorted(int(t.name) for t in _pl.Path("/proc/self/task").iterdir())
_policies = sorted({_os.sched_getscheduler(t) for t in _threads})
_nices = sorted({_os.getpriority(_os.PRIO_PROCESS, t) for t in _threads})
_cpus = sorted({tuple(sorted(_os.sched_getaffinity(t))) for t in _threads})
(_pl.Path(__file__).parent / "priority.json").write_text(__import__("json").dumps(
    {"threads": len(_threads), "policies": _policies, "nices": _nices, "cpus": _cpus}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="per-thread priorities are read from Linux's /proc")
def test_materialize_with_nice_or_idle_runs_all_its_threads_at_that_priority(make_repo):
    # The repo's module records the priority of every thread of the materializing process when it is
    # imported: after --nice/--idle took effect, with DuckDB's and polars' pools started, before any
    # view is computed (a real process: a lowered priority is for good).
    repo = make_repo(BASIC_FEATURES + PRIORITY_PROBE, data={"data/trips.parquet": trips_table(ROWS)})
    assert run("--repo", str(repo), "apply").exit_code == 0

    def cli_process(*args: str) -> dict[str, list[int]]:
        command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "-q", *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads((repo / "priority.json").read_text())

    window = ["--start", "2026-01-01", "--end", "2026-01-03"]
    before = os.getpriority(os.PRIO_PROCESS, 0)
    niced = cli_process("materialize", *window, "--nice", "17")
    assert niced["threads"] > 1  # the pools were running: they were lowered too
    assert niced["nices"] == [max(before, 17)]
    assert niced["policies"] == [os.SCHED_OTHER]
    idle = cli_process("materialize-incremental", "--end", "2026-01-05", "--idle")
    assert idle["threads"] > 1
    assert idle["policies"] == [os.SCHED_IDLE]
    plain = cli_process("materialize-incremental", "--end", "2026-01-06")
    assert plain["nices"] == [before]  # without --nice or --idle: unchanged
    assert plain["policies"] == [os.SCHED_OTHER]
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "materialize", *window, "--nice", "25"]
    refused = subprocess.run(command, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "--nice" in refused.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_materialize_with_cpus_runs_all_its_threads_on_those_cpus(make_repo):
    # As above: the repo's module records every thread's CPUs once --cpus took effect.
    allowed = sorted(os.sched_getaffinity(0))
    repo = make_repo(BASIC_FEATURES + PRIORITY_PROBE, data={"data/trips.parquet": trips_table(ROWS)})
    assert run("--repo", str(repo), "apply").exit_code == 0

    def cli_process(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "featurekit.cli", "--repo", str(repo), "-q", *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    window = ["--start", "2026-01-01", "--end", "2026-01-03"]
    done = cli_process("materialize", *window, "--cpus", str(allowed[-1]))
    assert done.returncode == 0, done.stderr
    found = json.loads((repo / "priority.json").read_text())
    assert found["threads"] > 1
    assert found["cpus"] == [[allowed[-1]]]
    assert found["nices"] == [os.getpriority(os.PRIO_PROCESS, 0)]  # --cpus alone leaves the priority
    done = cli_process("materialize-incremental", "--end", "2026-01-05", "--cpus", f"{allowed[0]}-{allowed[-1]}")
    assert done.returncode == 0, done.stderr
    assert json.loads((repo / "priority.json").read_text())["cpus"] == [allowed]
    assert sorted(os.sched_getaffinity(0)) == allowed  # the test's own process is untouched
    data_files = sorted(p.name for p in (repo / ".featurekit").rglob("*.parquet"))
    for bad, says in [("x", "not a list of CPU numbers"), ("3-1", "runs backwards"), ("4096", "may use")]:
        refused = cli_process("materialize", "--start", "2026-01-05", "--end", "2026-01-07", "--cpus", bad)
        assert refused.returncode != 0
        assert says in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in (repo / ".featurekit").rglob("*.parquet")) == data_files  # nothing was written


CONFINE_IN_A_THREADED_PROCESS = """
import json, os, threading
import featurekit as fk
from featurekit.offline.duckdb_engine import DuckDBEngine
started = threading.Event(); stop = threading.Event()
def work():
    started.set(); stop.wait()
thread = threading.Thread(target=work); thread.start(); started.wait()
cpu = max(os.sched_getaffinity(0))
confined = fk.confine_to_cpus([cpu])
engine = DuckDBEngine(__import__("pathlib").Path("."))
threads = engine.cursor().execute("SELECT current_setting('threads')").fetchone()[0]
print(json.dumps({"confined": sorted(confined), "main": sorted(os.sched_getaffinity(0)),
                  "thread": sorted(os.sched_getaffinity(thread.native_id)), "cpu": cpu, "duckdb_threads": threads}))
stop.set(); thread.join()
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_confine_to_cpus_moves_threads_already_running_and_sizes_duckdb():
    done = subprocess.run(
        [sys.executable, "-c", CONFINE_IN_A_THREADED_PROCESS], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["confined"] == found["main"] == found["thread"] == [found["cpu"]]
    assert found["duckdb_threads"] == (1 if (os.cpu_count() or 1) > 1 else found["duckdb_threads"])


@pytest.mark.parametrize(
    ("cpus", "says"),
    [("", "not a list"), ("a-b", "not a list"), ("1,", "not a list"), ("5-2", "runs backwards"), ([], "may use")],
)
def test_confine_to_cpus_refuses_what_is_not_a_cpu_list(cpus, says):
    with pytest.raises(fk.ConfigError, match=says):
        fk.confine_to_cpus(cpus)


LOWER_IN_A_THREADED_PROCESS = """
import json, os, threading
import featurekit as fk
started = threading.Event(); stop = threading.Event()
def work():
    started.set(); stop.wait()
thread = threading.Thread(target=work); thread.start(); started.wait()
fk.lower_cpu_priority(IDLE_ARGS)
print(json.dumps({"main": os.sched_getscheduler(0), "thread": os.sched_getscheduler(thread.native_id),
                  "nice": os.getpriority(os.PRIO_PROCESS, thread.native_id)}))
stop.set(); thread.join()
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize(("args", "policy", "nice"), [("idle=True", "SCHED_IDLE", 0), ("12", "SCHED_OTHER", 12)])
def test_lower_cpu_priority_lowers_threads_already_running(args, policy, nice):
    script = LOWER_IN_A_THREADED_PROCESS.replace("IDLE_ARGS", args)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    assert found["main"] == found["thread"] == getattr(os, policy)
    assert found["nice"] == max(nice, os.getpriority(os.PRIO_PROCESS, 0))


@pytest.mark.parametrize("nice", [-1, 20, True, 2.5, "10"])
def test_lower_cpu_priority_refuses_what_is_not_a_nice_value(nice):
    with pytest.raises(fk.ConfigError, match="nice must be an integer from 0 to 19"):
        fk.lower_cpu_priority(nice)
