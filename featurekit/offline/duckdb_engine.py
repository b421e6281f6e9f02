"""The DuckDB engine: every DuckDB SQL string of featurekit lives in this module.

One in-memory DuckDB database per store; every operation runs on its own cursor (a connection to
that database with its own registered names), so one engine is safe to share between threads
and two joins never see each other's inputs. Values (paths, bounds, TTLs) reach DuckDB only as
parameters; identifiers only through :func:`featurekit.names.quote`.

**The point-in-time join** (rule in :mod:`featurekit.offline.engine`) has two plans, chosen per
view from what the data are, with identical results:

* ``asof`` (the default): an ``ASOF JOIN`` of the spine with the feature rows' (keys, event time)
  finds each spine row's newest event time at or before it, the TTL is tested on that match, and
  an equality join on (keys, event time) brings the rows of that instant, reduced by the
  tie-break order. Cost grows with spine + feature rows, never with rows per key (dense logs,
  few keys with long histories: 1,000 entities x 2,000 rows, 100k spine, 1.1 s against 6.2 s).
* ``asof_numpy`` (chosen instead of ``asof`` for spines of at most ``NUMPY_MAX_SPINE_ROWS`` rows
  and event times in at most microseconds): the same plan with its ``ASOF JOIN`` replaced by a
  binary search in numpy (:mod:`featurekit.offline.asof_search`) over the sorted
  ``code * span + time`` keys of the rows' (keys, event time) columns alone; the matched instants
  go back to DuckDB as a table and the equality join and tie-break are the ``asof`` plan's SQL
  (dense: 25-30% less CPU). The search runs in one thread, so its wall time beats the ``ASOF
  JOIN`` only when DuckDB has one thread too: on two idle cores the ``ASOF JOIN`` was 15-40% faster
  (dense 0.49 s against 0.59 s, with 0.81 against 0.67 CPU seconds). So the engine takes it only
  with ``threads = 1`` (``offline.threads: 1``, or a CPU-starved machine where CPU seconds are
  the cost); ``DuckDBEngine(asof_in_memory=True)`` takes it wherever it applies, ``False`` never.
* ``asof_rows``: when the input says no two rows share keys and event time
  (``ViewInput.unique_times``: no tie to break), one ``ASOF JOIN`` carries the matched row's values
  directly, skipping the equality join (on tie-free dense and lowcard data 0-5% less CPU than
  ``asof``: ``python -m benchmarks.untied_asof``). Materializations do not measure it (sorting
  every batch's (key, event time) cost 0.055-0.08 CPU s per million rows, about 8% of a
  materialization, for that gain), so the registry records it as unknown and this plan is chosen
  only for inputs that declare it.
* ``range``: a hash join on the keys with the TTL range as join filter, reduced per spine row
  with ``max(struct(...))``. It enumerates every feature row of a key for each spine row of that
  key, so it is chosen only when the view's recorded entity count says spine rows per entity
  are few (at most ``RANGE_MAX_SPINE_PER_ENTITY``, in :mod:`featurekit.offline.duckdb_strategies`);
  there it skips the ASOF sort (10M feature rows, 1M entities, 1M spine: 2.1 s against 3.9 s).

Each plan reduces a view's candidate rows to one struct per spine row; asked ``matched=True``
(``explain()``), the struct also carries the matched row's event time ``__t`` (first: all rows
compared share it or it is the ordering key already) and created time ``__c``, which the final
select returns after the features. The plan chosen, and the statistic that chose it, is the join's
``strategies``.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from featurekit.errors import DataError, SourceError, StorageError
from featurekit.names import quote
from featurekit.offline import asof_search, window_blocks
from featurekit.offline.duckdb_strategies import row_strategy, window_strategy
from featurekit.offline.engine import (
    SPINE_INSTANT,
    Cancel,
    JoinStrategy,
    SourceScan,
    Spine,
    ViewInput,
    local_path,
    matched_created,
    matched_event,
)
from featurekit.offline.newest_candidates import newest_candidates
from featurekit.windows import NULL_CREATED_US, WindowFeature, WindowSpec

ROW = "__fk_row"
TS = "__fk_ts"
BUCKET = "__fk_bucket"
_STREAM_ROWS = 256_000
_FILE_ROW = "file_row_number"  # DuckDB's name for a Parquet row's position in its file


def instant(column: str, dtype: pa.DataType) -> str:
    """SQL of ``column`` as a UTC instant in microseconds, truncated toward the past.

    ``CAST`` of a nanosecond timestamp rounds to the nearest microsecond, which could put an
    instant up to 500 ns after itself; the floor keeps "at or before" exact.
    """
    if pa.types.is_timestamp(dtype) and dtype.unit == "ns":
        ns = f"epoch_ns({column})"
        return f"make_timestamptz(({ns} - (({ns} % 1000) + 1000) % 1000) // 1000)"
    return f"CAST({column} AS TIMESTAMPTZ)"


class DuckDBEngine:
    """The embedded default engine: DuckDB over Parquet files and Arrow tables."""

    name = "duckdb"

    def __init__(
        self,
        root: Path,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        asof_in_memory: bool | None = None,
    ) -> None:
        self._search_path = str(root.resolve())
        # the asof_numpy plan where it applies: True always, False never (ASOF JOIN), None (the
        # default) only when DuckDB runs one thread (``threads: 1``)
        self.asof_in_memory = asof_in_memory
        self._con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        if memory_limit is not None:
            self._con.execute("SET memory_limit = ?", [memory_limit])
        self._closed = False
        self._lock = threading.Lock()
        self._joins: weakref.WeakSet[DuckDBJoin] = weakref.WeakSet()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the engine's database, set up like every other (DuckDB-specific)."""
        if self._closed:
            raise StorageError("the feature store was closed; open a new FeatureStore")
        with self._lock:
            cursor = self._con.cursor()
        # Per-connection settings: the session zone is UTC, so a naive TIMESTAMP compares with an
        # instant as a UTC time (and results carry the zone "UTC"); relative paths inside SQL
        # sources resolve from the repo root.
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.execute("SET file_search_path = ?", [self._search_path])
        return cursor

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = self.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def close(self) -> None:
        self._closed = True
        self._con.close()

    # -- sources ---------------------------------------------------------------------------

    def _source_sql(
        self, con: duckdb.DuckDBPyConnection, scan: SourceScan, select: str, where: str = "", params: Any = ()
    ) -> duckdb.DuckDBPyRelation:
        if scan.kind == "sql":
            relation, rel_params = f"({scan.location})", []
        else:
            relation, rel_params = f"{'read_csv' if scan.kind == 'csv' else 'read_parquet'}(?)", [scan.location]
        text = f"SELECT {select} FROM {relation} AS src" + (f" WHERE {where}" if where else "")
        try:
            return con.sql(text, params=[*rel_params, *params])
        except duckdb.Error as exc:
            raise SourceError(f"cannot read {scan.label}: {_first_line(exc)}") from exc

    @contextmanager
    def _reading_source(self, scan: SourceScan) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._cursor() as con:
            try:
                yield con
            except duckdb.Error as exc:
                raise SourceError(f"cannot read {scan.label}: {_first_line(exc)}") from exc

    def source_schema(self, scan: SourceScan) -> pa.Schema:
        with self._reading_source(scan) as con:
            schema: pa.Schema = self._source_sql(con, scan, "*").limit(0).to_arrow_table().schema
            return schema

    def _window(self, scan: SourceScan, window: tuple[datetime, datetime] | None) -> tuple[str, list[Any]]:
        if window is None:
            return "", []
        ts = quote(scan.timestamp_field)
        return f"{ts} >= ? AND {ts} < ?", [window[0], window[1]]

    def source_count(self, scan: SourceScan, window: tuple[datetime, datetime] | None) -> int:
        where, params = self._window(scan, window)
        with self._reading_source(scan) as con:
            row = self._source_sql(con, scan, "count(*)", where, params).fetchall()[0]
        return int(row[0]) if row else 0

    def source_min_time(self, scan: SourceScan) -> datetime | None:
        with self._reading_source(scan) as con:
            schema = self._source_sql(con, scan, "*").limit(0).to_arrow_table().schema
            field = quote(scan.timestamp_field)
            # Through Arrow: DuckDB's Python conversion of TIMESTAMPTZ would need pytz.
            expression = instant(f"min({field})", schema.field(scan.timestamp_field).type)
            table = self._source_sql(con, scan, f"{expression} AS m").to_arrow_table()
        value: datetime | None = table.column(0)[0].as_py()
        return value

    def source_null_times(self, scan: SourceScan, sample: int) -> tuple[int, pa.Table]:
        where = f"{quote(scan.timestamp_field)} IS NULL"
        with self._reading_source(scan) as con:
            count = int(self._source_sql(con, scan, "count(*)", where).fetchall()[0][0])
            rows = self._source_sql(con, scan, "*", where).limit(sample).to_arrow_table() if count else pa.table({})
        return count, rows

    def source_batches(
        self,
        scan: SourceScan,
        window: tuple[datetime, datetime],
        partitions: int,
        keys: list[str],
        cancel: Cancel | None = None,
    ) -> Iterator[pa.Table]:
        where, params = self._window(scan, window)
        with self._reading_source(scan) as con, _interruptible(con, cancel):
            schema = self._source_sql(con, scan, "*").limit(0).to_arrow_table().schema
            casts = ", ".join(
                f"{instant(quote(c), schema.field(c).type)} AS {quote(c)}"
                for c in scan.timestamp_columns
                if c in schema.names
            )
            select = f"* REPLACE ({casts})" if casts else "*"
            if partitions <= 1 or not keys:
                yield self._source_sql(con, scan, select, where, params).to_arrow_table()
                return
            # One scan, sorted by bucket (DuckDB sorts out of core within its memory limit), cut at
            # bucket boundaries: measured 3.1 s for 10M rows in 5 buckets against 5.9 s for one
            # filtered scan per bucket. The bucket count is our own integer, not user data.
            key_list = ", ".join(quote(k) for k in keys)
            bucket = f"hash({key_list}) % {int(partitions)} AS {BUCKET}"
            relation = self._source_sql(con, scan, f"{select}, {bucket}", where, params)
            yield from _cut_at_buckets(relation.order(BUCKET).to_arrow_reader(_STREAM_ROWS))

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
        for batch in self.source_batches(scan, window, partitions, keys, cancel):
            yield batch.num_rows, transform(batch)

    # -- the point-in-time join -------------------------------------------------------------

    def point_in_time(
        self,
        spine: Spine,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None = None,
        *,
        matched: bool = False,
    ) -> DuckDBJoin:
        cursor = self.cursor()
        arrays = self.asof_in_memory
        if arrays is None:  # the numpy search runs in one thread: it wins only where DuckDB has one
            arrays = int(cursor.execute("SELECT current_setting('threads')").fetchall()[0][0]) == 1
        join = DuckDBJoin(cursor, spine, views, order, matched=matched, arrays=arrays)
        self._joins.add(join)
        return join

    @property
    def open_joins(self) -> int:
        """Joins whose cursor (and registered spine) is still held: those of live training sets."""
        return sum(1 for join in list(self._joins) if not join.closed)

    # -- newest rows, statistics ------------------------------------------------------------

    def newest_rows(
        self, view: ViewInput, window: tuple[datetime, datetime] | None = None, rows: pa.Table | None = None
    ) -> pa.Table:
        ts = quote(view.timestamp_field)
        keys = [quote(k) for k in view.join_keys]
        picked = ", ".join(f"f.{k} AS {k}" for k in keys)
        packed = ", ".join([f"__t := f.{ts}", *order_key(view, "f")])
        # An in-memory batch: (event, created) in plain integers first (newest_candidates), so
        # that the struct compares only the rows of exact ties (medium: 0.05 CPU s instead of 0.45).
        found = None if rows is None or window is not None else newest_candidates(rows, view)
        with self._cursor() as con:
            params: list[Any] = []
            if found is not None:
                single, tied = found
                con.register("__fk_single", single)  # this cursor's own names: concurrent calls never share them
                inner = f"SELECT {picked}, struct_pack({packed}) AS __fk_v FROM __fk_single f"
                if tied.num_rows:
                    con.register("__fk_tied", tied)
                    inner += f" UNION ALL SELECT {picked}, max(struct_pack({packed})) FROM __fk_tied f GROUP BY ALL"
                return self._newest_select(con, view, inner, params)
            if rows is not None:
                source = "__fk_rows"
                con.register(source, rows)
            elif view.files:
                source, params = "read_parquet(?)", [[local_path(f) for f in view.files]]
            else:
                source = "__fk_rows"
                con.register(source, view.schema.empty_table())
            since = having = ""
            if window is not None:
                # A touched entity's newest row is at least as new as its row in the window, so rows
                # older than the window cannot win: skip them (row-group statistics skip whole old
                # files), and keep the entities whose oldest remaining row falls inside the window.
                # One scan instead of a semi-join against a second one (one day at medium: 0.03 s
                # instead of 0.25 s).
                since = f" AND f.{ts} >= ?"
                having = f" HAVING min(f.{ts}) < ?"
                params += [window[0], window[1]]
            not_null = " AND ".join(f"f.{k} IS NOT NULL" for k in keys)
            inner = (
                f"SELECT {picked}, max(struct_pack({packed})) AS __fk_v "
                f"FROM {source} f WHERE {not_null}{since} GROUP BY ALL{having}"
            )
            return self._newest_select(con, view, inner, params)

    @staticmethod
    def _newest_select(con: duckdb.DuckDBPyConnection, view: ViewInput, inner: str, params: list[Any]) -> pa.Table:
        """``newest_rows`` from ``inner``'s rows: the keys and each entity's newest ``order_key`` struct ``__fk_v``."""
        keys = [quote(k) for k in view.join_keys]
        created = "NULL::BIGINT"
        if view.created_field:
            created = "CASE WHEN isinf(__fk_v.__c) THEN NULL ELSE epoch_us(__fk_v.__c) END"
        values = ", ".join(f"__fk_v.{quote('v' + str(i))} AS {quote(out)}" for i, (_, out) in enumerate(view.features))
        # Ordered by key: online stores keep rows in a B-tree on the key, and inserting in key
        # order halves the write time of a load (measured with 100k entities).
        sql = (
            f"SELECT {', '.join(keys)}, epoch_us(__fk_v.__t) AS __fk_event, {created} AS __fk_created"
            f"{', ' + values if values else ''} FROM ({inner}) ORDER BY {', '.join(keys)}"
        )
        with reading_offline():
            table: pa.Table = con.sql(sql, params=params).to_arrow_table()
        return table

    def window_events(
        self,
        view: ViewInput,
        window: tuple[datetime, datetime],
        since: datetime,
        touched_files: list[str] | None = None,
    ) -> pa.Table:
        assert view.window is not None
        if not view.files:
            return pa.table({})
        ts = quote(view.timestamp_field)
        keys = [quote(k) for k in view.join_keys]
        key_list = ", ".join(keys)
        touched = f"SELECT DISTINCT {key_list} FROM read_parquet(?) WHERE {ts} >= ? AND {ts} < ?"
        params: list[Any] = [[local_path(f) for f in view.files], *window]
        if touched_files:
            touched += f" UNION SELECT DISTINCT {key_list} FROM read_parquet(?) WHERE {ts} >= ? AND {ts} < ?"
            params += [[local_path(f) for f in touched_files], *window]
        created = "0"
        if view.created_field:
            created = f"coalesce(epoch_us({quote(view.created_field)}), {int(NULL_CREATED_US)})"
        columns = "".join(f", {quote(c)}" for c in view.window.columns)
        on = " AND ".join(f"t.{k} = f.{k}" for k in keys)
        # A touched entity with no event left still gets a row (null times): its state is emptied.
        recent = (
            f"SELECT {key_list}, epoch_us({ts}) AS __fk_o, {created} AS __fk_c{columns} "
            f"FROM read_parquet(?) WHERE {ts} >= ?"
        )
        picked = ", ".join(f"t.{k}" for k in keys)
        # Each touched entity's newest event before ``since``: what its state leaves out.
        older = (
            f"SELECT {key_list}, max(epoch_us({ts})) AS __fk_before FROM read_parquet(?) f WHERE {ts} < ? GROUP BY ALL"
        )
        before_on = " AND ".join(f"t.{k} = b.{k}" for k in keys)
        sql = (
            f"WITH t AS ({touched}) SELECT {picked}, f.* EXCLUDE ({key_list}), b.__fk_before FROM t "
            f"LEFT JOIN ({recent}) f ON {on} LEFT JOIN ({older}) b ON {before_on}"
        )
        params += [[local_path(f) for f in view.files], since, [local_path(f) for f in view.files], since]
        with self._cursor() as con, reading_offline():
            table: pa.Table = con.sql(sql, params=params).to_arrow_table()
        return table

    def summarize(self, files: list[str], columns: list[str]) -> pa.Table:
        if not files:
            return _summary([(c, 0, 0, 0, None, None, None, None) for c in columns])
        with self._cursor() as con:
            relation = con.sql("SELECT * FROM read_parquet(?) LIMIT 0", params=[[local_path(f) for f in files]])
            types = dict(zip(relation.columns, relation.types, strict=True))
            parts = ["count(*)"]
            for column in columns:
                name, numeric = quote(column), _is_numeric(str(types[column]))
                parts += [f"count({name})", f"approx_count_distinct({name})"]
                if numeric:
                    parts += [f"{agg}({name})::DOUBLE" for agg in ("min", "max", "avg", "stddev_samp")]
                else:
                    parts += ["NULL::DOUBLE", "NULL::DOUBLE", "NULL::DOUBLE", "NULL::DOUBLE"]
            with reading_offline():
                row = con.sql(
                    f"SELECT {', '.join(parts)} FROM read_parquet(?)", params=[[local_path(f) for f in files]]
                ).fetchall()[0]
        total = int(row[0])
        found = []
        for index, column in enumerate(columns):
            count, distinct, low, high, mean, std = row[1 + index * 6 : 7 + index * 6]
            found.append((column, total, total - int(count), int(distinct), low, high, mean, std))
        return _summary(found)

    def committed_rows(
        self, view: ViewInput, windows: list[tuple[datetime, datetime]] | None, columns: list[str], rows: int
    ) -> Iterator[pa.Table]:
        if not view.files or windows == []:
            return
        ts = quote(view.timestamp_field)
        where = " OR ".join(f"({ts} >= ? AND {ts} < ?)" for _ in windows or ())
        params: list[Any] = [[local_path(f) for f in view.files], *(t for w in windows or () for t in w)]
        select = ", ".join([quote(c) for c in columns]) if columns else "NULL AS __fk_none"
        with self._cursor() as con, reading_offline():
            reader = con.sql(
                f"SELECT {select} FROM read_parquet(?)" + (f" WHERE {where}" if where else ""), params=params
            ).to_arrow_reader(rows)
            for batch in reader:
                yield pa.Table.from_batches([batch])


