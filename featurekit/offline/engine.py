"""The offline engine seam: what featurekit asks of the engine that scans sources and joins features.

An engine works on plain types only: Arrow tables and schemas, file URIs, and the small frozen
descriptions below (:class:`SourceScan`, :class:`ViewInput`, :class:`Spine`). It never sees a
definition, the registry or the config, so an implementation (DuckDB today, Spark next) is one
module behind this protocol, and ``tests/test_engine_contract.py`` runs the same suite on each.

The rules an engine must implement, exactly:

* **Instants.** Timestamps compare as UTC instants at microsecond precision; a naive timestamp is
  UTC; a finer (nanosecond) value is truncated toward the past before it is compared, so a spine
  row never sees an event that happened after it.
* **Point in time.** For a spine row (keys k, time t) and a view with TTL d, the feature row of
  keys k with the greatest event time e where ``t - d <= e <= t`` (no TTL: no lower bound); ties
  on e go to the greatest created time (a null created loses), then feature by feature in order
  a non-null value beats a null one and a greater value a smaller one, so a rebuild is bit for
  bit the same. No such row: nulls. Keys compare column by column; a key with a null part matches
  nothing. The spine comes back whole, in order, with its own columns first.
* **Newest.** Each entity's newest row is chosen by the very same order (what the online store holds).
* **Windows.** For a view with a :class:`~featurekit.windows.WindowSpec`, each feature (an
  aggregation ``fn`` of ``column`` over a window w) of a spine row (keys k, time t) aggregates the
  rows of keys k with ``t - delay - w <= e < t - delay`` (every row counts, nulls of the column are
  ignored; ``featurekit.agg`` states each aggregation's empty value). ``first``/``last``/``last_n``
  order rows by (event time, created time with null first, value). ``features`` pairs each
  feature name with its output column.
* **Matched rows.** Asked with ``matched=True``, the join also returns the instant each spine row
  was compared at (:data:`SPINE_INSTANT`: UTC, truncated as above) and, for each view ``v`` that is
  not a window view, the event and created time of the row it matched (:func:`matched_event`,
  :func:`matched_created`; null where nothing matched, and a null created time stays null).
  It is the same join, not a second one: the times are those of the rows whose values it returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import pyarrow as pa

from featurekit.windows import WindowSpec

# A TTL this long reaches past every representable timestamp: it means "no lower bound".
UNBOUNDED_TTL_US = 10_000 * 366 * 86_400 * 1_000_000


class Cancel:
    """A flag a caller sets to stop long work; an engine hooks its own interrupt onto it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], object]] = []

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()

    def on_cancel(self, hook: Callable[[], object]) -> Callable[[], None]:
        """Run ``hook`` when the flag is set (at once if it is); returns the function that removes it."""
        with self._lock:
            self._hooks.append(hook)
            already = self._event.is_set()
        if already:
            hook()

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove


@dataclass(frozen=True)
class SourceScan:
    """One source as an engine reads it: files (Parquet or CSV) or a query in the engine's SQL."""

    kind: Literal["parquet", "csv", "sql"]
    location: str  # an absolute path or glob, or the query text
    timestamp_field: str
    timestamp_columns: tuple[str, ...]  # cast to UTC instants on the way out (event, created)
    label: str  # how errors name it: "source file /x/trips.parquet", "SQL source at features.py:12"


@dataclass(frozen=True)
class ViewInput:
    """What the join and the newest-row reduction need to know about one view's committed data."""

    name: str
    files: list[str]  # URIs of the data version's files (empty: no rows)
    schema: pa.Schema
    join_keys: list[str]
    timestamp_field: str
    created_field: str | None
    ttl: timedelta | None
    features: list[tuple[str, str]]  # (stored column, output column)
    known_at: datetime | None = None  # bitemporal read: only rows created at or before it
    entities: int | None = None  # distinct keys of the data (a statistic the engine may plan with)
    unique_times: bool = False  # no two rows share keys and event time (recorded at materialize)
    window: WindowSpec | None = None  # a window view: features aggregate the rows (see below)

    @property
    def ttl_us(self) -> int | None:
        """The TTL in microseconds, or None when it bounds nothing (none, or longer than all time)."""
        if self.ttl is None:
            return None
        micros = (self.ttl.days * 86_400 + self.ttl.seconds) * 1_000_000 + self.ttl.microseconds
        return None if micros >= UNBOUNDED_TTL_US else micros


