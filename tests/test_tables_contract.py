"""Table-format contract: what every implementation of offline/tables.py's TableFormat must do.

Writes are single commits with increasing data versions; every data version reads back exactly
as committed after later writes (time travel); the three write scopes give the same rows; files
are real URIs that exist and have the logged size; stray files are everything but the kept ones
(never the log); unrecorded commits are undone; the writer lock excludes, waits and names its holder.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurekit.errors import ConflictError
from featurekit.offline.engine import local_path
from featurekit.offline.tables import OfflineTables, TableFormat

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCHEMA = pa.schema([("k", pa.int64()), ("event_timestamp", pa.timestamp("us", tz="UTC")), ("x", pa.float64())])
IMPLEMENTATIONS = [OfflineTables]
FOLDERS = ["plain", "my store #1 é", "100%zz sure"]


@pytest.fixture(params=[(impl, folder) for impl in IMPLEMENTATIONS for folder in FOLDERS], ids=str)
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> TableFormat:
    implementation, folder = request.param
    made: TableFormat = implementation(tmp_path / folder / ".featurekit")
    return made


def day_rows(day: int, value: float, n: int = 3) -> pa.Table:
    return pa.table(
        {
            "k": list(range(n)),
            "event_timestamp": [T0 + timedelta(days=day, hours=h) for h in range(n)],
            "x": [value] * n,
        },
        schema=SCHEMA,
    )


def write(tables: TableFormat, table: pa.Table, day: int, scope: str = "window") -> int:
    window = (T0 + timedelta(days=day), T0 + timedelta(days=day + 1))
    reader = pa.RecordBatchReader.from_batches(SCHEMA, table.to_batches())
    return tables.write_window(
        "v",
        1,
        reader,
        timestamp_field="event_timestamp",
        window=window,
        note={"t": "1"},
        scope=scope,  # type: ignore[arg-type]
    )


def read(tables: TableFormat, data_version: int) -> list[tuple]:
    files = tables.files("v", 1, data_version)
    rows = [r for f in files for r in pq.read_table(local_path(f)).to_pylist()]
    return sorted((r["k"], r["event_timestamp"], r["x"]) for r in rows)


def test_every_data_version_reads_back_as_committed(tables: TableFormat):
    first = write(tables, day_rows(0, 1.0), 0)
    second = write(tables, day_rows(1, 2.0), 1)
    third = write(tables, day_rows(0, 3.0), 0)  # replaces day 0
    fourth = tables.append("v", 1, day_rows(2, 4.0), {"push": "1"})
    assert first < second < third < fourth
    assert [r[2] for r in read(tables, first)] == [1.0] * 3
    assert sorted({r[2] for r in read(tables, second)}) == [1.0, 2.0]
    assert sorted({r[2] for r in read(tables, third)}) == [2.0, 3.0]
    assert len(read(tables, fourth)) == 9


@pytest.mark.parametrize("scope", ["window", "all", "append"])
def test_the_write_scopes_give_the_same_rows_where_they_apply(tables: TableFormat, scope: str):
    version = write(tables, day_rows(0, 1.0), 0, scope)
    assert read(tables, version) == sorted((r["k"], r["event_timestamp"], r["x"]) for r in day_rows(0, 1.0).to_pylist())


def test_files_are_uris_of_existing_files_with_the_logged_size(tables: TableFormat):
    version = write(tables, day_rows(0, 1.0), 0)
    for uri, data_file in zip(tables.files("v", 1, version), tables.data_files("v", 1, version), strict=True):
        assert uri.startswith("file://")
        assert Path(local_path(uri)) == data_file.path
        assert data_file.path.stat().st_size == data_file.size
        assert tables.path("v", 1) in data_file.path.parents


def test_stray_files_are_all_but_the_kept_ones_and_never_the_log(tables: TableFormat):
    first = write(tables, day_rows(0, 1.0), 0)
    second = write(tables, day_rows(0, 2.0), 0)
    keep = {f.path for f in tables.data_files("v", 1, second)}
    stray = tables.stray_files("v", 1, keep)
    assert set(stray) == {f.path for f in tables.data_files("v", 1, first)} - keep
    assert all("_delta_log" not in p.parts for p in stray)
    assert tables.stray_files("other", 1, set()) == []


def test_an_unrecorded_commit_is_undone_before_the_next_write(tables: TableFormat):
    recorded = write(tables, day_rows(0, 1.0), 0)
    write(tables, day_rows(0, 9.0), 0)  # a killed writer's commit, never recorded
    tables.prepare("v", 1, recorded)
    after = write(tables, day_rows(1, 2.0), 1)
    assert sorted({r[2] for r in read(tables, after)}) == [1.0, 2.0]


def test_a_table_the_registry_never_recorded_is_set_aside(tables: TableFormat):
    write(tables, day_rows(0, 9.0), 0)
    tables.prepare("v", 1, None)
    assert not tables.path("v", 1).exists()
    assert any(tables.trash.rglob("*.parquet"))


def _hold(root: str, seconds: float, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    with OfflineTables(Path(root)).lock("v"):
        ready.set()
        time.sleep(seconds)


def test_the_writer_lock_excludes_waits_and_names_its_holder(tables: TableFormat):
    if not isinstance(tables, OfflineTables):
        pytest.skip("the lock test starts a holder process of the Delta implementation")
    ready = multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(target=_hold, args=(str(tables.root.parent), 1.5, ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(ConflictError, match=rf"pid {holder.pid}"), tables.lock("v"):
            pass
        began = time.monotonic()
        with tables.lock("v", wait_s=30):  # waits for the holder to finish instead of failing
            assert time.monotonic() - began > 0.2
    finally:
        holder.join(30)


def commit_parts(tables: TableFormat, parts: list[pa.Table], scope: str) -> int:
    """Parts written by someone else (an engine's executors), committed by the table format."""
    with tables.staged("v", 1) as folder:
        folder.mkdir(parents=True)
        for index, part in enumerate(parts):
            pq.write_table(part, folder / f"part-{index:05d}.parquet")
        return tables.commit_parts("v", 1, folder, schema=SCHEMA, note={"t": "1"}, scope=scope)  # type: ignore[arg-type]


def test_parts_written_elsewhere_commit_as_one_version_that_reads_back(tables: TableFormat):
    first = commit_parts(tables, [day_rows(0, 1.0), day_rows(1, 1.5), day_rows(2, 0.0, n=0)], "all")  # a new table
    second = commit_parts(tables, [day_rows(3, 2.0)], "append")
    third = commit_parts(tables, [day_rows(0, 3.0)], "all")  # replaces every row
    fourth = write(tables, day_rows(1, 4.0), 1)  # a window replacement after committed parts
    assert first < second < third < fourth
    assert sorted({r[2] for r in read(tables, first)}) == [1.0, 1.5]
    assert sorted({r[2] for r in read(tables, second)}) == [1.0, 1.5, 2.0]
    assert sorted({r[2] for r in read(tables, third)}) == [3.0]
    assert sorted({r[2] for r in read(tables, fourth)}) == [3.0, 4.0]
    assert not list(tables.path("v", 1).glob("staged-*"))  # the staging folder is gone
    assert len(tables.files("v", 1, first)) == 2  # an empty part is not committed


def test_parts_of_a_failed_write_leave_nothing_behind(tables: TableFormat):
    kept = commit_parts(tables, [day_rows(0, 1.0)], "all")
    before = sorted(p for p in tables.path("v", 1).rglob("*") if p.is_file())

    def failing_write() -> None:
        with tables.staged("v", 1) as folder:
            folder.mkdir(parents=True)
            pq.write_table(day_rows(1, 9.0), folder / "part-00000.parquet")
            raise RuntimeError("a check failed")  # after the parts were written, before the commit

    with pytest.raises(RuntimeError, match="a check failed"):
        failing_write()
    assert sorted(p for p in tables.path("v", 1).rglob("*") if p.is_file()) == before
    assert tables.stray_files("v", 1, {f.path for f in tables.data_files("v", 1, kept)}) == []


def test_parts_a_killed_process_left_staged_are_stray_files_for_gc(tables: TableFormat):
    kept = commit_parts(tables, [day_rows(0, 1.0)], "all")
    left = tables.path("v", 1) / "staged-0123abcd" / "_temporary" / "0"
    left.mkdir(parents=True)  # what a writer killed before its commit leaves behind
    pq.write_table(day_rows(1, 9.0), left / "part-00000.parquet")
    stray = tables.stray_files("v", 1, {f.path for f in tables.data_files("v", 1, kept)})
    assert stray == [left / "part-00000.parquet"]


def test_files_within_a_window_are_every_file_that_holds_rows_in_it(tables: TableFormat):
    for day in range(5):
        version = write(tables, day_rows(day, float(day)), day)
    every = tables.files("v", 1, version)
    assert len(every) == 5
    for windows in (
        [(T0 + timedelta(days=1), T0 + timedelta(days=2))],
        [(T0 + timedelta(days=1, hours=1), T0 + timedelta(days=1, hours=2))],  # inside one file's span
        [(T0 + timedelta(days=2), T0 + timedelta(days=2, hours=1))],  # [start, end): only the 00:00 row
        [(T0, T0 + timedelta(hours=1)), (T0 + timedelta(days=4), T0 + timedelta(days=9))],
        [(T0 - timedelta(days=9), T0)],  # before every row: nothing
    ):
        kept = tables.files_within("v", 1, version, "event_timestamp", windows)
        assert set(kept) <= set(every)
        wanted = {
            f
            for f in every
            for r in pq.read_table(local_path(f)).to_pylist()
            if any(start <= r["event_timestamp"] < end for start, end in windows)
        }
        assert wanted <= set(kept), windows  # never a file with rows in a window left out
        assert len(kept) == len(wanted), windows  # the log's min and max tell these days' files apart
