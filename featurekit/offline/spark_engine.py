"""The Spark engine: the offline engine protocol over a Spark session, for data that outgrows one machine.

It reads the same Parquet files the registry
resolves (so time travel and manifests hold) and implements the rules of
:mod:`featurekit.offline.engine` exactly as the DuckDB engine does; ``tests/test_engine_contract.py``
runs the same suite on both.

The training-set join is :mod:`featurekit.offline.spark_join`'s; the two modules hold every
Spark call of featurekit.

Timestamps: the session's time zone is UTC; a naive Parquet timestamp is read as TIMESTAMP_NTZ and
taken as UTC; a nanosecond timestamp is read as its integer and truncated toward the past to the
microsecond, as the DuckDB engine does.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.errors import ConfigError, FeatureFunctionError, SourceError, StorageError, WindowError
from featurekit.offline.engine import (
    Cancel,
    PartSummary,
    SourceScan,
    Spine,
    ViewInput,
    local_path,
)
from featurekit.online.window_state import CREATED, ORDER
from featurekit.timestamps import from_micros
from featurekit.windows import NULL_CREATED_US

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from featurekit.offline.spark_join import SparkJoin

ROW = "__fk_row"
TS = "__fk_ts"
_KIND = "__fk_kind"  # 0: a feature row, 1: a spine row (after feature rows of the same instant)
_MATCH = "__fk_m"
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not INT96: instants any reader reads
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
# A session featurekit builds binds to loopback unless the configuration says otherwise.
LOCAL_CONF = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


def _spark() -> Any:
    try:
        import pyspark.sql
    except ImportError as exc:
        raise ConfigError(
            "the Spark engine needs pyspark: pip install 'featurekit[spark]' (and a Java runtime, 17 or newer)"
        ) from exc
    return pyspark.sql


def build_session(master: str = "local[2]", conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session for featurekit: UTC, Arrow transfers, nanosecond timestamps as integers."""
    sql = _spark()
    _reach_master(master)
    builder = sql.SparkSession.builder.master(master).appName("featurekit")
    for key, value in {**DEFAULT_CONF, **LOCAL_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        session: SparkSession = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    except Exception as exc:  # py4j and Java failures arrive as many types
        raise ConfigError(
            f"cannot start Spark (master {master!r}): {_first_line(exc)}; check Java and the master URL"
        ) from exc
    return session


MASTER_TIMEOUT_S = 5.0  # how long a standalone master may take to accept a connection


def _reach_master(master: str, timeout: float = MASTER_TIMEOUT_S) -> None:
    """Fail within ``timeout`` when a standalone master (``spark://host:port[,host:port]``) does not answer.

    Spark itself would start the session, retry registering for a minute and leave every job
    waiting for executors; a closed port is an answer to give at once.
    """
    import socket

    if not master.startswith("spark://"):
        return
    reasons = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
                return
        except ValueError:
            raise ConfigError(
                f"Spark master {master!r}: {address!r} is not host:port; fix offline.spark.master"
            ) from None
        except OSError as exc:
            reasons.append(f"{address}: {exc.strerror or type(exc).__name__}")
    raise StorageError(
        f"the Spark master {master} does not answer ({'; '.join(reasons)}); start it (`start-master.sh`) or "
        "fix offline.spark.master in featurekit.yaml (or hand a running session: FeatureStore(repo, spark=...))"
    )


EXECUTOR_WAIT_S = 60.0  # how long a cluster may take to give a session its first executor


def executor_count(session: SparkSession) -> int:
    """The executors registered with the session's driver (the driver itself not counted)."""
    status = session.sparkContext._jsc.sc().getExecutorMemoryStatus()
    return int(status.size()) - 1


def await_executors(session: SparkSession, timeout: float = EXECUTOR_WAIT_S) -> None:
    """Fail within ``timeout`` when a cluster session has no executor to run a task on.

    A standalone master that answers but has no live worker (or whose workers' cores are all
    taken, or are smaller than ``spark.executor.cores``/``memory`` ask) accepts the application and
    leaves every job waiting, for ever, for executors it will not get. Local mode runs tasks in
    the driver; a session with dynamic allocation asks for executors only when a job starts, so
    neither is checked.
    """
    import time

    context = session.sparkContext
    master = str(context.master)
    dynamic = str(context.getConf().get("spark.dynamicAllocation.enabled", "false")).lower() == "true"
    if master.startswith("local") or dynamic:
        return
    deadline = time.monotonic() + timeout
    while executor_count(session) < 1:
        if time.monotonic() >= deadline:
            raise StorageError(
                f"the Spark master {master} gave featurekit no executor within {timeout:g} s: it has no live "
                "worker, or its workers' cores are taken by other applications or smaller than "
                "spark.executor.cores and spark.executor.memory ask; start a worker "
                f"(`start-worker.sh {master}`), free its cores, or fix offline.spark.master in featurekit.yaml "
                "(offline.spark.executor_wait_s sets how long to wait); nothing was run or committed"
            )
        time.sleep(0.2)


def _errors() -> tuple[type[BaseException], ...]:
    """The exception types a failed Spark call raises (Spark's own and py4j's bridge errors)."""
    from py4j.protocol import Py4JError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException

    return (PySparkException, Py4JError)


def _spark_reason(exc: BaseException) -> str:
    """The useful line of a Spark failure: its innermost cause, not py4j's "error calling o61"."""
    causes = re.findall(r"(?:Caused by|SparkException|Exception): (\[[A-Z_.]+\][^\n]*)", str(exc))
    return causes[-1].strip() if causes else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SparkEngine:
    """The offline engine over Spark. Safe to call from many threads (Spark sessions are)."""

    name = "spark"

    def __init__(
        self,
        session: SparkSession | None = None,
        *,
        master: str = "local[2]",
        conf: dict[str, str] | None = None,
        executor_wait_s: float = EXECUTOR_WAIT_S,
    ) -> None:
        self._owned = session is None
        self.spark = session if session is not None else build_session(master, conf)
        try:
            await_executors(self.spark, executor_wait_s)
        except StorageError:
            self.close()
            raise
        for key, value in DEFAULT_CONF.items():
            if key.startswith("spark.sql."):
                self.spark.conf.set(key, value)

    def close(self) -> None:
        if self._owned:
            self.spark.stop()

    # -- reading ----------------------------------------------------------------------------

    def _read(self, paths: list[str], label: str) -> DataFrame:
        try:
            return self.spark.read.parquet(*paths)
        except _errors() as exc:
            raise StorageError(
                f"reading {label} failed: {_spark_reason(exc)}; run `featurekit verify` to find damaged files "
                "(other versions stay readable)"
            ) from exc

    def _source(self, scan: SourceScan) -> DataFrame:
        try:
            if scan.kind == "sql":
                return self.spark.sql(scan.location)
            if scan.kind == "csv":
                return self.spark.read.csv(scan.location, header=True, inferSchema=True)
            return self.spark.read.parquet(scan.location)
        except _errors() as exc:
            raise SourceError(f"cannot read {scan.label}: {_first_line(exc)}") from exc

    def _arrow_schema(self, scan: SourceScan) -> pa.Schema | None:
        """The Parquet files' own schema (what DuckDB reports), for Parquet sources."""
        if scan.kind != "parquet":
            return None
        import glob

        files = sorted(glob.glob(local_path(scan.location))) or [local_path(scan.location)]
        try:
            return pq.read_schema(files[0])
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"cannot read {scan.label}: {exc}") from exc

    def source_schema(self, scan: SourceScan) -> pa.Schema:
        schema = self._arrow_schema(scan)
        if schema is not None:
            return pa.schema([pa.field(f.name, f.type) for f in schema])
        return _to_arrow_schema(self._run(lambda: self._source(scan).limit(0).toArrow(), scan.label).schema)

    def _instants(self, df: DataFrame, columns: list[str], schema: pa.Schema | None) -> DataFrame:
        """``columns`` as UTC instants at microsecond precision (naive = UTC, nanoseconds floored)."""
        fn = _spark().functions
        for name in columns:
            if name not in df.columns:
                continue
            dtype = schema.field(name).type if schema is not None and name in schema.names else None
            df = df.withColumn(name, _instant(fn, fn.col(name), df.schema[name].dataType.typeName(), dtype))
        return df

    def _scan(self, scan: SourceScan, window: tuple[datetime, datetime] | None) -> DataFrame:
        fn = _spark().functions
        df = self._instants(self._source(scan), list(scan.timestamp_columns), self._arrow_schema(scan))
        if window is not None:
            ts = fn.col(scan.timestamp_field)
            df = df.filter((ts >= fn.lit(window[0])) & (ts < fn.lit(window[1])))
        return df

    def _run(self, work: Any, label: str) -> Any:
        try:
            return work()
        except _errors() as exc:
            raise SourceError(f"cannot read {label}: {_first_line(exc)}") from exc

    def source_count(self, scan: SourceScan, window: tuple[datetime, datetime] | None) -> int:
        return int(self._run(lambda: self._scan(scan, window).count(), scan.label))

    def source_min_time(self, scan: SourceScan) -> datetime | None:
        fn = _spark().functions
        table = self._run(
            lambda: self._scan(scan, None).agg(fn.min(scan.timestamp_field).alias("m")).toArrow(), scan.label
        )
        value: datetime | None = table.column(0)[0].as_py()
        return value

    def source_null_times(self, scan: SourceScan, sample: int) -> tuple[int, pa.Table]:
        fn = _spark().functions
        nulls = self._source(scan).filter(fn.col(scan.timestamp_field).isNull())
        count = int(self._run(nulls.count, scan.label))
        rows = self._run(lambda: nulls.limit(sample).toArrow(), scan.label) if count else pa.table({})
        return count, rows

    def source_batches(
        self,
        scan: SourceScan,
        window: tuple[datetime, datetime],
        partitions: int,
        keys: list[str],
        cancel: Cancel | None = None,
    ) -> Iterator[pa.Table]:
        fn = _spark().functions
        df = self._scan(scan, window)
        schema = self.source_schema(scan)
        if partitions <= 1 or not keys:
            yield _conform(self._run(df.toArrow, scan.label), schema, scan)
            return
        bucket = "__fk_bucket"
        tagged = df.withColumn(bucket, fn.pmod(fn.xxhash64(*[fn.col(k) for k in keys]), fn.lit(partitions))).persist()
        try:
            for index in range(partitions):
                if cancel is not None and cancel.is_set:
                    return
                part = self._run(lambda i=index: tagged.filter(fn.col(bucket) == i).drop(bucket).toArrow(), scan.label)
                if part.num_rows:
                    yield _conform(part, schema, scan)
        finally:
            tagged.unpersist()

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
        """Run ``transform`` on the executors, one call per entity partition (all its rows at once)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        fn = _spark().functions
        schema = self.source_schema(scan)
        df = self._scan(scan, window)
        df = df.repartition(partitions, *[fn.col(k) for k in keys]) if keys and partitions > 1 else df.coalesce(1)
        ship_user_modules(transform)
        label = _function_label(transform)
        run = _PartitionRun(transform, schema, scan)
        result = df.mapInArrow(run, from_arrow_schema(spark_schema(output)))
        result = result.withColumn(_PART, fn.spark_partition_id()).persist()
        try:
            for index in range(max(partitions, 1) if keys else 1):
                if cancel is not None and cancel.is_set:
                    return
                chosen = result.filter(fn.col(_PART) == index).drop(_PART)
                part = self._executed(chosen.toArrow, label)
                if part.num_rows:
                    yield None, _cast_like(part, output)
        finally:
            result.unpersist()

    def writes_parts_of(self, output: pa.Schema) -> bool:
        """Spark's Parquet parts read back as ``output`` when every column is of a type Spark writes
        unchanged (signed integers, floats, booleans, strings, binary, dates, microsecond
        timestamps, decimals; not lists, whose item Spark names "element", nor unsigned integers)."""
        return all(_round_trips(f.type) for f in output)

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
        """Run ``transform`` on the executors and have them write its output as Parquet parts into
        ``directory`` (one Spark job, cancelled when ``cancel`` is set); then read every part back,
        whole (unless ``read_back`` is False)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        fn = _spark().functions
        schema = self.source_schema(scan)
        df = self._scan(scan, window)
        df = df.repartition(partitions, *[fn.col(k) for k in keys]) if keys and partitions > 1 else df.coalesce(1)
        ship_user_modules(transform)
        label = _function_label(transform)
        result = df.mapInArrow(_PartitionRun(transform, schema, scan), from_arrow_schema(spark_schema(output)))
        context = self.spark.sparkContext
        group = f"featurekit-{uuid.uuid4().hex}"
        context.setJobGroup(group, f"featurekit: {label}", interruptOnCancel=True)
        remove = cancel.on_cancel(lambda: context.cancelJobGroup(group)) if cancel is not None else None
        try:
            self._executed(lambda: result.write.parquet(str(directory)), label)
        finally:
            if remove is not None:
                remove()
            context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        if not read_back:
            return
        # One part is one partition, which holds whole entities: it is read back whole, so the
        # checks see the batches DuckDB's would (unique_keys and custom checks look within a batch).
        for part in sorted(directory.glob("part-*.parquet")):
            if cancel is not None and cancel.is_set:
                return
            yield _cast_like(pq.read_table(part), output)

    def summarize_parts(
        self, directory: Path, output: pa.Schema, *, profile: list[str], key: str | None, timestamp_field: str
    ) -> PartSummary:
        """Rows, distinct keys and newest event time by one Spark aggregation over the parts, and
        each partition's profile state from the executors: only these small results reach the driver."""
        from pyspark.sql.pandas.types import from_arrow_schema

        from featurekit.offline.spark_folders import ProfileRun

        fn = _spark().functions
        label = f"summarizing the parts in {directory}"
        df = self.spark.read.parquet(str(directory))
        measures = [fn.count(fn.lit(1)).alias("rows"), fn.max(fn.unix_micros(fn.col(timestamp_field))).alias("newest")]
        if key is not None:
            measures.append(fn.count_distinct(fn.col(key)).alias("entities"))
        state = from_arrow_schema(pa.schema([pa.field("state", pa.string())]))
        totals = self._executed(lambda: df.agg(*measures).collect()[0], label)
        states = self._executed(lambda: df.mapInArrow(ProfileRun(output, profile), state).collect(), label)
        newest = totals["newest"]
        return PartSummary(
            rows=int(totals["rows"]),
            entities=int(totals["entities"]) if key is not None else None,
            newest=None if newest is None else from_micros(int(newest)),
            profiles=[str(row["state"]) for row in states],
        )

    def _executed(self, work: Callable[[], Any], label: str) -> Any:
        """Run a job that calls featurekit code on executors; its featurekit error comes back as itself."""
        try:
            return work()
        except _errors() as exc:
            raise _featurekit_error(exc, label) from None

    # -- the point-in-time join -------------------------------------------------------------

    def point_in_time(
        self,
        spine: Spine,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None = None,
        *,
        matched: bool = False,
    ) -> SparkJoin:
        from featurekit.offline.spark_join import SparkJoin

        return SparkJoin(self, spine, views, order, matched=matched)

    def view_frame(self, view: ViewInput) -> DataFrame:
        """The view's rows with event and created times as instants (``known_at`` applied)."""
        fn = _spark().functions
        if view.files:
            df = self._read([local_path(f) for f in view.files], f"feature view '{view.name}'")
        else:
            df = self.spark.createDataFrame(view.schema.empty_table())
        times = [view.timestamp_field] + ([view.created_field] if view.created_field else [])
        df = self._instants(df, times, view.schema)
        if view.known_at is not None:
            assert view.created_field is not None
            df = df.filter(fn.col(view.created_field) <= fn.lit(view.known_at))
        for key in view.join_keys:
            df = df.filter(fn.col(key).isNotNull())
        return df

    def newest_rows(
        self, view: ViewInput, window: tuple[datetime, datetime] | None = None, rows: pa.Table | None = None
    ) -> pa.Table:
        if view.window is not None:
            raise WindowError(f"window view '{view.name}': newest rows are not defined for window views")
        sql = _spark()
        fn, frames = sql.functions, sql.Window
        if rows is not None:
            df = self._instants(
                self.spark.createDataFrame(rows),
                [view.timestamp_field] + ([view.created_field] if view.created_field else []),
                rows.schema,
            )
            for key in view.join_keys:
                df = df.filter(fn.col(key).isNotNull())
        else:
            df = self.view_frame(view)
        ts = fn.col(view.timestamp_field)
        if window is not None:
            df = df.filter(ts >= fn.lit(window[0]))
            entities = df.groupBy(*view.join_keys).agg(fn.min(view.timestamp_field).alias("__fk_first"))
            entities = entities.filter(fn.col("__fk_first") < fn.lit(window[1])).select(*view.join_keys)
            df = df.join(entities, on=list(view.join_keys), how="inner")
        ranked = df.withColumn(
            "__fk_rank", fn.row_number().over(frames.partitionBy(*view.join_keys).orderBy(*_newest_first(fn, view)))
        )
        created = fn.unix_micros(fn.col(view.created_field)) if view.created_field else fn.lit(None).cast("bigint")
        picked = (
            ranked.filter(fn.col("__fk_rank") == 1)
            .select(
                *[fn.col(k) for k in view.join_keys],
                fn.unix_micros(ts).alias("__fk_event"),
                created.alias("__fk_created"),
                *[fn.col(c).alias(out) for c, out in view.features],
            )
            .orderBy(*view.join_keys)
        )
        table = self._run(picked.toArrow, f"feature view '{view.name}'")
        return _cast_like(table, _newest_schema(view))

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
        fn = _spark().functions
        keys = list(view.join_keys)
        rows = self.view_frame(view)
        ts = fn.col(view.timestamp_field)
        inside = (ts >= fn.lit(window[0])) & (ts < fn.lit(window[1]))
        touched = rows.filter(inside).select(*keys).distinct()
        if touched_files:
            earlier = self.view_frame(ViewInput(**{**view.__dict__, "files": touched_files, "known_at": None}))
            touched = touched.unionByName(earlier.filter(inside).select(*keys).distinct()).distinct()
        created = fn.lit(0).cast("bigint")
        if view.created_field:
            created = fn.coalesce(fn.unix_micros(fn.col(view.created_field)), fn.lit(NULL_CREATED_US))
        recent = rows.filter(ts >= fn.lit(since)).select(
            *keys, fn.unix_micros(ts).alias(ORDER), created.alias(CREATED), *view.window.columns
        )
        before = rows.filter(ts < fn.lit(since)).groupBy(*keys).agg(fn.max(fn.unix_micros(ts)).alias("__fk_before"))
        found = touched.join(recent, on=keys, how="left").join(before, on=keys, how="left")
        table = self._run(found.toArrow, f"feature view '{view.name}'")
        fields = [view.schema.field(k) for k in keys]
        fields += [pa.field(ORDER, pa.int64()), pa.field(CREATED, pa.int64())]
        fields += [view.schema.field(c) for c in view.window.columns] + [pa.field("__fk_before", pa.int64())]
        return _cast_like(table, pa.schema(fields))

    def committed_rows(
        self, view: ViewInput, windows: list[tuple[datetime, datetime]] | None, columns: list[str], rows: int
    ) -> Iterator[pa.Table]:
        if not view.files or windows == []:
            return
        fn = _spark().functions
        df = self._read([local_path(f) for f in view.files], f"feature view '{view.name}'")
        df = self._instants(df, [view.timestamp_field], view.schema)
        if windows:
            ts = fn.col(view.timestamp_field)
            parts = [(ts >= fn.lit(low)) & (ts < fn.lit(high)) for low, high in windows]
            inside = parts[0]
            for part in parts[1:]:
                inside = inside | part
            df = df.filter(inside)
        picked = df.select(*columns) if columns else df.select(fn.lit(None).alias("__fk_none"))
        table = self._run(picked.toArrow, f"feature view '{view.name}'")
        if columns:
            table = _cast_like(table, pa.schema([view.schema.field(c) for c in columns]))
        yield from (pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=rows))

    def summarize(self, files: list[str], columns: list[str]) -> pa.Table:
        fn = _spark().functions
        names = ["column", "rows", "nulls", "distinct", "min", "max", "mean", "std"]
        types = [
            pa.string(),
            pa.int64(),
            pa.int64(),
            pa.int64(),
            pa.float64(),
            pa.float64(),
            pa.float64(),
            pa.float64(),
        ]
        if not files:
            empty: dict[str, list[Any]] = {
                n: [0 if t == pa.int64() else None] * len(columns) for n, t in zip(names, types, strict=True)
            }
            empty["column"] = list(columns)
            return pa.table({n: pa.array(empty[n], t) for n, t in zip(names, types, strict=True)})
        df = self._read([local_path(f) for f in files], "feature data")
        parts: list[Column] = [fn.count(fn.lit(1)).alias("rows")]
        numeric = {
            f.name
            for f in df.schema.fields
            if f.dataType.typeName() in ("byte", "short", "integer", "long", "float", "double", "decimal")
        }
        for i, column in enumerate(columns):
            c = fn.col(column)
            parts += [fn.count(c).alias(f"c{i}"), fn.approx_count_distinct(c).alias(f"d{i}")]
            if column in numeric:
                parts += [
                    fn.min(c).cast("double").alias(f"lo{i}"),
                    fn.max(c).cast("double").alias(f"hi{i}"),
                    fn.avg(c).alias(f"m{i}"),
                    fn.stddev_samp(c).alias(f"s{i}"),
                ]
        row = self._run(lambda: df.agg(*parts).collect()[0], "feature data")
        total = int(row["rows"])
        out: dict[str, list[Any]] = {n: [] for n in names}
        for i, column in enumerate(columns):
            out["column"].append(column)
            out["rows"].append(total)
            out["nulls"].append(total - int(row[f"c{i}"]))
            out["distinct"].append(int(row[f"d{i}"]))
            for key, field in (("min", "lo"), ("max", "hi"), ("mean", "m"), ("std", "s")):
                out[key].append(row[f"{field}{i}"] if column in numeric else None)
        return pa.table({n: pa.array(out[n], t) for n, t in zip(names, types, strict=True)})


