"""Versioned offline tables: one Delta Lake table per view version under ``<store>/offline/``.

This module is the table-format seam: the only one that imports ``deltalake`` or knows the
folder layout. It hands out real URIs (``file:///...``, percent-encoded), never paths with the
scheme stripped, and answers gc and ``verify`` with the files a version references and the
files a table folder holds besides them.

Layout: ``<store>/offline/<view>/v<version>/`` holds the Delta table of that view version (Parquet
data files with unique names plus ``_delta_log/``). A materialization is one Delta commit that
replaces the rows of its window (``replaceWhere``; a plain overwrite or append when the caller
knows no committed row lies outside or after the window), so re-materializing never duplicates
rows and every earlier table version stays readable. Readers never list directories: they take the file
list of the data version the registry recorded.

The registry, not the Delta log, is the commit point featurekit readers follow. A Delta commit that
a killed process never recorded in the registry is invisible to readers, and is undone (the table
restored to the recorded version) before the next write, so it cannot leak into later versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal, Protocol
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Schema, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from featurekit.errors import ConfigError, ConflictError, RegistryError, storage_errors
from featurekit.names import quote
from featurekit.offline.engine import as_uri

# Time travel reads old log entries: never let the Delta log expire on its own (gc decides).
_TABLE_CONFIG: dict[str, str | None] = {
    "delta.logRetentionDuration": "interval 36500 days",
    "delta.enableExpiredLogCleanup": "false",
}


# Parquet layout of every data file. Row groups of 128Ki rows: DuckDB scans a file in parallel by
# row group, and the writer's default (1Mi rows) left a 1M-row window in one group that one thread
# read (medium: newest-row scan 0.79 s against 0.32 s, training-set join 0.57 s against 0.30 s).
# Dictionary encoding only for text: feature values, keys and timestamps are mostly distinct, the
# dictionary overflows and falls back to plain anyway, and trying cost 3x the write time (1.4 s
# against 0.43 s for 1M rows of 11 columns) for no smaller file.
_ROW_GROUP_ROWS = 131_072


def _writer_properties(schema: pa.Schema) -> WriterProperties:
    text = [
        field.name
        for field in schema
        if pa.types.is_string(field.type)
        or pa.types.is_large_string(field.type)
        or pa.types.is_string_view(field.type)
        or pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
        or pa.types.is_dictionary(field.type)
    ]
    return WriterProperties(
        max_row_group_size=_ROW_GROUP_ROWS,
        compression="SNAPPY",
        default_column_properties=ColumnProperties(dictionary_enabled=False),
        column_properties={name: ColumnProperties(dictionary_enabled=True) for name in text},
    )


def _delta_timestamp(moment: datetime) -> str:
    # Formatted from a datetime object, never from user text: safe inside the predicate.
    return moment.astimezone(UTC).strftime("'%Y-%m-%dT%H:%M:%S.%fZ'")


_NOT_COMMITTED = "nothing was committed; readers keep the previous data"

WriteScope = Literal["window", "all", "append"]


def _note_holder(handle: IO[bytes], pid: str) -> None:
    """Write the holder's pid into the lock file: information only, so a full disk is no failure."""
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(pid.encode())
    except OSError:
        pass


# deltalake decodes "%XX" in a local table path as an escape, even inside a file:// URI whose
# "%" is itself encoded, so such a table is written under one folder and looked for in another.
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_LOCK_POLL_S = 0.05
KEPT_SNAPSHOTS = 64  # data versions whose add actions OfflineTables keeps (a few KB per hundred files)


@dataclass(frozen=True)
class DataFile:
    """One Parquet file a data version references, with the size its Delta log recorded."""

    uri: str
    path: Path
    size: int


