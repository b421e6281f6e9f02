"""The serving log: what ``online_features`` served, appended to Parquet files off the lookup's path.

Opt-in with ``online.log`` in ``featurekit.yaml`` (every online store type)::

    online:
      log: {path: serving_log, sample: 0.01}

A lookup that is sampled (``sample`` is the share of lookup *requests* logged; all the entities of
a sampled request are logged) hands its response to a bounded queue and returns: it never waits
for the disk. One background thread per store drains the queue and writes a Parquet file when
``flush_rows`` rows wait or ``flush_s`` seconds after its last file. When ``queue_rows`` rows are
already waiting, a lookup's rows are dropped and counted instead (a request of more than
``queue_rows`` entities is always dropped).

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

import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurekit.config import ServingLogConfig
from featurekit.errors import SchemaError, StorageError, WindowError, storage_errors
from featurekit.timestamps import utc

if TYPE_CHECKING:
    from featurekit.online.serving import LookupRecipe, OnlineResponse

SERVED_AT = "__fk_served_at"
REQUEST_ID = "__fk_request_id"
FEATURES = "__fk_features"
SERVED = "__fk_served"
REQUEST_PREFIX = "__fk_request__"
FILE_PREFIX = "serving-"
_POLL_S = 0.05  # how often the writer looks at the queue
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


@dataclass(frozen=True)
class _Layout:
    """How one lookup recipe's responses become log columns."""

    keys: list[pa.Field]  # entity keys, with their registered types
    outputs: list[tuple[str, str, pa.DataType]]  # (response column, log column, type)
    served: list[str]  # pinned references, in output order
    request: dict[str, Any]  # request input -> its declared polars dtype


def _layout(recipe: LookupRecipe) -> _Layout:
    schema = recipe.schema
    keys = [schema.field(k) for k in recipe.entity_keys]
    names = [name for _, name in recipe.outputs]
    columns = log_columns(recipe.served)
    outputs = [(n, c, schema.field(n).type) for n, c in zip(names, columns, strict=True)]
    return _Layout(keys, outputs, [served_ref(*s) for s in recipe.served], dict(recipe.request))


class _Record(NamedTuple):
    recipe: LookupRecipe
    at_us: int
    features: list[str]
    columns: dict[str, list[Any]]
    request: dict[str, Any] | None
    rows: int