@contextmanager
def _interruptible(con: duckdb.DuckDBPyConnection, cancel: Cancel | None) -> Iterator[None]:
    """Interrupt ``con``'s running query when ``cancel`` is set (DuckDB's interrupt is thread-safe)."""
    if cancel is None:
        yield
        return
    remove = cancel.on_cancel(con.interrupt)
    try:
        yield
    finally:
        remove()


def _is_numeric(duckdb_type: str) -> bool:
    base = duckdb_type.split("(", maxsplit=1)[0].upper()
    return base in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
        "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL",
    }  # fmt: skip


def _summary(rows: list[tuple[Any, ...]]) -> pa.Table:
    names = ["column", "rows", "nulls", "distinct", "min", "max", "mean", "std"]
    types = [pa.string(), pa.int64(), pa.int64(), pa.int64(), *[pa.float64()] * 4]
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    return pa.table({n: pa.array(c, t) for n, c, t in zip(names, columns, types, strict=True)})


def order_key(view: ViewInput, alias: str) -> list[str]:
    """Struct fields after the event time that decide "newest" on ties, then carry the values.

    Created time (null loses), then feature by feature: non-null beats null (DuckDB sorts a null
    field high, so without the flag a null would win), then the greater value.
    """
    created = (
        [f"__c := coalesce({alias}.{quote(view.created_field)}, TIMESTAMPTZ '-infinity')"] if view.created_field else []
    )
    values = []
    for i, (column, _) in enumerate(view.features):
        values += [f"{quote('n' + str(i))} := {alias}.{quote(column)} IS NOT NULL"]
        values += [f"{quote('v' + str(i))} := {alias}.{quote(column)}"]
    return created + values


