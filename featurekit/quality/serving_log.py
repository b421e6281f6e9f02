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
leaves behind is never read. :meth:`FeatureStore.close` writes everything still waiting.

Each row is one served entity: its entity keys, one column per served feature, named
``view:feature`` (``view@vN:feature`` for the versions of a view that one request read side by
side), the request inputs of on-demand features as ``__fk_request__<name>``, and
``__fk_served_at`` (the lookup instant), ``__fk_request_id`` (one per request),
``__fk_features`` (the request's feature references) and ``__fk_served`` (per feature column, in
order, the view version it was served from, as ``view@vN:feature``).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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


class _Chunk:
    """Up to about :data:`CHUNK_ROWS` buffered rows: one Python list per log column, then Arrow.

    The lookup that finds a chunk full converts it (:meth:`convert`, a few hundred microseconds
    once per :data:`CHUNK_ROWS` rows) and starts the next one. So the garbage collector walks
    at most one chunk of lists (it walks every item of a list in each collection of the list's
    generation: a file's 20,000 rows buffered in lists made one collection in ten walk some
    260,000 items, 1-5 ms inside whichever lookup triggered it), and the writer's own work
    under the interpreter lock shrinks to joining Arrow arrays (converting 20,000 rows of
    Python values took it 10-50 ms, during which lookups waited for the lock).
    """

    def __init__(self, names: list[str], requests: list[str]) -> None:
        self.values: dict[str, list[Any]] = {name: [] for name in names}
        self.requests: dict[str, list[Any]] = {name: [] for name in requests}
        self.served_at: list[int] = []
        self.request_ids: list[int] = []
        self.feature_ids: list[int] = []
        self.rows = 0
        self.arrow: dict[str, pa.Array] | None = None  # the columns once converted (see Buffer.columns)

    def convert(self, types: dict[str, Any], requests: dict[str, Any]) -> None:
        """The chunk as Arrow arrays; a value of the wrong type leaves it as it is (the writer then
        fails on it, as it fails on any, and counts the rows failed)."""
        try:
            arrow = {name: pa.array(values, types[name]) for name, values in self.values.items()}
            for name, values in self.requests.items():
                arrow[REQUEST_PREFIX + name] = _request_array(values, requests[name])
            arrow[SERVED_AT] = pa.array(self.served_at, _STAMP)
            arrow[REQUEST_ID] = pa.array(self.request_ids, pa.int64())
            arrow[FEATURES] = pa.array(self.feature_ids, pa.int32())
        except Exception:  # noqa: BLE001 -- a lookup never fails for its log (Arrow's, polars' errors alike)
            return
        self.arrow = arrow
        self.values, self.requests, self.served_at, self.request_ids, self.feature_ids = {}, {}, [], [], []


class _Buffer:
    """The rows of one lookup recipe waiting for the writer, in chunks of :data:`CHUNK_ROWS` rows.

    Lookups append to the newest chunk's lists (under the log's lock); a full chunk is converted
    to Arrow by the lookup that starts the next one, and the writer joins the chunks' arrays (and
    converts the last, partial chunk). A chunk's lists stay short, so a lookup appending to them
    never waits for a long list to be copied to grow (a 20,000-row list is, every 12% of growth:
    tens of microseconds, more when the copy page-faults).
    """

    def __init__(self, recipe: LookupRecipe) -> None:
        self.recipe = recipe  # kept while buffered, so no other recipe can take its id
        schema = recipe.schema
        self.keys = [schema.field(k) for k in recipe.entity_keys]
        names = [name for _, name in recipe.outputs]
        self.outputs = [(n, c, schema.field(n).type) for n, c in zip(names, log_columns(recipe.served), strict=True)]
        self.served = [served_ref(*s) for s in recipe.served]
        self.request = dict(recipe.request)  # request input -> its declared polars dtype
        self._names = [*(f.name for f in self.keys), *names]
        self._types = {**{f.name: f.type for f in self.keys}, **{n: t for n, _, t in self.outputs}}
        self.chunks = [_Chunk(self._names, list(self.request))]
        self.feature_lists: dict[tuple[Any, ...], int] = {}
        self.rows = 0

    def add(self, response: OnlineResponse, request_id: int, features: tuple[Any, ...], request: Any) -> None:
        rows = len(response)
        chunk = self.chunks[-1]
        if chunk.rows >= CHUNK_ROWS:
            chunk.convert(self._types, self.request)
            chunk = _Chunk(self._names, list(self.request))
            self.chunks.append(chunk)
        columns = response.columns
        for name, values in chunk.values.items():
            values.extend(columns[name])
        feature_id = self.feature_lists.setdefault(features, len(self.feature_lists))
        if rows == 1:  # the common case, without building lists
            chunk.served_at.append(response.at_us)
            chunk.request_ids.append(request_id)
            chunk.feature_ids.append(feature_id)
        else:
            chunk.served_at.extend([response.at_us] * rows)
            chunk.request_ids.extend([request_id] * rows)
            chunk.feature_ids.extend([feature_id] * rows)
        for name, values in chunk.requests.items():
            given = (request or {}).get(name)
            values.extend(list(given) if isinstance(given, (list, tuple)) else [given] * rows)
        chunk.rows += rows
        self.rows += rows

    def _column(self, name: str, dtype: Any) -> pa.Array:
        """One column of every chunk (``dtype``: its Arrow type; a polars dtype for request inputs)."""
        parts = []
        for chunk in self.chunks:
            if chunk.arrow is not None:
                parts.append(chunk.arrow[name])
            elif name.startswith(REQUEST_PREFIX) and name not in chunk.values:
                parts.append(_request_array(chunk.requests[name.removeprefix(REQUEST_PREFIX)], dtype))
            else:
                listed = {SERVED_AT: chunk.served_at, REQUEST_ID: chunk.request_ids, FEATURES: chunk.feature_ids}
                parts.append(pa.array(listed[name] if name in listed else chunk.values[name], dtype))
        return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)

    def table(self, token: str) -> pa.Table:
        """The buffered rows as a log table; request ids are ``token-N`` (``token`` unique per log)."""
        feature_lists = pa.array([canonical(list(f)) for f in self.feature_lists], _NAMES)
        sequence = pc.cast(self._column(REQUEST_ID, pa.int64()), pa.string())
        arrays: dict[str, pa.Array] = {
            SERVED_AT: self._column(SERVED_AT, _STAMP),
            REQUEST_ID: pc.binary_join_element_wise(token, sequence, "-"),
            FEATURES: feature_lists.take(self._column(FEATURES, pa.int32())),
            SERVED: pa.array([self.served], _NAMES).take(np.zeros(self.rows, np.int32)),
        }
        for key in self.keys:
            arrays[key.name] = self._column(key.name, key.type)
        for name, column, dtype in self.outputs:
            arrays[column] = self._column(name, dtype)
        for name, dtype in self.request.items():
            arrays[REQUEST_PREFIX + name] = self._column(REQUEST_PREFIX + name, dtype)
        return pa.table(arrays)