class TableFormat(Protocol):
    """The versioned tables of view versions, as the rest of featurekit uses them.

    Every write is one commit returning its data version; every data version stays readable (by
    its file list) until gc removes its files; a commit the registry never recorded is undone by
    :meth:`prepare`. ``tests/test_tables_contract.py`` holds each implementation to this.
    """

    trash: Path

    def path(self, view: str, version: int) -> Path: ...

    def lock(self, view: str, wait_s: float = 0.0) -> contextlib.AbstractContextManager[None]: ...

    def prepare(self, view: str, version: int, recorded: int | None) -> None: ...

    def write_window(
        self,
        view: str,
        version: int,
        batches: pa.RecordBatchReader,
        *,
        timestamp_field: str,
        window: tuple[datetime, datetime],
        note: dict[str, str],
        scope: WriteScope = "window",
    ) -> int: ...

    def append(self, view: str, version: int, rows: pa.Table | pa.RecordBatchReader, note: dict[str, str]) -> int: ...

    def staged(self, view: str, version: int) -> contextlib.AbstractContextManager[Path]: ...

    def commit_parts(
        self, view: str, version: int, folder: Path, *, schema: pa.Schema, note: dict[str, str], scope: WriteScope
    ) -> int: ...

    def files(self, view: str, version: int, data_version: int) -> list[str]: ...

    def data_files(self, view: str, version: int, data_version: int) -> list[DataFile]: ...

    def files_within(
        self, view: str, version: int, data_version: int, column: str, windows: list[tuple[datetime, datetime]]
    ) -> list[str]: ...

    def stray_files(self, view: str, version: int, keep: set[Path]) -> list[Path]: ...