@contextmanager
def reading_offline(spine_file: Path | None = None) -> Iterator[None]:
    """Turn DuckDB's failure to read stored files into a :class:`StorageError` (or a spine's DataError)."""
    try:
        yield
    except duckdb.Error as exc:
        if spine_file is not None and str(spine_file) in str(exc):
            raise DataError(
                f"the spine file {spine_file} could not be read: {_first_line(exc)}; "
                "write it again (the feature data was not touched)"
            ) from exc
        raise StorageError(
            f"reading the offline data failed: {_first_line(exc)}; run `featurekit verify` "
            "to find damaged files (other versions stay readable)"
        ) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class DuckDBJoin:
    """One training-set join on its own cursor: the spine and empty inputs are registered there only."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        spine: Spine,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None,
        *,
        matched: bool = False,
        arrays: bool = True,
    ) -> None:
        self._con = con
        self.arrays = arrays  # the asof_numpy plan may be chosen
        self._lock = threading.Lock()  # one cursor runs one query at a time
        self.closed = False
        self.spine = spine
        self.views = views
        self.order = order or [(v, f) for v, view in enumerate(views) for f in range(len(view.features))]
        self.params: list[Any] = []
        self.matched = matched  # also return the spine instant and the matched rows' times
        self.strategies: list[JoinStrategy] = []
        self._empty = itertools.count()
        self._spine_registered = False
        self._blocks: list[tuple[str, ViewInput, list[WindowFeature]]] = []  # computed before the query
        self._arrays: list[tuple[str, ViewInput]] = []  # asof_numpy matches, computed before the query
        self._blocks_ready = False
        self.sql = self._build()

    @property
    def description(self) -> str:
        plans = ", ".join(f"{s.view}: {s.name}" for s in self.strategies)
        return f"-- plans: {plans}\n{self.sql}"

    def _spine_relation(self, params: list[Any] | None = None) -> str:
        spine = self.spine
        ts = instant(quote(spine.timestamp_field), spine.schema.field(spine.timestamp_field).type)
        if spine.file is not None:
            (self.params if params is None else params).append(str(spine.file))
            scan = f"read_parquet(?, {_FILE_ROW} = true)"
            return f"SELECT * EXCLUDE ({_FILE_ROW}), {_FILE_ROW} AS {ROW}, {ts} AS {TS} FROM {scan}"
        assert spine.table is not None
        if not self._spine_registered:
            numbered = spine.table.append_column(ROW, pa.array(np.arange(spine.rows, dtype=np.int64)))
            self._con.register("__fk_spine", numbered)
            self._spine_registered = True
        return f"SELECT *, {ts} AS {TS} FROM __fk_spine"

    def _source(self, view: ViewInput, params: list[Any] | None = None) -> str:
        """SQL reading the view's rows; its parameters go to ``params`` (default: the join's)."""
        params = self.params if params is None else params
        if not view.files:
            name = f"__fk_empty_{next(self._empty)}"
            self._con.register(name, view.schema.empty_table())
            return name
        params.append([local_path(f) for f in view.files])
        if view.known_at is None:
            return "read_parquet(?)"
        assert view.created_field is not None  # checked when the training set was planned
        params.append(view.known_at)
        # A row whose write time is unknown (null created) cannot be shown to predate known_at.
        return f"(SELECT * FROM read_parquet(?) WHERE {quote(view.created_field)} <= ?)"

    def _join_view(self, view: ViewInput) -> str:
        if view.window is not None:
            return self._window_join(view, view.window)
        keys = " AND ".join(f"s.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        ts = quote(view.timestamp_field)
        ttl = view.ttl_us
        strategy = row_strategy(view, self.spine.rows, arrays=self.arrays)
        self.strategies.append(strategy)
        plan = strategy.name
        # A matched join carries the row's event time in its struct (the range plan's already does).
        event = [f"__t := f.{ts}"] if self.matched else []
        if plan == "range":
            source = self._source(view)
            lower = ""
            if ttl is not None:
                self.params.append(ttl)
                lower = f" AND f.{ts} >= s.{TS} - to_microseconds(?)"
            packed = ", ".join([f"__t := f.{ts}", *order_key(view, "f")])
            return (
                f"SELECT s.{ROW}, max(struct_pack({packed})) AS __fk_v FROM spine s JOIN {source} f "
                f"ON {keys} AND f.{ts} <= s.{TS}{lower} GROUP BY s.{ROW}"
            )
        if plan == "asof_rows":
            values = [f"{quote('v' + str(i))} := f.{quote(c)}" for i, (c, _) in enumerate(view.features)]
            created = [f"__c := f.{quote(view.created_field)}"] if self.matched and view.created_field else []
            packed = ", ".join(event + created + values)
            inside = "TRUE"
            if ttl is not None:  # its parameter precedes the source's in the SQL text
                self.params.append(ttl)
                inside = f"f.{ts} >= s.{TS} - to_microseconds(?)"
            source = self._source(view)
            return (
                f"SELECT s.{ROW}, CASE WHEN {inside} THEN struct_pack({packed or '__none := NULL'}) END AS __fk_v "
                f"FROM spine s ASOF JOIN {source} f ON {keys} AND s.{TS} >= f.{ts}"
            )
        if plan == "asof_numpy":
            table = f"__fk_match{len(self._arrays)}"
            self._arrays.append((table, view))
            matched_keys = ", ".join(f"s.{quote(k)}" for k in view.join_keys)
            match = (
                f"SELECT s.{ROW}, {matched_keys}, make_timestamptz(m.__fk_e) AS __fk_e FROM spine s "
                f"JOIN {table} m ON m.{ROW} = s.{ROW}"
            )
            return self._instant_rows(view, match, self.params)
        return self._asof_sql(view, self.params)

    def _asof_sql(self, view: ViewInput, params: list[Any]) -> str:
        """The ``asof`` plan's SQL for one view (over the CTE ``spine``); its parameters go to ``params``."""
        keys = " AND ".join(f"s.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        ts = quote(view.timestamp_field)
        key_list = ", ".join(quote(k) for k in view.join_keys)
        matched_keys = ", ".join(f"s.{quote(k)}" for k in view.join_keys)
        source = self._source(view, params)
        within = ""
        if view.ttl_us is not None:
            params.append(view.ttl_us)
            within = f" WHERE f.{ts} >= s.{TS} - to_microseconds(?)"
        match = (
            f"SELECT s.{ROW}, {matched_keys}, f.{ts} AS __fk_e FROM spine s "
            f"ASOF JOIN (SELECT {key_list}, {ts} FROM {source}) f ON {keys} AND s.{TS} >= f.{ts}{within}"
        )
        return self._instant_rows(view, match, params)

    def _instant_rows(self, view: ViewInput, match: str, params: list[Any]) -> str:
        """Each matched spine row's struct: the rows of its matched instant reduced by the tie-break.

        ``match`` is SQL of (``__fk_row``, the spine row's keys, ``__fk_e``: its matched event time).
        """
        ts = quote(view.timestamp_field)
        event = [f"__t := f.{ts}"] if self.matched else []
        source = self._source(view, params)  # its parameters follow the match's in the SQL text
        # Every row of the group has the matched event time: first in the struct, it orders nothing.
        packed = ", ".join(event + order_key(view, "f")) or "__none := NULL"
        on = " AND ".join(f"m.{quote(k)} = f.{quote(k)}" for k in view.join_keys)
        return (
            f"SELECT m.{ROW}, max(struct_pack({packed})) AS __fk_v FROM ({match}) m JOIN {source} f "
            f"ON {on} AND f.{ts} = m.__fk_e GROUP BY m.{ROW}"
        )

    def _match_table(self, index: int, view: ViewInput) -> pa.Table:
        """The ``asof_numpy`` plan's ASOF: ``__fk_row`` and ``__fk_e`` (the matched event time in
        microseconds) of each spine row with a row inside the TTL (:mod:`asof_search`)."""
        event_codes, events, query_codes, points = self._coded_rows(
            f"__fk_match_codes{int(index)}", view, [], drop_nulls=True
        )
        instants = points.column("__fk_t").to_numpy()
        times = events.column("__fk_o").to_numpy()
        query, matched = asof_search.newest_times(event_codes, times, query_codes, instants, view.ttl_us)
        return pa.table({ROW: points.column(ROW).take(pa.array(query)), "__fk_e": pa.array(matched)})

    def _window_join(self, view: ViewInput, spec: WindowSpec) -> str:
        """A window view's features: numeric ones in blocks (numpy), the others over RANGE frames."""
        by_name = {f.name: f for f in spec.features}
        wanted = [by_name[name] for name, _ in view.features]
        blocks = [f for f in wanted if window_blocks.computes(f, view.schema)]
        framed = [i for i, f in enumerate(wanted) if not window_blocks.computes(f, view.schema)]
        self.strategies.append(window_strategy(view, blocks, [wanted[i] for i in framed]))
        if not blocks:
            return self._framed_view(view, spec)
        table = f"__fk_blocks{len(self._blocks)}"
        self._blocks.append((table, view, blocks))
        # Output field i comes from the block table's column or from the frames' struct.
        source = {f.name: f"b.{quote('b' + str(k))}" for k, f in enumerate(blocks)}
        source.update({wanted[i].name: f"fr.__fk_v.{quote('v' + str(k))}" for k, i in enumerate(framed)})
        fields = [f"{quote('v' + str(i))} := {source[f.name]}" for i, f in enumerate(wanted)]
        joined = ""
        if framed:
            only = ViewInput(**{**view.__dict__, "features": [view.features[i] for i in framed]})
            joined = f" LEFT JOIN ({self._framed_view(only, spec)}) fr ON fr.{ROW} = b.{ROW}"
        return f"SELECT b.{ROW}, struct_pack({', '.join(fields)}) AS __fk_v FROM {table} b{joined}"

    def _compute_blocks(self) -> None:
        """Compute the block features of every window view and register them on this join's cursor."""
        if self._blocks_ready:
            return
        for index, (table, view, features) in enumerate(self._blocks):
            assert view.window is not None
            self._con.register(table, self._block_table(index, view, view.window, features))
        for index, (table, view) in enumerate(self._arrays):
            self._con.register(table, self._match_table(index, view))
        self._blocks_ready = True

    def _coded_rows(
        self, name: str, view: ViewInput, columns: list[str], *, drop_nulls: bool = False
    ) -> tuple[np.ndarray, pa.Table, np.ndarray, pa.Table]:
        """A view's rows and the spine's, with entity codes >= 0 (numpy) in key order.

        Returns the rows' codes, the rows (``__fk_o``: event time in microseconds, then ``columns``),
        the spine rows' codes (-1: a key with no rows, or a null key part) and the spine rows
        (``__fk_row``, ``__fk_t``: the instant in microseconds). One integer key is its own code
        (:func:`window_blocks.encode`); other keys are numbered in a temporary table ``name``.
        With ``drop_nulls``, rows with a null event time or key part are left out.
        """
        keys = [quote(k) for k in view.join_keys]
        key_list = ", ".join(keys)
        ts = quote(view.timestamp_field)
        one_integer = len(keys) == 1 and pa.types.is_integer(view.schema.field(view.join_keys[0]).type)
        con = self._con
        params: list[Any] = []
        source = self._source(view, params)
        if one_integer:  # the key is its own code (window_blocks.encode)
            code, codes_join = quote(view.join_keys[0]), ""
        else:
            codes = quote(name)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {codes} AS SELECT {key_list}, "
                f"(row_number() OVER (ORDER BY {key_list})) - 1 AS __fk_code FROM (SELECT DISTINCT {key_list} "
                f"FROM {source})",
                params,
            )
            params = []
            source = self._source(view, params)
            on = " AND ".join(f"e.{k} = c.{k}" for k in keys)
            code, codes_join = "c.__fk_code", f" JOIN {codes} c ON {on}"
        where = ""
        if drop_nulls:  # the codes' join already drops a null key part
            key_test = f" AND e.{quote(view.join_keys[0])} IS NOT NULL" if one_integer else ""
            where = f" WHERE e.{ts} IS NOT NULL{key_test}"
        values = "".join(f", e.{quote(c)}" for c in columns)
        events = con.sql(
            f"SELECT {'e.' if one_integer else ''}{code} AS __fk_code, epoch_us(e.{ts}) AS __fk_o{values} "
            f"FROM {source} e{codes_join}{where}",
            params=params,
        ).to_arrow_table()
        params = []
        spine = self._spine_relation(params)
        if one_integer:
            spine_code, spine_join = f"s.{quote(view.join_keys[0])}", ""
        else:
            spine_on = " AND ".join(f"s.{k} = c.{k}" for k in keys)
            spine_code, spine_join = "coalesce(c.__fk_code, -1)", f" LEFT JOIN {codes} c ON {spine_on}"
        points = con.sql(
            f"SELECT s.{ROW}, {spine_code} AS __fk_code, epoch_us(s.{TS}) AS __fk_t FROM ({spine}) s{spine_join}",
            params=params,
        ).to_arrow_table()
        if one_integer:
            event_codes, query_codes = window_blocks.encode(events.column("__fk_code"), points.column("__fk_code"))
        else:
            event_codes = events.column("__fk_code").to_numpy().astype(np.int64)
            query_codes = points.column("__fk_code").to_numpy().astype(np.int64)
        return event_codes, events.drop_columns(["__fk_code"]), query_codes, points.drop_columns(["__fk_code"])

    def _block_table(self, index: int, view: ViewInput, spec: WindowSpec, features: list[WindowFeature]) -> pa.Table:
        """The block features of one window view for every spine row: ``__fk_row``, ``b0``, ``b1``, ..."""
        columns = list(dict.fromkeys(f.column for f in features if f.column is not None))
        # Read unsorted: numpy sorts the rows by one fused (code, time) key (window_blocks.sort_events),
        # and rows that tie on both are then ordered by their values (window_blocks.Events.settled),
        # so the blocks and every float sum are the same on each run. At 10M rows an ORDER BY here
        # took 2.7 CPU s of the 3.2 s the query cost.
        event_codes, events, query_codes, points = self._coded_rows(f"__fk_codes{int(index)}", view, columns)
        ends = points.column("__fk_t").to_numpy() - spec.delay_us
        times = events.column("__fk_o").to_numpy()
        value_columns = {c: events.column(c).combine_chunks() for c in columns}
        del events  # the query's result: what is left is one copy of codes, times and values
        order, found = window_blocks.answer(
            event_codes,
            times,
            value_columns,
            features,
            query_codes=query_codes,
            ends=ends,
            threads=self._threads(),
        )
        result = {ROW: points.column(ROW).take(pa.array(order))}
        result.update({f"b{i}": found[f.name] for i, f in enumerate(features)})
        return pa.table(result)

    def _threads(self) -> int:
        """DuckDB's thread count (the engine's ``threads`` setting): numpy work runs that wide too."""
        rows = self._con.execute("SELECT current_setting('threads')").fetchall()
        return max(1, int(rows[0][0])) if rows else 1

    def _framed_view(self, view: ViewInput, spec: WindowSpec) -> str:
        """The window features blocks do not compute (``count_distinct``, ``first``, ``last``,
        ``last_n``, and count/min/max of columns that are not numbers), over RANGE frames.

        The spine's instants are merged into the rows: each spine row enters its key's partition
        at ``t - delay - 1`` microsecond, so a frame of ``w - 1`` preceding microseconds up to its
        peers holds exactly ``t - delay - w <= e < t - delay``. Its own columns are null and it
        carries no event flag, so it counts for nothing. None of these aggregations adds floats,
        so the order DuckDB gives rows with equal times cannot change a result.
        """
        keys = [quote(k) for k in view.join_keys]
        ts = quote(view.timestamp_field)
        columns = spec.columns
        created = "0"
        if view.created_field:
            created = f"coalesce(epoch_us({quote(view.created_field)}), {int(NULL_CREATED_US)})"
        source = self._source(view)
        events = (
            f"SELECT {', '.join(keys)}, epoch_us({ts}) AS __fk_o, {created} AS __fk_c, "
            f"NULL::BIGINT AS {ROW}, 1 AS __fk_ev{''.join(f', {quote(c)}' for c in columns)} FROM {source}"
        )
        points = (
            f"SELECT {', '.join(keys)}, epoch_us({TS}) - {int(spec.delay_us) + 1} AS __fk_o, 0 AS __fk_c, "
            f"{ROW}, NULL::INTEGER AS __fk_ev FROM spine"
        )
        by_name = {f.name: f for f in spec.features}
        wanted = [by_name[name] for name, _ in view.features]
        windows = sorted({f.window_us for f in wanted})
        named = {w: f"__fk_w{i}" for i, w in enumerate(windows)}
        values = [f"{quote('v' + str(i))} := {_framed_aggregate(f, named)}" for i, f in enumerate(wanted)]
        frames = [
            f"{named[w]} AS (PARTITION BY {', '.join(keys)} ORDER BY __fk_o "
            f"RANGE BETWEEN {int(w) - 1} PRECEDING AND CURRENT ROW)"
            for w in windows
        ]
        return (
            f"SELECT {ROW}, struct_pack({', '.join(values) or '__none := NULL'}) AS __fk_v "
            f"FROM ({events} UNION ALL BY NAME {points}) "
            f"WINDOW {', '.join(frames)} QUALIFY {ROW} IS NOT NULL"
        )

    def _build(self) -> str:
        ctes = [f"spine AS ({self._spine_relation()})"]
        selects = [", ".join(f"s.{quote(c)}" for c in self.spine.columns)]
        joins = []
        for index, view in enumerate(self.views):
            ctes.append(f"j{index} AS ({self._join_view(view)})")
            joins.append(f"LEFT JOIN j{index} ON j{index}.{ROW} = s.{ROW}")
        selects.extend(
            f"j{v}.__fk_v.{quote('v' + str(f))} AS {quote(self.views[v].features[f][1])}" for v, f in self.order
        )
        if self.matched:
            selects.append(f"s.{TS} AS {SPINE_INSTANT}")
            for v, view in enumerate(self.views):
                if view.window is not None:
                    continue
                selects.append(f"j{v}.__fk_v.__t AS {matched_event(v)}")
                created = "NULL::TIMESTAMPTZ"
                if view.created_field:  # the tie-break's stand-in for a null created time is null again
                    created = f"CASE WHEN isinf(j{v}.__fk_v.__c) THEN NULL ELSE j{v}.__fk_v.__c END"
                selects.append(f"{created} AS {matched_created(v)}")
        return (
            "WITH "
            + ",\n".join(ctes)
            + "\nSELECT "
            + ", ".join(selects)
            + " FROM spine s "
            + " ".join(joins)
            + f" ORDER BY s.{ROW}"
        )

    def to_arrow(self) -> pa.Table:
        with self._lock, reading_offline(self.spine.file):
            self._compute_blocks()
            table: pa.Table = self._con.sql(self.sql, params=self.params).to_arrow_table()
        return table

    def to_batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        with self._lock:
            with reading_offline(self.spine.file):
                self._compute_blocks()
                reader = self._con.sql(self.sql, params=self.params).to_arrow_reader(rows)
            while True:
                with reading_offline(self.spine.file):
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                yield batch

    def to_parquet(self, path: Path, metadata: dict[str, str]) -> None:
        pairs = ", ".join(f"{quote(key)}: ?" for key in metadata)
        options = f", KV_METADATA {{{pairs}}}" if metadata else ""
        with self._lock, reading_offline(self.spine.file):
            self._compute_blocks()
            self._con.execute(
                f"COPY ({self.sql}) TO ? (FORMAT parquet{options})", [*self.params, str(path), *metadata.values()]
            )

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                try:
                    self._con.close()
                except duckdb.Error:  # the engine closed its database first: nothing left to release
                    return


