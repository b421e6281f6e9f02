"""The serving log: what ``online_features`` served, appended to Parquet files off the lookup's path.

Opt-in with ``online.log`` in ``featurekit.yaml`` (every online store type)::

    online:
      log: {path: serving_log, sample: 0.01}

A lookup that is sampled (``sample`` is the share of lookup *requests* logged; all the entities of
a sampled request are logged) appends its values to an in-memory buffer and returns: it never
waits for the disk. One background thread per store takes the buffered rows and writes a Parquet
file (one per feature list) when ``flush_rows`` rows wait or ``flush_s`` seconds after its last
write. When ``queue_rows`` rows are already waiting (buffered or being written), a lookup's rows
are dropped and counted instead (a request of more than ``queue_rows`` entities is always
dropped).

Durability: a file is written under a temporary name (``.serving-*.parquet.tmp``), synced, and
renamed into place, so a reader (:func:`read_log`) only ever sees whole files. A killed process
loses the rows not yet in a file: at most ``queue_rows`` rows, and in steady state those of the
last ``flush_s`` seconds (or ``flush_rows`` rows, whichever comes first); a temporary file it
leaves behind is never read. :meth:`FeatureStore.close` writes everything still waiting. A file
keeps Parquet min/max statistics of ``__fk_served_at`` and the entity keys only.

Each row is one served entity: its entity keys, one column per served feature, named
``view:feature`` (``view@vN:feature`` for the versions of a view that one request read side by
side), the request inputs of on-demand features as ``__fk_request__<name>``, and
``__fk_served_at`` (the lookup instant), ``__fk_request_id`` (one per request),
``__fk_features`` (the request's feature references) and ``__fk_served`` (per feature column, in
order, the view version it was served from, as ``view@vN:feature``).

In a file, ``__fk_features`` and ``__fk_served`` are dictionary-encoded strings holding each
list as JSON text (``["driver_stats"]``): a file has a handful of distinct lists, so each is
written once and a row costs an index (as lists of strings, the two columns were two thirds of
the writer's work). :func:`read_log` returns them as lists of strings; another reader of the
files parses the text (DuckDB: ``CAST(__fk_features AS VARCHAR[])`` or ``from_json``).
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurekit.config import ServingLogConfig
from featurekit.errors import SchemaError, StorageError, WindowError, storage_errors
from featurekit.references import canonical
from featurekit.timestamps import utc

if TYPE_CHECKING:
    from featurekit.online.serving import LookupRecipe, OnlineResponse

SERVED_AT = "__fk_served_at"
REQUEST_ID = "__fk_request_id"
FEATURES = "__fk_features"
SERVED = "__fk_served"
REQUEST_PREFIX = "__fk_request__"
FILE_PREFIX = "serving-"
_STAMP = pa.timestamp("us", tz="UTC")
_NAMES = pa.list_(pa.string())


@dataclass(frozen=True)
class LogCounters:
    """Rows (served entities) and what became of them; ``logged == written + pending + failed``."""

    logged: int  # accepted into the queue
    written: int  # in a file a reader can see
    dropped: int  # refused because ``queue_rows`` rows were waiting
    pending: int  # accepted, not yet in a file (lost if the process is killed now)
    failed: int  # lost to a write error (see ``last_error``)
    files: int  # files written
    last_error: str | None = None

    def as_dict(self) -> dict[str, int]:
        """The counts (for metrics)."""
        return {
            "logged": self.logged,
            "written": self.written,
            "dropped": self.dropped,
            "pending": self.pending,
            "failed": self.failed,
        }


def log_columns(served: Sequence[tuple[str, int, str]]) -> list[str]:
    """The log column of each served (view, version, feature): ``view:feature``, or
    ``view@vN:feature`` when the request read more than one version of the view."""
    versions: dict[str, set[int]] = {}
    for view, version, _ in served:
        versions.setdefault(view.lower(), set()).add(version)
    return [
        f"{view}@v{version}:{feature}" if len(versions[view.lower()]) > 1 else f"{view}:{feature}"
        for view, version, feature in served
    ]


def served_ref(view: str, version: int, feature: str) -> str:
    """The pinned reference of a served feature (what ``__fk_served`` holds)."""
    return f"{view}@v{version}:{feature}"


CHUNK_ROWS = 1024  # rows per buffered chunk (see _Buffer)
_first = operator.itemgetter(0)


class _Chunk:
    """Up to about :data:`CHUNK_ROWS` buffered rows: one tuple per row, then one Arrow struct array.

    A row is ``(served_at_us, request_number, feature_list_id, *keys, *outputs)``; the inputs of
    on-demand features wait in a list per input (their types are polars dtypes, converted as
    polars converts them). A lookup's share is one tuple: no per-column work. A tuple of plain
    values (numbers, strings, None, instants) is untracked by the garbage collector at its first
    collection, so buffered rows add next to nothing to later collections.

    The lookup that finds a chunk full converts it (:meth:`convert`: one ``pa.array`` of the
    rows, about 0.25 ms per :data:`CHUNK_ROWS` rows) and starts the next one, so the writer's
    own work under the interpreter lock is joining arrays and the last, partial chunk.
    """

    __slots__ = ("arrow", "requests", "rows")

    def __init__(self, requests: list[str]) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.requests: dict[str, list[Any]] = {name: [] for name in requests}
        self.arrow: tuple[pa.StructArray, dict[str, pa.Array]] | None = None  # once converted

    def convert(self, row_type: pa.StructType, requests: dict[str, Any]) -> None:
        """The chunk as Arrow; a value of the wrong type leaves it as it is (the writer then fails
        on it, as it fails on any, and counts the rows failed)."""
        try:
            self.arrow = self.to_arrow(row_type, requests)
        except Exception:  # noqa: BLE001 -- a lookup never fails for its log (Arrow's, polars' errors alike)
            return
        self.rows, self.requests = [], {}

    def to_arrow(self, row_type: pa.StructType, requests: dict[str, Any]) -> tuple[pa.StructArray, dict[str, pa.Array]]:
        """The rows as one struct array, and each request input as an array."""
        if self.arrow is not None:
            return self.arrow
        given = {name: _request_array(values, requests[name]) for name, values in self.requests.items()}
        return pa.array(self.rows, row_type), given


class _Buffer:
    """The rows of one lookup recipe waiting for the writer, in chunks of :data:`CHUNK_ROWS` rows.

    Lookups append one tuple per row to the newest chunk (under the log's lock); a full chunk is
    converted to Arrow by the lookup that starts the next one, and the writer joins the chunks'
    arrays (and converts the last, partial chunk). A chunk's list stays short, so a lookup
    appending to it never waits for a long list to be copied to grow (a 20,000-row list is,
    every 12% of growth: tens of microseconds, more when the copy page-faults).
    """

    def __init__(self, recipe: LookupRecipe) -> None:
        self.recipe = recipe  # kept while buffered, so no other recipe can take its id
        schema = recipe.schema
        self.keys = [schema.field(k) for k in recipe.entity_keys]
        names = [name for _, name in recipe.outputs]
        self.outputs = [(n, c, schema.field(n).type) for n, c in zip(names, log_columns(recipe.served), strict=True)]
        self.served = [served_ref(*s) for s in recipe.served]
        self.request = dict(recipe.request)  # request input -> its declared polars dtype
        picked = [*(f.name for f in self.keys), *names]
        # A row's fields by position (a key or feature may be named like a bookkeeping column).
        types = [_STAMP, pa.int64(), pa.int32(), *(f.type for f in self.keys), *(t for _, _, t in self.outputs)]
        self.row_type = pa.struct([pa.field(str(i), t) for i, t in enumerate(types)])
        # A response's columns in the order of a row (the entity keys, then the outputs): the
        # buffer's `pick` is the itemgetter itself, so a lookup pays no extra Python call for it.
        self.pick: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            operator.itemgetter(*picked) if len(picked) > 1 else (lambda c: (c[picked[0]],))
        )
        self.chunks = [_Chunk(list(self.request))]
        self.feature_lists: dict[tuple[Any, ...], int] = {}
        self.rows = 0

    def add(
        self,
        columns: tuple[Any, ...],
        at_us: int,
        request_id: int,
        features: Any,
        request: Any,
    ) -> None:
        """Append a response's rows (``columns``: from :meth:`pick`; ``features``: the request's
        feature references, a string or a sequence of them)."""
        rows = len(columns[0])
        chunk = self.chunks[-1]
        if len(chunk.rows) >= CHUNK_ROWS:
            chunk.convert(self.row_type, self.request)
            chunk = _Chunk(list(self.request))
            self.chunks.append(chunk)
        names = (features,) if isinstance(features, str) else tuple(features)
        feature_id = self.feature_lists.get(names)
        if feature_id is None:
            feature_id = self.feature_lists[names] = len(self.feature_lists)
        if rows == 1:  # the common case: one tuple, no per-column work
            chunk.rows.append((at_us, request_id, feature_id, *map(_first, columns)))
        else:
            chunk.rows += zip(repeat(at_us), repeat(request_id), repeat(feature_id), *columns)
        if chunk.requests:
            for name, values in chunk.requests.items():
                given = (request or {}).get(name)
                values.extend(list(given) if isinstance(given, (list, tuple)) else [given] * rows)
        self.rows += rows

    def table(self, token: str) -> pa.Table:
        """The buffered rows as a log table; request ids are ``token-N`` (``token`` unique per log)."""
        parts = [chunk.to_arrow(self.row_type, self.request) for chunk in self.chunks]
        joined = parts[0][0] if len(parts) == 1 else pa.concat_arrays([rows for rows, _ in parts])
        served_at, request_ids, feature_ids, *values = joined.flatten()
        sequence = pc.cast(request_ids, pa.string())
        arrays: dict[str, pa.Array] = {
            SERVED_AT: served_at,
            REQUEST_ID: pc.binary_join_element_wise(token, sequence, "-"),
            FEATURES: _names_column([canonical(list(f)) for f in self.feature_lists], feature_ids),
            SERVED: _names_column([self.served], pa.array(np.zeros(self.rows, np.int32))),
        }
        names = [*(key.name for key in self.keys), *(column for _, column, _ in self.outputs)]
        arrays.update(zip(names, values, strict=True))
        for name in self.request:
            given = [requests[name] for _, requests in parts]
            arrays[REQUEST_PREFIX + name] = given[0] if len(given) == 1 else pa.concat_arrays(given)
        return pa.table(arrays)


def _names_column(lists: Sequence[Sequence[str]], indices: pa.Array) -> pa.DictionaryArray:
    """Per row, one of a few lists of names: a dictionary of the lists' JSON texts (see the module's docstring)."""
    return pa.DictionaryArray.from_arrays(indices, pa.array([json.dumps(list(names)) for names in lists], pa.string()))


def _names_lists(column: pa.ChunkedArray) -> pa.Array:
    """A file's ``__fk_features`` or ``__fk_served`` as lists of names (files before the JSON text
    held the lists themselves, returned as they are)."""
    if not (pa.types.is_dictionary(column.type) or pa.types.is_string(column.type)):
        return column
    encoded = column.combine_chunks()
    if not pa.types.is_dictionary(encoded.type):
        encoded = encoded.dictionary_encode()
    lists = pa.array([json.loads(text) for text in encoded.dictionary.to_pylist()], _NAMES)
    return lists.take(encoded.indices)


def dictionary_columns(table: pa.Table) -> list[str]:
    """The Parquet columns of a log table worth a dictionary: the feature lists (already one, see
    :func:`_names_column`) and the flat columns but floats, instants and request ids, which rarely
    repeat (a dictionary of them is built, found too large and dropped: the writer's time, and a
    larger file)."""
    unique = {SERVED_AT, REQUEST_ID}
    return [
        f.name
        for f in table.schema
        if f.name not in unique and not pa.types.is_floating(f.type) and not pa.types.is_nested(f.type)
    ]


def write_options(table: pa.Table, keys: Sequence[str]) -> dict[str, Any]:
    """How a log file is written: :func:`dictionary_columns`, and min/max statistics only of the
    instants and the entity keys (what a reader filters a log by). Statistics of the feature
    lists, request ids and values took a fifth of the writer's encoding time."""
    return {"use_dictionary": dictionary_columns(table), "write_statistics": [SERVED_AT, *keys]}