_PART = "__fk_partition"


def _round_trips(dtype: pa.DataType) -> bool:
    t = pa.types
    if t.is_timestamp(dtype):
        return bool(dtype.unit == "us")
    return bool(
        t.is_signed_integer(dtype)
        or t.is_float32(dtype)
        or t.is_float64(dtype)
        or t.is_boolean(dtype)
        or t.is_string(dtype)
        or t.is_binary(dtype)
        or t.is_date32(dtype)
        or t.is_decimal128(dtype)
    )


def spark_type(dtype: pa.DataType) -> pa.DataType:
    """The Arrow type Spark exchanges for ``dtype`` (no large variants; lists name their item "element")."""
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype):
        return pa.binary()
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return pa.list_(pa.field("element", spark_type(dtype.value_type)))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, spark_type(f.type), f.nullable) for f in dtype])
    return dtype


def spark_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, spark_type(f.type), f.nullable) for f in schema])


def ship_user_modules(transform: Callable[[pa.Table], pa.Table]) -> None:
    """Pickle the feature repo modules ``transform`` calls by value, so executors need no copy of the repo.

    ``transform`` is ``functools.partial(run_view, view, ...)`` (or of ``checked_run``); the view's function lives in a
    module the repo loader imported from the repo folder, which executors cannot import by name,
    and so do the helper modules of that folder it imports (``from helpers import ratio``). Other
    modules are pickled by name: they (and featurekit) must be installed where the executors run.
    """
    from pyspark import cloudpickle

    from featurekit.versioning import in_repo

    for argument in getattr(transform, "args", ()):
        function = getattr(argument, "function", None)
        module = sys.modules.get(getattr(function, "__module__", "") or "")
        if module is None or module.__name__.startswith("featurekit"):
            continue
        cloudpickle.register_pickle_by_value(module)  # type: ignore[no-untyped-call]
        file = getattr(module, "__file__", None)
        if not file:
            continue
        folder = Path(file).resolve().parent
        for other in list(sys.modules.values()):
            if other is not module and in_repo(getattr(other, "__file__", None), folder):
                cloudpickle.register_pickle_by_value(other)  # type: ignore[no-untyped-call]