def _framed_aggregate(feature: WindowFeature, windows: dict[int, str]) -> str:
    """SQL of one framed window feature over its named frame (rule in :mod:`featurekit.offline.engine`)."""
    over = f"OVER {windows[feature.window_us]}"
    assert feature.column is not None  # count() and numeric aggregations are computed in blocks
    column = quote(feature.column)
    fn = feature.fn
    if fn in ("count", "min", "max"):  # of a column that is not a number
        return f"{fn}({column}) {over}"
    if fn == "count_distinct":
        return f"count(DISTINCT {column}) {over}"
    ordered = f"CASE WHEN {column} IS NOT NULL THEN struct_pack(o := __fk_o, c := __fk_c, v := {column}) END"
    if fn == "first":
        return f"(min({ordered}) {over}).v"
    if fn == "last":
        return f"(max({ordered}) {over}).v"
    assert fn == "last_n"
    assert feature.n is not None
    return f"list_transform(max({ordered}, {int(feature.n)}) {over}, lambda __fk_x: __fk_x.v)"


def _cut_at_buckets(reader: pa.RecordBatchReader) -> Iterator[pa.Table]:
    """Tables of consecutive rows with one bucket each, from batches sorted by bucket."""
    pending: list[pa.RecordBatch] = []
    current: int | None = None
    for batch in reader:
        buckets = batch.column(BUCKET).to_numpy()
        bounds = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), len(buckets)]
        for start, stop in itertools.pairwise(bounds):
            if stop == start:
                continue
            bucket = int(buckets[start])
            if current is not None and bucket != current and pending:
                yield pa.Table.from_batches(pending).drop_columns([BUCKET])
                pending = []
            current = bucket
            pending.append(batch.slice(start, stop - start))
    if pending:
        yield pa.Table.from_batches(pending).drop_columns([BUCKET])