def dictionary_columns(table: pa.Table) -> list[str]:
    """The Parquet columns of a log table worth a dictionary: the feature lists of every row (eight
    names repeated per row: the bulk of a file) and the flat columns but floats, instants and
    request ids, which rarely repeat (a dictionary of them is built, found too large and dropped:
    the writer's time, and a larger file)."""
    unique = {SERVED_AT, REQUEST_ID}
    flat = [
        f.name
        for f in table.schema
        if f.name not in unique and not pa.types.is_floating(f.type) and not pa.types.is_nested(f.type)
    ]
    return [f"{FEATURES}.list.element", f"{SERVED}.list.element", *flat]


class ServingLog:
    """The log of one store: bounded buffers, one writer thread, and the counters.

    Safe to share across threads; :meth:`offer` is the only method a lookup calls.
    """

    def __init__(self, folder: Path, config: ServingLogConfig) -> None:
        self.folder = folder
        self.config = config
        self._lock = threading.Lock()
        self._written_cond = threading.Condition(self._lock)
        self._buffers: dict[int, _Buffer] = {}  # id(recipe) -> its waiting rows
        self._queued = 0  # rows in the buffers (not yet taken by the writer)
        self._logged = self._written = self._dropped = self._pending = self._failed = self._files = 0
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
        sample = self.config.sample
        if sample < 1.0 and self._random() >= sample:
            return
        recipe = response.recipe
        if recipe is None:
            return
        rows = len(response)
        names = (features,) if isinstance(features, str) else tuple(features)
        with self._lock:
            if self._closed or self._pending + rows > self.config.queue_rows:
                self._dropped += rows
                return
            buffer = self._buffers.get(id(recipe))
            if buffer is None:
                buffer = self._buffers[id(recipe)] = _Buffer(recipe)
            self._requests += 1
            buffer.add(response, self._requests, names, request)
            self._pending += rows
            self._logged += rows
            self._queued += rows
            full = self._queued >= self.config.flush_rows
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
                self._pending,
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
                buffers, self._buffers, self._queued = self._buffers, {}, 0
            for buffer in buffers.values():
                self._write(buffer)
            if self._stop.is_set():
                with self._lock:
                    if not self._buffers:
                        return

    def _write(self, buffer: _Buffer) -> None:
        """One file of a buffer's rows; a file that cannot be written counts its rows as failed."""
        count = buffer.rows
        try:
            self._write_file(buffer.table(self._token))
        except (OSError, pa.ArrowException, ValueError, TypeError, StorageError) as exc:
            with self._written_cond:
                self._failed += count
                self._pending -= count
                self._last_error = f"serving log {self.folder}: {count} rows not written: {exc}"
                self._written_cond.notify_all()
            return
        with self._written_cond:
            self._written += count
            self._pending -= count
            self._files += 1
            self._written_cond.notify_all()

    def _write_file(self, table: pa.Table) -> None:
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._token}-{self._sequence:06d}.parquet"
        temporary = self.folder / f".{name}.tmp"
        try:
            with storage_errors(f"writing the serving log file {temporary}", "its rows are counted as failed"):
                # A path, not a Python file object: Arrow then writes without taking the interpreter
                # lock for every chunk, which would make lookups wait for the writer.
                pq.write_table(table, str(temporary), use_dictionary=dictionary_columns(table))
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
            FEATURES: pa.array([["view:feature"]], _NAMES).take(np.zeros(1, np.int32)),
            "value": pa.array([0.0], pa.float64()),
        }
    )
    pq.write_table(table, pa.BufferOutputStream(), use_dictionary=dictionary_columns(table))


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
                tables.append(pq.read_table(file))
            except pa.ArrowException as exc:
                raise StorageError(f"the serving log file {file} is unreadable ({exc}); move it away") from exc
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