def _function_label(transform: Callable[[pa.Table], pa.Table]) -> str:
    """How errors name the function ``transform`` runs: "feature view 'x' (features.py:12)"."""
    for argument in getattr(transform, "args", ()):
        name, location = getattr(argument, "name", None), getattr(argument, "location", None)
        if name is not None and location is not None:
            return f"feature view '{name}' ({location})"
    return "the feature function"


class _PartitionRun:
    """What an executor runs for one partition: its rows as one Arrow table, through ``transform``.

    Picklable (Spark ships it to the executors); the view function inside it is pickled by value
    when its module is a feature repo's (see :func:`ship_user_modules`).
    """

    def __init__(self, transform: Callable[[pa.Table], pa.Table], schema: pa.Schema, scan: SourceScan) -> None:
        self.transform = transform
        self.schema = schema
        self.scan = scan

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        gathered = list(batches)
        if not gathered or not sum(b.num_rows for b in gathered):
            return
        rows = _conform(pa.Table.from_batches(gathered), self.schema, self.scan)
        output = self.transform(rows)
        yield from output.cast(spark_schema(output.schema)).to_batches()


_ERROR_LINE = re.compile(r"featurekit\.errors\.(\w+): (.+)")
# An executor that cannot unpickle the function: a module it refers to by name is not installed there.
_IMPORT_LINE = re.compile(r"^(?:ModuleNotFoundError|ImportError): (.+)$", re.MULTILINE)