@dataclass(frozen=True)
class Spine:
    """A checked spine: an Arrow table in memory, a Parquet file the engine scans itself, or an
    engine's own frame (a Spark DataFrame for the Spark engine, numbered in its order)."""

    schema: pa.Schema
    timestamp_field: str
    rows: int
    table: pa.Table | None = None
    file: Path | None = None
    frame: Any = None

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


SPINE_INSTANT = "__fk_spine_instant"  # a matched join's column: the spine time as the join compared it


def matched_event(view: int) -> str:
    """The column of a ``matched=True`` join holding the event time of view ``view``'s matched row."""
    return f"__fk_event_{int(view)}"


def matched_created(view: int) -> str:
    """The column of a ``matched=True`` join holding the created time of view ``view``'s matched row."""
    return f"__fk_created_{int(view)}"


@dataclass(frozen=True)
class JoinStrategy:
    """How the engine joins one view, and why it chose that way (for ``explain``)."""

    view: str
    name: str  # the engine's name of the plan, e.g. "asof", "range", "window(blocks)"
    reason: str  # the statistics or properties of the input that chose it


class JoinResult(Protocol):
    """A planned point-in-time join; nothing runs until a result is asked for."""

    @property
    def description(self) -> str:
        """The plan as the engine runs it (SQL for DuckDB), for inspection and ``explain``."""
        ...

    @property
    def strategies(self) -> list[JoinStrategy]:
        """The strategy taken for each view, in the order of the views."""
        ...

    def to_arrow(self) -> pa.Table: ...

    def to_batches(self, rows: int) -> Iterator[pa.RecordBatch]: ...

    def to_parquet(self, path: Path, metadata: dict[str, str]) -> None:
        """Stream the result into one Parquet file with ``metadata`` in its footer."""
        ...

    def close(self) -> None:
        """Release what the join holds (registered inputs, cursors); idempotent."""
        ...


class OfflineEngine(Protocol):
    """The engine every offline operation goes through. Safe to call from many threads at once."""

    name: str

    def source_schema(self, scan: SourceScan) -> pa.Schema:
        """The source's columns as stored (timestamps not yet converted)."""
        ...

    def source_count(self, scan: SourceScan, window: tuple[datetime, datetime] | None) -> int:
        """Rows whose event time lies in ``[start, end)`` (all rows when ``window`` is None)."""
        ...

    def source_min_time(self, scan: SourceScan) -> datetime | None:
        """The earliest event time, or None for an empty source."""
        ...

    def source_null_times(self, scan: SourceScan, sample: int) -> tuple[int, pa.Table]:
        """How many rows have a null event time, and the first ``sample`` of them."""
        ...

    def source_batches(
        self,
        scan: SourceScan,
        window: tuple[datetime, datetime],
        partitions: int,
        keys: list[str],
        cancel: Cancel | None = None,
    ) -> Iterator[pa.Table]:
        """The window's rows (timestamps as UTC instants) in about ``partitions`` batches.

        All rows of one entity (equal ``keys``) arrive in the same batch. Setting ``cancel``
        interrupts the scan promptly, even inside one long query.
        """
        ...

    def transformed_batches(
        self,
        scan: SourceScan,
        window: tuple[datetime, datetime],
        partitions: int,
        keys: list[str],
        *,
        transform: Callable[[pa.Table], pa.Table],
        output: pa.Schema,
        cancel: Cancel | None = None,
    ) -> Iterator[tuple[int | None, pa.Table]]:
        """:meth:`source_batches` with each batch passed through ``transform`` (whose output is ``output``).

        ``transform`` is picklable: an engine may run it in other processes or on other machines
        (Spark runs it on its executors). Yields (source rows of the batch if known, output).
        """
        ...

    def point_in_time(
        self,
        spine: Spine,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None = None,
        *,
        matched: bool = False,
    ) -> JoinResult:
        """Plan the training-set join; ``order`` lists (view, feature) per output column (default: all).

        ``matched``: also return the spine instant and each row view's matched event and created
        time, after the features (see "Matched rows" above).
        """
        ...

    def newest_rows(
        self, view: ViewInput, window: tuple[datetime, datetime] | None = None, rows: pa.Table | None = None
    ) -> pa.Table:
        """Each entity's newest row: keys, ``__fk_event``, ``__fk_created`` (microseconds), features.

        With ``window``, only entities with rows in it; with ``rows``, those rows instead of the
        view's files. Rows with a null key part are left out.
        """
        ...

    def window_events(
        self,
        view: ViewInput,
        window: tuple[datetime, datetime],
        since: datetime,
        touched_files: list[str] | None = None,
    ) -> pa.Table:
        """The events a window view's online state needs: every row at or after ``since`` of each
        entity with rows in ``window`` (in the view's files, or in ``touched_files``: the data
        version they replace). Columns: keys, ``__fk_o`` and ``__fk_c`` (event and created time in
        microseconds, a null created as the smallest int64 + 1), the window spec's columns, and
        ``__fk_before``: the entity's newest event time before ``since`` (null: none). A touched
        entity with no row since ``since`` comes back as one row with null times.
        """
        ...

    def summarize(self, files: list[str], columns: list[str]) -> pa.Table:
        """Statistics of ``columns`` over ``files``: one row per column.

        Columns: ``column``, ``rows``, ``nulls``, ``distinct`` (approximate), and for numbers
        ``min``, ``max``, ``mean``, ``std`` (float64; null for other types).
        """
        ...

    def committed_rows(
        self, view: ViewInput, windows: list[tuple[datetime, datetime]] | None, columns: list[str], rows: int
    ) -> Iterator[pa.Table]:
        """``columns`` of the view's rows whose event time lies in one of ``windows`` (None: every
        row), in batches of about ``rows`` rows (for profiles of committed data)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PartSummary:
    """A materialization's written parts, summarized by the engine that wrote them."""

    rows: int
    entities: int | None  # distinct values of the key asked for (None: none asked for)
    newest: datetime | None  # the greatest event time
    profiles: list[str]  # mergeable profile states (featurekit.quality.profiling.ProfileState JSON)