class ServingLog:
    """The log of one store: bounded buffers, one writer thread, and the counters.

    Safe to share across threads; :meth:`offer` is the only method a lookup calls.
    """

    def __init__(self, folder: Path, config: ServingLogConfig) -> None:
        self.folder = folder
        self.config = config
        self._sample, self._queue_rows, self._flush_rows = config.sample, config.queue_rows, config.flush_rows
        self._lock = threading.Lock()
        self._written_cond = threading.Condition(self._lock)
        self._buffers: dict[int, _Buffer] = {}  # id(recipe) -> its waiting rows
        # Rows accepted (`_logged`), taken by the writer (`_taken`), and written or failed
        # (`_done`): a lookup updates one count; waiting = logged - taken, pending = logged - done.
        self._logged = self._taken = self._done = 0
        self._written = self._dropped = self._failed = self._files = 0
        self._requests = 0
        self._last_error: str | None = None
        self._wake = threading.Event()  # rows to write now (flush_rows reached, flush(), close())
        self._stop = threading.Event()
        self._closed = False
        self._random = random.Random().random  # noqa: S311 -- sampling, not security
        self._token = uuid.uuid4().hex[:12]
        self._sequence = 0
        with storage_errors(f"creating the serving log folder {folder}", "the store cannot log lookups"):
            folder.mkdir(parents=True, exist_ok=True)
        _prepare_writer()
        self._writer = threading.Thread(target=self._run, name="featurekit-serving-log", daemon=True)
        self._writer.start()

    # -- the lookup's side -----------------------------------------------------------------

    def offer(self, response: OnlineResponse, features: Any, request: dict[str, Any] | None) -> None:
        """Take a served response's rows (if sampled and there is room); never waits for the writer."""
        if self._sample < 1.0 and self._random() >= self._sample:
            return
        recipe = response.recipe
        if recipe is None:
            return
        with self._lock:
            buffer = self._buffers.get(id(recipe))
            if buffer is None:
                buffer = self._buffers[id(recipe)] = _Buffer(recipe)
            columns = buffer.pick(response.columns)
            rows = len(columns[0])
            logged = self._logged + rows
            if self._closed or logged - self._done > self._queue_rows:
                self._dropped += rows
                return
            self._requests += 1
            buffer.add(columns, response.at_us, self._requests, features, request)
            self._logged = logged
            full = logged - self._taken >= self._flush_rows
        if full and not self._wake.is_set():
            self._wake.set()

    # -- counters, flush, close ------------------------------------------------------------

    def counters(self) -> LogCounters:
        """The counts so far."""
        with self._lock:
            return LogCounters(
                self._logged,
                self._written,
                self._dropped,
                self._logged - self._done,
                self._failed,
                self._files,
                self._last_error,
            )

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write every row taken so far now; True when none is pending within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            target = self._logged
            while self._written + self._failed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._writer.is_alive():
                    return False
                self._wake.set()
                self._written_cond.wait(min(remaining, 0.05))
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new rows, write the waiting ones, stop the writer."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._writer.join(timeout_s)

    # -- the writer ------------------------------------------------------------------------

    def _run(self) -> None:
        _batch_priority()
        while True:
            self._wake.wait(self.config.flush_s)
            self._wake.clear()
            with self._lock:
                buffers, self._buffers, self._taken = self._buffers, {}, self._logged
            for buffer in buffers.values():
                if buffer.rows:  # (a buffer made for a lookup whose rows were then dropped is empty)
                    self._write(buffer)
            if self._stop.is_set():
                with self._lock:
                    if not self._buffers:
                        return

    def _write(self, buffer: _Buffer) -> None:
        """One file of a buffer's rows; a file that cannot be written counts its rows as failed."""
        count = buffer.rows
        try:
            self._write_file(buffer.table(self._token), [key.name for key in buffer.keys])
        except (OSError, pa.ArrowException, ValueError, TypeError, StorageError) as exc:
            with self._written_cond:
                self._failed += count
                self._done += count
                self._last_error = f"serving log {self.folder}: {count} rows not written: {exc}"
                self._written_cond.notify_all()
            return
        with self._written_cond:
            self._written += count
            self._done += count
            self._files += 1
            self._written_cond.notify_all()

    def _write_file(self, table: pa.Table, keys: list[str]) -> None:
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._token}-{self._sequence:06d}.parquet"
        temporary = self.folder / f".{name}.tmp"
        try:
            with storage_errors(f"writing the serving log file {temporary}", "its rows are counted as failed"):
                # A path, not a Python file object: Arrow then writes without taking the interpreter
                # lock for every chunk, which would make lookups wait for the writer.
                pq.write_table(table, str(temporary), **write_options(table, keys))
                descriptor = os.open(temporary, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
                os.replace(temporary, self.folder / name)
        finally:
            if temporary.exists():  # the write failed half-way
                temporary.unlink()


def _prepare_writer() -> None:
    """Run the writer's conversions and a Parquet write once, on a one-row table, into memory.

    Their one-time set-up (Arrow's first conversion of a Python list imports pandas: tenths of
    a second holding the interpreter lock in a fresh process) then happens here, when the log is
    opened, and not in the writer's first file while lookups wait for the lock.
    """
    sequence = pc.cast(pa.array([0], pa.int64()), pa.string())
    table = pa.table(
        {
            SERVED_AT: pa.array([0], _STAMP),
            REQUEST_ID: pc.binary_join_element_wise("prepare", sequence, "-"),
            FEATURES: _names_column([["view:feature"]], pa.array([0], pa.int32())),
            "value": pa.array([(0.0,)], pa.struct([("0", pa.float64())])).field(0),
        }
    )
    pq.write_table(table, pa.BufferOutputStream(), **write_options(table, ["value"]))


def _batch_priority() -> None:
    """Run the calling thread (the writer) under Linux's ``SCHED_BATCH`` where there is one.

    A thread that wakes from a sleep normally preempts the running one; the writer waking up
    would then interrupt a lookup in the middle. ``SCHED_BATCH`` takes that preference away (it
    still gets its share of the CPU); elsewhere the writer runs as any thread.
    """
    set_scheduler = getattr(os, "sched_setscheduler", None)
    batch = getattr(os, "SCHED_BATCH", None)
    if set_scheduler is None or batch is None:
        return
    with contextlib.suppress(OSError):  # a sandbox may refuse it: the log works the same, only less politely
        set_scheduler(0, batch, os.sched_param(0))


def _request_array(values: list[Any], dtype: Any) -> pa.Array:
    """A request input's values as Arrow, typed by its declared polars dtype."""
    import polars as pl

    return pl.Series(values=values, dtype=dtype, strict=False).to_arrow()


def log_files(folder: Path) -> list[Path]:
    """The log's complete files, oldest name first (temporary files of a killed writer are not)."""
    return sorted(p for p in folder.glob(f"{FILE_PREFIX}*.parquet") if p.is_file())


def read_log(path: str | Path, window: tuple[datetime | str, datetime | str] | None = None) -> pa.Table:
    """The serving log under ``path`` (a folder, or one file): one row per served entity.

    Columns: the entity keys, one per served feature (``view:feature``), the request inputs
    (``__fk_request__<name>``) and the bookkeeping columns ``__fk_served_at``,
    ``__fk_request_id``, ``__fk_features`` and ``__fk_served`` (see the module's docstring);
    files with different feature lists are combined, a feature absent from a request being null.
    ``window=(start, end)`` keeps the rows served in ``[start, end)`` (naive means UTC).
    """
    folder = Path(path)
    if folder.is_file():
        files = [folder]
    elif folder.is_dir():
        files = log_files(folder)
    else:
        raise StorageError(f"no serving log at {folder}; set online.log in featurekit.yaml and serve some lookups")
    tables = []
    for file in files:
        with storage_errors(f"cannot read the serving log file {file}"):
            try:
                table = pq.read_table(file)
            except pa.ArrowException as exc:
                raise StorageError(f"the serving log file {file} is unreadable ({exc}); move it away") from exc
        for name in (FEATURES, SERVED):
            if name in table.column_names:
                try:
                    lists = _names_lists(table.column(name))
                except (ValueError, TypeError, pa.ArrowException) as exc:
                    raise StorageError(
                        f"the serving log file {file}: its {name} column is not JSON lists of names ({exc}); "
                        "move it away"
                    ) from exc
                table = table.set_column(table.schema.get_field_index(name), name, lists)
        tables.append(table)
    if not tables:
        return pa.table({SERVED_AT: pa.array([], _STAMP), REQUEST_ID: pa.array([], pa.string())})
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise StorageError(
            f"the serving log files under {folder} disagree on a column's type ({exc}); move the files of "
            "before the change to another folder"
        ) from exc
    return in_window(table, window)


def in_window(table: pa.Table, window: tuple[datetime | str, datetime | str] | None) -> pa.Table:
    """The rows of a serving log table served in ``[start, end)`` (all rows for ``window=None``)."""
    if window is None:
        return table
    start, end = utc(window[0], "window start"), utc(window[1], "window end")
    if start >= end:
        raise WindowError(f"window start {start.isoformat()} must be before its end {end.isoformat()}")
    if SERVED_AT not in table.column_names:
        raise SchemaError(f"a serving log table needs its {SERVED_AT!r} column; it has {table.column_names}")
    served = table.column(SERVED_AT)
    keep = pc.and_(pc.greater_equal(served, pa.scalar(start, _STAMP)), pc.less(served, pa.scalar(end, _STAMP)))
    return table.filter(keep)