def _featurekit_error(exc: BaseException, label: str = "the feature function") -> Exception:
    """The featurekit error an executor raised (Spark returns it as text), or a StorageError."""
    from featurekit import errors

    text = str(exc)
    found = _ERROR_LINE.search(text)
    if found is not None:
        kind = getattr(errors, found.group(1), None)
        if isinstance(kind, type) and issubclass(kind, errors.FeaturekitError):
            return kind(found.group(2).strip())
    missing = _IMPORT_LINE.search(text)
    if missing is not None:
        return FeatureFunctionError(
            f"{label} cannot be loaded on Spark's executors ({missing.group(1).strip()}): install that module "
            "where the executors run (their Python environment, or `spark.submit.pyFiles`), or move it into "
            "the feature repo folder, whose modules featurekit ships with the function; nothing was committed"
        )
    return StorageError(f"a Spark job failed: {_spark_reason(exc)}")


def _instant(fn: Any, column: Column, spark_type: str, arrow_type: pa.DataType | None) -> Column:
    if arrow_type is not None and pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        # exact: a decimal quotient of a multiple of 1000 (a double would round large instants)
        micros = (column - fn.pmod(column, fn.lit(1000))).cast("decimal(20,0)") / fn.lit(1000)
        floored: Column = fn.timestamp_micros(micros.cast("bigint"))
        return floored
    if spark_type == "timestamp_ntz":
        return column.cast("timestamp")
    if spark_type == "date":
        return column.cast("timestamp")
    return column