@runtime_checkable
class PartWriter(Protocol):
    """An engine that can write a materialization's output itself (Spark: its executors write).

    featurekit stays the only committer: the engine writes Parquet parts into a new folder the
    table format hands out, then yields every written row back (in ``output``'s types) for the
    checks and statistics, or, when nothing needs the rows (no checks, no online load), only
    summarizes them (:meth:`summarize_parts`); the table format commits the parts as one transaction.
    """

    def transformed_parts(
        self,
        scan: SourceScan,
        window: tuple[datetime, datetime],
        partitions: int,
        keys: list[str],
        *,
        transform: Callable[[pa.Table], pa.Table],
        output: pa.Schema,
        directory: Path,
        cancel: Cancel | None = None,
        read_back: bool = True,
    ) -> Iterator[pa.Table]:
        """:meth:`OfflineEngine.transformed_batches`, written as ``part-*.parquet`` files into the new
        folder ``directory`` (all of them before the first row is yielded back; each part is one
        batch, holding whole entities). Asked only when :meth:`writes_parts_of` holds for
        ``output``. With ``read_back=False`` the parts are written and nothing is yielded."""
        ...

    def summarize_parts(
        self, directory: Path, output: pa.Schema, *, profile: list[str], key: str | None, timestamp_field: str
    ) -> PartSummary:
        """What the materialization records of the parts in ``directory``, computed where they are
        (Spark: on the executors), so that no row need come to this process."""
        ...

    def writes_parts_of(self, output: pa.Schema) -> bool:
        """Whether the engine's Parquet parts of ``output`` read back as exactly ``output``'s types."""
        ...


def uri_scheme(location: str) -> str | None:
    """The scheme of a URI such as ``s3a://bucket/train/`` or ``file:///tmp/x`` (lowercase), or None
    for a local path (a Windows drive letter is not a scheme)."""
    import re

    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+)://", location)
    return match.group(1).lower() if match else None


def local_path(uri: str) -> str:
    """The local path of a ``file://`` URI (percent-decoded); other strings are returned as they are."""
    from urllib.parse import unquote, urlsplit

    if uri.startswith("file:"):
        return unquote(urlsplit(uri).path)
    return uri


def as_uri(path: str | Path) -> str:
    """A ``file://`` URI of a local path (percent-encoded: spaces, ``#``, ``%`` and non-ASCII survive)."""
    return Path(path).resolve().as_uri()