class ServingLog:
    """The log of one store: a bounded queue, one writer thread, and the counters.

    Safe to share across threads; :meth:`offer` is the only method a lookup calls.
    """

    def __init__(self, folder: Path, config: ServingLogConfig) -> None:
        self.folder = folder
        self.config = config
        self._queue: deque[_Record] = deque()
        self._lock = threading.Lock()
        self._written_cond = threading.Condition(self._lock)
        self._logged = self._written = self._dropped = self._pending = self._failed = self._files = 0
        self._last_error: str | None = None
        self._flush_now = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._random = random.Random().random  # noqa: S311 -- sampling, not security
        self._layouts: dict[int, tuple[LookupRecipe, _Layout]] = {}  # the recipe kept: its id stays unique
        self._sequence = 0
        with storage_errors(f"cannot create the serving log folder {folder}"):
            folder.mkdir(parents=True, exist_ok=True)
        self._writer = threading.Thread(target=self._run, name="featurekit-serving-log", daemon=True)
        self._writer.start()

    # -- the lookup's side -----------------------------------------------------------------

    def offer(self, response: OnlineResponse, features: Any, request: dict[str, Any] | None) -> None:
        """Queue a served response (if sampled and there is room); never waits for the writer."""
        sample = self.config.sample
        if sample < 1.0 and self._random() >= sample:
            return
        recipe = response.recipe
        if recipe is None:
            return
        rows = len(response)
        columns = {name: list(values) for name, values in response.columns.items()}
        names = [features] if isinstance(features, str) else list(features)
        record = _Record(recipe, response.at_us, names, columns, dict(request) if request else None, rows)
        with self._lock:
            if self._closed or self._pending + rows > self.config.queue_rows:
                self._dropped += rows
                return
            self._pending += rows
            self._logged += rows
            self._queue.append(record)

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
        """Write every row accepted so far now; True when none is pending within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            target = self._logged
            while self._written + self._failed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._writer.is_alive():
                    return False
                self._flush_now.set()
                self._written_cond.wait(min(remaining, _POLL_S))
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new rows, write the waiting ones, stop the writer."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._writer.join(timeout_s)

    # -- the writer ------------------------------------------------------------------------

    def _run(self) -> None:
        buffer: list[_Record] = []
        buffered = 0
        last_file = time.monotonic()
        while True:
            stopping = self._stop.wait(_POLL_S)
            with self._lock:
                while self._queue:
                    record = self._queue.popleft()
                    buffer.append(record)
                    buffered += record.rows
            now = time.monotonic()
            due = buffered >= self.config.flush_rows or now - last_file >= self.config.flush_s
            if buffer and (due or stopping or self._flush_now.is_set()):
                self._flush_now.clear()
                self._write(buffer)
                buffer, buffered, last_file = [], 0, now
            elif not buffer:
                self._flush_now.clear()
                last_file = now if now - last_file >= self.config.flush_s else last_file
            if stopping:
                with self._lock:
                    if not self._queue:
                        return

    def _write(self, records: list[_Record]) -> None:
        """One file per lookup layout among ``records``; a file that cannot be written counts as failed."""
        groups: dict[int, list[_Record]] = {}
        for record in records:
            groups.setdefault(id(record.recipe), []).append(record)
        for group in groups.values():
            count = sum(r.rows for r in group)
            try:
                self._write_file(self._table(self._layout_of(group[0].recipe), group))
            except (OSError, pa.ArrowException, ValueError, TypeError, StorageError) as exc:
                with self._written_cond:
                    self._failed += count
                    self._pending -= count
                    self._last_error = f"serving log {self.folder}: {count} rows not written: {exc}"
                    self._written_cond.notify_all()
                continue
            with self._written_cond:
                self._written += count
                self._pending -= count
                self._files += 1
                self._written_cond.notify_all()

    def _write_file(self, table: pa.Table) -> None:
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{FILE_PREFIX}{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{self._sequence:06d}.parquet"
        temporary = self.folder / f".{name}.tmp"
        try:
            with storage_errors(f"writing the serving log file {temporary}", "its rows are counted as failed"):
                with temporary.open("wb") as out:
                    pq.write_table(table, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.folder / name)
        finally:
            if temporary.exists():  # the write failed half-way
                temporary.unlink()

    def _layout_of(self, recipe: LookupRecipe) -> _Layout:
        cached = self._layouts.get(id(recipe))
        if cached is None:
            if len(self._layouts) > 1000:  # recipes of old applies: let them go
                self._layouts.clear()
            cached = self._layouts[id(recipe)] = (recipe, _layout(recipe))
        return cached[1]

    @staticmethod
    def _table(layout: _Layout, records: list[_Record]) -> pa.Table:
        request_ids: list[str] = []
        served_at: list[int] = []
        features: list[list[str]] = []
        keys: dict[str, list[Any]] = {f.name: [] for f in layout.keys}
        outputs: dict[str, list[Any]] = {name: [] for name, _, _ in layout.outputs}
        requests: dict[str, list[Any]] = {name: [] for name in layout.request}
        for record in records:
            rows = record.rows
            request_ids.extend([uuid.uuid4().hex] * rows)
            served_at.extend([record.at_us] * rows)
            features.extend([record.features] * rows)
            for name, values in keys.items():
                values.extend(record.columns[name])
            for name, values in outputs.items():
                values.extend(record.columns[name])
            for name, values in requests.items():
                given = (record.request or {}).get(name)
                values.extend(list(given) if isinstance(given, (list, tuple)) else [given] * rows)
        count = len(served_at)
        arrays: dict[str, pa.Array] = {
            SERVED_AT: pa.array(served_at, _STAMP),
            REQUEST_ID: pa.array(request_ids, pa.string()),
            FEATURES: pa.array(features, _NAMES),
            SERVED: pa.array([layout.served] * count, _NAMES),
        }
        for key in layout.keys:
            arrays[key.name] = pa.array(keys[key.name], key.type)
        for name, column, dtype in layout.outputs:
            arrays[column] = pa.array(outputs[name], dtype)
        for name, dtype in layout.request.items():
            arrays[REQUEST_PREFIX + name] = _request_array(requests[name], dtype)
        return pa.table(arrays)


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