def _order_columns(fn: Any, view: ViewInput, *, ascending: bool) -> list[Column]:
    """The tie-break order after the event time: created (null loses), then each feature (non-null, value)."""
    order: list[Column] = []
    if view.created_field:
        c = fn.col(view.created_field)
        order.append(c.asc_nulls_first() if ascending else c.desc_nulls_last())
    for column, _ in view.features:
        present = fn.col(column).isNotNull()
        value = fn.col(column)
        order += [
            present.asc() if ascending else present.desc(),
            value.asc_nulls_first() if ascending else value.desc_nulls_last(),
        ]
    return order


def _newest_first(fn: Any, view: ViewInput) -> list[Column]:
    return [fn.col(view.timestamp_field).desc(), *_order_columns(fn, view, ascending=False)]


def _newest_schema(view: ViewInput) -> pa.Schema:
    fields = [view.schema.field(k) for k in view.join_keys]
    fields += [pa.field("__fk_event", pa.int64()), pa.field("__fk_created", pa.int64())]
    fields += [pa.field(out, view.schema.field(c).type) for c, out in view.features]
    return pa.schema(fields)


def _cast_like(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Spark's Arrow output in the types the DuckDB engine returns (Spark widens and renames some)."""
    columns = []
    for field in schema:
        column = table.column(field.name)
        columns.append(column.cast(field.type) if column.type != field.type else column)
    return pa.table(columns, schema=schema)


def _conform(table: pa.Table, schema: pa.Schema, scan: SourceScan) -> pa.Table:
    """A source batch with the source's own column types (timestamps as UTC microsecond instants)."""
    fields = []
    for field in schema:
        if field.name in scan.timestamp_columns:
            fields.append(pa.field(field.name, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(field)
    return _cast_like(table.select([f.name for f in fields]), pa.schema(fields))


def _to_arrow_schema(schema: pa.Schema) -> pa.Schema:
    return schema