class OfflineTables:
    """The Delta Lake implementation: creates, writes and reads the tables inside one store folder."""

    def __init__(self, store_root: Path) -> None:
        where = str(store_root.resolve())
        escape = _ESCAPE.search(where)
        if escape is not None:
            raise ConfigError(
                f"the store folder {where} contains {escape.group()!r}, which Delta Lake reads as an escaped "
                f"character ({bytes.fromhex(escape.group()[1:]).decode(errors='replace')!r}), so its tables "
                "could not be found again; rename the folder (a '%' not followed by two hex digits is fine) "
                "or set store_dir in featurekit.yaml to a folder without it"
            )
        self.root = store_root / "offline"
        self.locks = store_root / "locks"
        self.trash = store_root / "trash"
        self._kept: OrderedDict[tuple[str, int, int], pa.Table] = OrderedDict()  # see _add_actions
        self._kept_lock = threading.Lock()

    def path(self, view: str, version: int) -> Path:
        """Folder of a view version's table (names are validated, so the path stays in the store)."""
        return self.root / view.lower() / f"v{int(version)}"

    @contextmanager
    def lock(self, view: str, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the view's writer lock, waiting up to ``wait_s`` for it, else :class:`ConflictError`.

        An OS file lock: released by the kernel when the process dies, so a killed job never
        leaves a stale lock behind. The error names the holder's pid.
        """
        path = self.locks / f"{view.lower()}.lock"
        with storage_errors(f"creating the lock file {path}"):
            self.locks.mkdir(parents=True, exist_ok=True)
            # Unbuffered: nothing is left to flush at close, so a failing disk cannot fail the release.
            handle = open(path, "a+b", buffering=0)  # noqa: SIM115 -- closed below, after the lock is released
        with handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(_LOCK_POLL_S)
                        continue
                    handle.seek(0)
                    holder = handle.read().decode(errors="replace").strip() or "unknown"
                    waited = f" (waited {wait_s:g} s)" if wait_s else ""
                    raise ConflictError(
                        f"feature view '{view}' is being written by another process (pid {holder}){waited}; "
                        "wait for it to finish, then run again"
                    ) from None
            _note_holder(handle, str(os.getpid()))
            try:
                yield
            finally:
                _note_holder(handle, "")
                fcntl.flock(handle, fcntl.LOCK_UN)

    def prepare(self, view: str, version: int, recorded: int | None) -> None:
        """Undo Delta commits the registry never recorded (left by a killed writer) before a write.

        The first write creates the table. Commits of a table the registry has no record of at
        all cannot be read by anyone: the folder is set aside (under ``trash/``) for gc.
        """
        path = self.path(view, version)
        if not DeltaTable.is_deltatable(str(path)):
            return
        with storage_errors(f"undoing an unrecorded write to {path}"):
            if recorded is None:
                trash = self.trash / f"{view.lower()}-v{int(version)}-{uuid.uuid4().hex}"
                trash.parent.mkdir(parents=True, exist_ok=True)
                path.rename(trash)  # atomic: the next write starts a fresh table
                return
            table = DeltaTable(str(path))
            if table.version() > recorded:
                table.restore(recorded)

    def write_window(
        self,
        view: str,
        version: int,
        batches: pa.RecordBatchReader,
        *,
        timestamp_field: str,
        window: tuple[datetime, datetime],
        note: dict[str, str],
        scope: WriteScope = "window",
    ) -> int:
        """Replace the rows of ``window`` with ``batches`` in one Delta commit; return its version.

        ``scope`` says what the caller knows of the table's rows: ``"window"`` (anywhere: replace
        the window's rows by predicate), ``"all"`` (none outside the window, or none readable after
        gc: overwrite the table) or ``"append"`` (none in or after the window: add the rows). The
        three give the same table; the last two skip Delta's check of every row against the predicate.
        """
        if scope == "append":
            return self.append(view, version, batches, note)
        column = quote(timestamp_field)
        predicate = f"{column} >= {_delta_timestamp(window[0])} AND {column} < {_delta_timestamp(window[1])}"
        path = str(self.path(view, version))
        try:
            with (
                storage_errors(f"writing the offline table {path}", _NOT_COMMITTED),
                self._undone_if_aborted(view, version),
            ):
                write_deltalake(
                    path,
                    batches,
                    mode="overwrite",
                    predicate=predicate if scope == "window" else None,
                    configuration=_TABLE_CONFIG,  # applies when this write creates the table
                    writer_properties=_writer_properties(batches.schema),
                    commit_properties=CommitProperties(custom_metadata=note),
                )
        except CommitFailedError as exc:
            raise ConflictError(f"another writer committed to feature view '{view}' first: {exc}") from exc
        return DeltaTable(path).version()

    def append(self, view: str, version: int, rows: pa.Table | pa.RecordBatchReader, note: dict[str, str]) -> int:
        """Add ``rows`` (a push, or a window after all other rows) in one Delta commit; return its version."""
        path = str(self.path(view, version))
        try:
            with (
                storage_errors(f"writing the offline table {path}", _NOT_COMMITTED),
                self._undone_if_aborted(view, version),
            ):
                write_deltalake(
                    path,
                    rows,
                    mode="append",
                    configuration=_TABLE_CONFIG,
                    writer_properties=_writer_properties(rows.schema),
                    commit_properties=CommitProperties(custom_metadata=note),
                )
        except CommitFailedError as exc:
            raise ConflictError(f"another writer committed to feature view '{view}' first: {exc}") from exc
        return DeltaTable(path).version()

    @contextmanager
    def staged(self, view: str, version: int) -> Iterator[Path]:
        """A new folder inside the version's table folder for an engine to write Parquet parts into.

        :meth:`commit_parts` commits them; whatever else happens, the folder is gone afterwards,
        and a failure before the commit removes every file the write created (as a failed
        :meth:`write_window` does). A killed process leaves the folder behind: no reader sees it
        (readers follow the log) and gc removes it as stray files.
        """
        folder = self.path(view, version) / f"staged-{uuid.uuid4().hex}"
        with (
            storage_errors(f"writing the offline table {self.path(view, version)}", _NOT_COMMITTED),
            self._undone_if_aborted(view, version),
        ):
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)

    def commit_parts(
        self, view: str, version: int, folder: Path, *, schema: pa.Schema, note: dict[str, str], scope: WriteScope
    ) -> int:
        """Commit the Parquet parts an engine wrote into ``folder`` (from :meth:`staged`) as one Delta
        transaction; return its version.

        Each part moves to a unique name in the table folder, then one commit adds them all:
        ``scope="append"`` keeps the table's files, ``"all"`` replaces them. (``"window"``, a
        replacement by predicate, rewrites files that also hold rows outside the window: use
        :meth:`write_window`.) The files must be of ``schema``'s types.
        """
        if scope == "window":
            raise ValueError("commit_parts replaces whole tables or appends; a window replacement is write_window's")
        path = self.path(view, version)
        actions: list[AddAction | RemoveAction] = []
        for index, part in enumerate(sorted(folder.glob("part-*.parquet"))):
            rows = pq.read_metadata(part).num_rows
            if not rows:
                continue
            name = f"part-{index:05d}-{uuid.uuid4()}.snappy.parquet"
            part.rename(path / name)
            stat = (path / name).stat()
            stats = json.dumps({"numRecords": rows})
            actions.append(AddAction(name, stat.st_size, {}, int(stat.st_mtime * 1000), True, stats))
        properties = CommitProperties(custom_metadata=note)
        try:
            if DeltaTable.is_deltatable(str(path)):
                mode = "overwrite" if scope == "all" else "append"
                DeltaTable(str(path)).create_write_transaction(actions, mode, schema, commit_properties=properties)
            else:
                adds = [a for a in actions if isinstance(a, AddAction)]
                create_table_with_add_actions(
                    str(path), Schema.from_arrow(schema), adds, configuration=_TABLE_CONFIG,
                    commit_properties=properties,
                )  # fmt: skip
        except CommitFailedError as exc:
            raise ConflictError(f"another writer committed to feature view '{view}' first: {exc}") from exc
        return DeltaTable(str(path)).version()

    @contextmanager
    def _undone_if_aborted(self, view: str, version: int) -> Iterator[None]:
        """Remove exactly what a write that fails before its commit created: its files and new folders.

        The Delta writer leaves the Parquet files it finished for the batches it consumed (past its
        target file size) and, on a first write, the table folder, when its input raises (a failing
        check, Ctrl-C), so the store would no longer be as it was. A write that got as far as a
        commit file in ``_delta_log/`` is left alone: undoing a commit the registry never recorded
        is :meth:`prepare`'s job. Costs one listing of the table folder per write. Runs under the
        view's writer lock.
        """
        path = self.path(view, version)
        created = [folder for folder in (path, path.parent, self.root) if not folder.exists()]
        before = _files_under(path)
        try:
            yield
        except BaseException:
            new = _files_under(path) - before
            if not any(_is_commit(file) for file in new):
                with storage_errors(f"removing the files of an aborted write to {path}", _NOT_COMMITTED):
                    if path in created:
                        shutil.rmtree(path, ignore_errors=True)
                    for file in new:
                        file.unlink(missing_ok=True)
                    for folder in created[1:]:  # shared with other versions or views: only if empty
                        with contextlib.suppress(OSError):
                            folder.rmdir()
            raise

    def _table(self, view: str, version: int, data_version: int) -> DeltaTable:
        path = self.path(view, version)
        try:
            return DeltaTable(str(path), version=data_version)
        except (DeltaError, OSError) as exc:
            raise RegistryError(
                f"offline table of '{view}' v{version} cannot be read at data version {data_version} "
                f"({path}): {exc}; run `featurekit verify`"
            ) from exc

    def files(self, view: str, version: int, data_version: int) -> list[str]:
        """URIs of the Parquet files of a committed data version (what readers scan).

        Read from the log's file list alone (about 10 ms less than :meth:`data_files` per read).
        deltalake gives local files as percent-encoded absolute paths: they become ``file://`` URIs.
        """
        uris = self._table(view, version, data_version).file_uris()
        return [uri if "://" in uri else "file://" + uri for uri in uris]

    def files_within(
        self, view: str, version: int, data_version: int, column: str, windows: list[tuple[datetime, datetime]]
    ) -> list[str]:
        """:meth:`files` that may hold rows with ``column`` in one of ``windows`` (each [start, end)).

        Decided by the minimum and maximum the Delta log recorded for each file; a file without
        them is kept. A read of a few days of a view with hundreds of daily commits then opens
        those days' files, not every file's footer. A committed data version never changes, so
        its file statistics are read from the log once and kept (the last :data:`KEPT_SNAPSHOTS`).
        """
        actions = self._add_actions(view, version, data_version)
        low, high = f"min.{column}", f"max.{column}"
        if {low, high} - set(actions.column_names) or not pa.types.is_timestamp(actions.schema.field(low).type):
            return self.files(view, version, data_version)
        kind = actions.schema.field(low).type
        keep: pa.Array | pa.ChunkedArray = pa.repeat(False, actions.num_rows)
        for start, end in windows:
            reaches = pc.and_(
                pc.less(actions[low], pa.scalar(end).cast(kind)),
                pc.greater_equal(actions[high], pa.scalar(start).cast(kind)),
            )
            keep = pc.or_(keep, reaches)
        kept = actions.column("path").filter(pc.fill_null(keep, True)).to_pylist()  # no statistics: kept
        folder = self.path(view, version)
        return [as_uri(folder / unquote(relative)) for relative in kept]

    def _add_actions(self, view: str, version: int, data_version: int) -> pa.Table:
        """The Delta log's add actions (path, size, per-column statistics) of a committed data version."""
        key = (view.lower(), int(version), int(data_version))
        with self._kept_lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        found = pa.table(self._table(view, version, data_version).get_add_actions(flatten=True))
        with self._kept_lock:
            self._kept[key] = found
            while len(self._kept) > KEPT_SNAPSHOTS:
                self._kept.popitem(last=False)
        return found

    def data_files(self, view: str, version: int, data_version: int) -> list[DataFile]:
        """The files of a committed data version with the sizes the Delta log recorded."""
        folder = self.path(view, version)
        return _data_files(folder, self._table(view, version, data_version))

    def stray_files(self, view: str, version: int, keep: set[Path]) -> list[Path]:
        """Data files in a version's table folder that are not in ``keep`` (the log is never stray)."""
        folder = self.path(view, version)
        if not folder.exists():
            return []
        kept = {p.resolve() for p in keep}
        return [
            p
            for p in folder.rglob("*")
            if p.is_file() and "_delta_log" not in p.relative_to(folder).parts and p.resolve() not in kept
        ]

    def on_disk(self) -> list[tuple[Path, int | None, list[DataFile] | str]]:
        """Every table folder with its newest Delta version and files, or why it cannot be read.

        For ``verify`` when the registry itself is unreadable.
        """
        found: list[tuple[Path, int | None, list[DataFile] | str]] = []
        for folder in sorted(self.root.glob("*/v*")):
            try:
                table = DeltaTable(str(folder))
                found.append((folder, table.version(), _data_files(folder, table)))
            except (DeltaError, OSError) as exc:
                found.append((folder, None, f"not a readable Delta table ({str(exc).splitlines()[0]})"))
        return found

    def version_files(self, folder: Path, data_version: int) -> list[DataFile]:
        """The files of ``data_version`` of the table in ``folder``, or :class:`RegistryError`."""
        try:
            return _data_files(folder, DeltaTable(str(folder), version=data_version))
        except (DeltaError, OSError) as exc:
            raise RegistryError(f"Delta version {data_version} of {folder} cannot be opened: {exc}") from exc


def _files_under(folder: Path) -> set[Path]:
    """Every file inside ``folder`` (none if it does not exist)."""
    return {Path(top) / name for top, _, names in os.walk(folder) for name in names}


def _is_commit(file: Path) -> bool:
    """Whether ``file`` is a Delta commit (``_delta_log/<version, 20 digits>.json``)."""
    return file.parent.name == "_delta_log" and file.suffix == ".json" and file.stem.isdigit()


def _data_files(folder: Path, table: DeltaTable) -> list[DataFile]:
    actions = pa.table(table.get_add_actions(flatten=True))
    files = []
    paths, sizes = actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist()
    for relative, size in zip(paths, sizes, strict=True):
        path = folder / unquote(relative)  # the Delta log stores a relative, percent-encoded URI path
        files.append(DataFile(uri=as_uri(path), path=path, size=int(size)))
    return files
