"""The training-set join on Spark (:class:`SparkJoin`), and the spines and outputs it takes and gives.

The Spark engine's other half (:mod:`featurekit.offline.spark_engine` holds the engine, its
session and the source scans; the two are every Spark call of featurekit).

**The point-in-time join** is one plan that holds on every data shape: the spine's rows and the
view's rows are unioned per key and ordered by (time, feature rows before spine rows at equal
times, then the tie-break order); each spine row takes the last feature row before it with
``last(..., ignorenulls)`` over a running window, and the TTL is tested on that match. Its cost
is a sort of spine + feature rows per key, never a pairing of rows per key, so dense logs and few
keys with long histories stay linear.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.errors import StorageError
from featurekit.offline.engine import (
    SPINE_INSTANT,
    JoinStrategy,
    Spine,
    ViewInput,
    matched_created,
    matched_event,
)
from featurekit.offline.spark_engine import (
    _KIND,
    _MATCH,
    ROW,
    TS,
    _cast_like,
    _errors,
    _spark,
    _spark_reason,
    spark_type,
)
from featurekit.online.window_state import CREATED, ORDER, state_schema
from featurekit.windows import NULL_CREATED_US, WindowFeature, WindowSpec, feature_type

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from featurekit.offline.spark_engine import SparkEngine
    from featurekit.offline.spark_folders import SparkFolder


class _WindowRun:
    """What an executor runs for one key: its events and its spine rows, all windows at once."""

    def __init__(
        self, features: list[WindowFeature], order: list[int], delay_us: int, layout: pa.Schema, output: pa.Schema
    ) -> None:
        self.features = features
        self.order = order
        self.delay_us = delay_us
        self.layout = layout
        self.output = output

    def compute(self, events: pa.Table, points: pa.Table) -> pa.Table:
        """One key's windows."""
        from featurekit.online.window_values import WindowValues

        if not points.num_rows:
            return self.output.empty_table()
        sort = [(ORDER, "ascending")] + ([(CREATED, "ascending")] if CREATED in self.layout.names else [])
        ordered = events.select(self.layout.names).cast(self.layout).sort_by(sort).combine_chunks()
        batch = ordered.to_batches()[0] if ordered.num_rows else pa.RecordBatch.from_pylist([], schema=self.layout)
        values = WindowValues(self.features, self.delay_us, self.layout).at_instants(
            batch, points.column("__fk_t").to_numpy()
        )
        columns = [points.column(ROW)]
        columns += [pa.array(values[j], self.output.field(i + 1).type) for i, j in enumerate(self.order)]
        return pa.table(columns, schema=self.output)


def collect_frame(frame: DataFrame, what: str) -> pa.Table:
    """A Spark DataFrame's rows as one Arrow table on the driver (for an engine that is not Spark)."""
    try:
        table: pa.Table = frame.toArrow()
    except _errors() as exc:
        raise StorageError(f"collecting the {what} from Spark failed: {_spark_reason(exc)}") from exc
    return table


def spark_frame_of(session: SparkSession, table: pa.Table) -> DataFrame:
    """An Arrow table as a Spark DataFrame of ``session``."""
    try:
        frame: DataFrame = session.createDataFrame(table)
    except _errors() as exc:
        raise StorageError(f"handing the training set to Spark failed: {_spark_reason(exc)}") from exc
    return frame


class NumberedSpine:
    """A Spark DataFrame spine, numbered in its own order and cached, so every branch of the join
    (one per view, and the spine's own columns) sees the same row numbers."""

    def __init__(self, frame: DataFrame) -> None:
        fn = _spark().functions
        try:
            self.schema = frame.limit(0).toArrow().schema
            self.frame = frame.withColumn(ROW, fn.monotonically_increasing_id()).persist()
            self.rows = int(self.frame.count())
        except _errors() as exc:
            raise StorageError(f"reading the spine (a Spark DataFrame) failed: {_spark_reason(exc)}") from exc

    def digest(self) -> str:
        """The manifest's digest of the spine, one column on the driver at a time (as of a spine file)."""
        from featurekit.manifest import columns_digest

        ordered = self.frame.orderBy(ROW)

        def column(name: str) -> pa.ChunkedArray:
            return collect_frame(ordered.select(name), "spine").column(0)

        return columns_digest(self.rows, ((name, column(name)) for name in self.schema.names))


class SparkJoin:
    """One planned training-set join on Spark; nothing runs until a result is asked for."""

    def __init__(
        self,
        engine: SparkEngine,
        spine: Spine,
        views: list[ViewInput],
        order: list[tuple[int, int]] | None,
        *,
        matched: bool = False,
    ) -> None:
        self.matched = matched
        self.engine = engine
        self.spine = spine
        self.views = views
        self.order = order or [(v, f) for v, view in enumerate(views) for f in range(len(view.features))]
        self._frame: DataFrame | None = None
        self._slices: tuple[int, int] | None = None

    @property
    def description(self) -> str:
        return "spark: " + ", ".join(f"{v.name}: running last match" for v in self.views)

    @property
    def strategies(self) -> list[JoinStrategy]:
        rows = "one plan on every data shape: spine and feature rows sorted per key, the last match taken"
        windows = "each key's events and spine rows meet in one executor call (the online lookups' code)"
        return [
            JoinStrategy(v.name, "window(per key)", windows)
            if v.window is not None
            else JoinStrategy(v.name, "running_last", rows)
            for v in self.views
        ]

    def _spine_frame(self) -> DataFrame:
        fn = _spark().functions
        spark = self.engine.spark
        if self.spine.frame is not None:
            df = self.spine.frame
        elif self.spine.file is not None:
            df = self.engine._read([str(self.spine.file)], f"spine {self.spine.file}").withColumn(
                ROW, fn.monotonically_increasing_id()
            )
        else:
            assert self.spine.table is not None
            import numpy as np

            numbered = self.spine.table.append_column(ROW, pa.array(np.arange(self.spine.rows, dtype=np.int64)))
            df = spark.createDataFrame(numbered)
        ts = self.spine.timestamp_field
        return self.engine._instants(df.withColumn(TS, fn.col(ts)), [TS], self.spine.schema)

    def _join_view(self, spine: DataFrame, view: ViewInput) -> DataFrame:
        sql = _spark()
        fn, frames = sql.functions, sql.Window
        features = self.engine.view_frame(view)
        keys = list(view.join_keys)
        created = fn.col(view.created_field) if view.created_field else fn.lit(None).cast("timestamp")
        payload = fn.struct(
            fn.col(view.timestamp_field).alias("__e"),
            created.alias("__c"),
            *[fn.col(c).alias(f"v{i}") for i, (c, _) in enumerate(view.features)],
        )
        order_cols = ([view.created_field] if view.created_field else []) + [c for c, _ in view.features]
        rows = features.select(
            *[fn.col(k) for k in keys],
            fn.col(view.timestamp_field).alias(TS),
            fn.lit(0).alias(_KIND),
            fn.lit(None).cast("bigint").alias(ROW),
            payload.alias(_MATCH),
            *[fn.col(c).alias(f"__o{i}") for i, c in enumerate(order_cols)],
        )
        points = spine.select(
            *[fn.col(k) for k in keys],
            fn.col(TS),
            fn.lit(1).alias(_KIND),
            fn.col(ROW),
            fn.lit(None).cast(payload_type(features, view)).alias(_MATCH),
            *[fn.lit(None).cast(features.schema[c].dataType).alias(f"__o{i}") for i, c in enumerate(order_cols)],
        )
        tie = []
        for i, c in enumerate(order_cols):
            col = fn.col(f"__o{i}")
            if c == view.created_field:
                tie.append(col.asc_nulls_first())
            else:
                tie += [col.isNotNull().asc(), col.asc_nulls_first()]
        united = rows.unionByName(points)
        salt = self._salt()
        if salt is None:
            frame = (
                frames.partitionBy(*keys)
                .orderBy(fn.col(TS), fn.col(_KIND), *tie)
                .rowsBetween(frames.unboundedPreceding, frames.currentRow)
            )
            matched = united.withColumn(_MATCH, fn.last(_MATCH, ignorenulls=True).over(frame)).filter(
                fn.col(_KIND) == 1
            )
        else:
            matched = _salted_last_match(united, keys, tie, *salt)
        inside = fn.col(_MATCH).isNotNull()
        ttl = view.ttl_us
        if ttl is not None:
            inside = inside & (fn.unix_micros(fn.col(f"{_MATCH}.__e")) >= fn.unix_micros(fn.col(TS)) - fn.lit(ttl))
        return matched.select(
            fn.col(ROW),
            fn.when(inside, fn.col(f"{_MATCH}.__e")).alias("__e"),
            fn.when(inside, fn.col(f"{_MATCH}.__c")).alias("__c"),
            *[fn.when(inside, fn.col(f"{_MATCH}.v{i}")).alias(f"v{i}") for i in range(len(view.features))],
        )

    def _salt(self) -> tuple[int, int] | None:
        """The time slices of the salted join: (origin, width) in microseconds, or None (one slice).

        ``featurekit.join.slices`` slices of the spine's time span (a Spark conf; default 1: off,
        since slicing costs a second pass: small joins took up to twice as long, and it pays only for
        hot keys).
        """
        if self._slices is None:
            slices = int(self.engine.spark.conf.get("featurekit.join.slices", None) or 1)
            self._slices = (0, 0)
            if slices > 1:
                fn = _spark().functions
                spine = self._spine_frame()
                span = spine.agg(fn.min(fn.unix_micros(TS)).alias("lo"), fn.max(fn.unix_micros(TS)).alias("hi"))
                try:
                    low, high = span.collect()[0]
                except _errors() as exc:
                    raise StorageError(f"reading the spine on Spark failed: {_spark_reason(exc)}") from exc
                if low is not None and high > low:
                    self._slices = (int(low), max(1, -(-(int(high) - int(low) + 1) // slices)))
        return None if self._slices == (0, 0) else self._slices

    def _window_view(self, spine: DataFrame, view: ViewInput, spec: WindowSpec) -> DataFrame:
        """A window view's features: each key's events and spine rows meet in one executor call,
        which computes every window with the online lookups' own code (:class:`WindowValues`)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        fn = _spark().functions
        keys = list(view.join_keys)
        events = self.engine.view_frame(view)
        created = None
        if view.created_field:
            created = fn.coalesce(fn.unix_micros(fn.col(view.created_field)), fn.lit(NULL_CREATED_US))
        picked = [*[fn.col(k) for k in keys], fn.unix_micros(fn.col(view.timestamp_field)).alias(ORDER)]
        picked += [created.alias(CREATED)] if created is not None else []
        events = events.select(*picked, *[fn.col(c) for c in spec.columns])
        points = spine.select(*[fn.col(k) for k in keys], fn.col(ROW), fn.unix_micros(fn.col(TS)).alias("__fk_t"))
        wanted = dict(view.features)
        features = [f for f in spec.features if f.name in wanted]
        order = [next(i for i, f in enumerate(features) if f.name == name) for name, _ in view.features]
        layout = state_schema(spec, view.schema, view.created_field is not None)
        output = pa.schema(
            [pa.field(ROW, pa.int64())]
            + [pa.field(f"v{i}", spark_type(feature_type(features[j], view.schema))) for i, j in enumerate(order)]
        )
        runner = _WindowRun(features, order, spec.delay_us, layout, output)

        def run(events: pa.Table, points: pa.Table) -> pa.Table:  # Spark reads its arity: a function
            return runner.compute(events, points)

        grouped = events.groupBy(*keys).cogroup(points.groupBy(*keys))
        return grouped.applyInArrow(run, from_arrow_schema(output))

    def frame(self) -> DataFrame:
        if self._frame is None:
            fn = _spark().functions
            spine = self._spine_frame()
            result = spine
            for index, view in enumerate(self.views):
                if view.window is not None:
                    joined = self._window_view(spine, view, view.window)
                    renamed = joined.select(
                        fn.col(ROW), *[fn.col(f"v{i}").alias(f"__j{index}_{i}") for i in range(len(view.features))]
                    )
                    result = result.join(renamed, on=ROW, how="left")
                    continue
                joined = self._join_view(spine, view)
                renamed = joined.select(
                    fn.col(ROW),
                    fn.col("__e").alias(matched_event(index)),
                    fn.col("__c").alias(matched_created(index)),
                    *[fn.col(f"v{i}").alias(f"__j{index}_{i}") for i in range(len(view.features))],
                )
                result = result.join(renamed, on=ROW, how="left")
            columns = [fn.col(c) for c in self.spine.columns]
            columns += [fn.col(f"__j{v}_{f}").alias(self.views[v].features[f][1]) for v, f in self.order]
            if self.matched:
                columns.append(fn.col(TS).alias(SPINE_INSTANT))
                for index, view in enumerate(self.views):
                    if view.window is None:
                        columns += [fn.col(matched_event(index)), fn.col(matched_created(index))]
            self._frame = result.orderBy(ROW).select(*columns)
        return self._frame

    def _schema(self) -> pa.Schema:
        fields = list(self.spine.schema)
        for v, f in self.order:
            view = self.views[v]
            column, out = view.features[f]
            if view.window is not None:
                feature = next(w for w in view.window.features if w.name == column)
                fields.append(pa.field(out, feature_type(feature, view.schema)))
            else:
                fields.append(pa.field(out, view.schema.field(column).type))
        if self.matched:
            instant = pa.timestamp("us", tz="UTC")
            fields.append(pa.field(SPINE_INSTANT, instant))
            for index, view in enumerate(self.views):
                if view.window is None:
                    fields += [pa.field(matched_event(index), instant), pa.field(matched_created(index), instant)]
        return pa.schema(fields)

    def to_arrow(self) -> pa.Table:
        try:
            table = self.frame().toArrow()
        except _errors() as exc:
            raise StorageError(
                f"the training-set join failed on Spark: {_spark_reason(exc)}; run `featurekit verify` to find "
                "damaged files"
            ) from exc
        return _cast_like(table, self._schema())

    def to_batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        yield from self.to_arrow().to_batches(max_chunksize=rows)

    def to_parquet(self, path: Path, metadata: dict[str, str]) -> None:
        table = self.to_arrow()
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
        )
        pq.write_table(table, path)

    @property
    def session(self) -> SparkSession:
        return self.engine.spark

    def spark_frame(self) -> DataFrame:
        """The training set as Spark computes it (Spark's column types; nothing runs until it is used)."""
        return self.frame()

    def folder(self, uri: str) -> SparkFolder:
        """A folder URI to write the training set to through Spark's Hadoop filesystem (``to_parquet``)."""
        from featurekit.offline.spark_folders import SparkFolder

        return SparkFolder(self.engine.spark, uri, self._schema())

    def write_parts(self, directory: Path, profile: list[str]) -> list[str]:
        """Have the executors write the training set into ``directory`` (a new folder) as Parquet parts,
        in row order by part name; then profile ``profile`` columns of the parts on the executors and
        return each partition's profile state (JSON): no row comes to this process."""
        from featurekit.offline.spark_folders import SparkFolder

        try:
            self.frame().write.parquet(str(directory))
        except _errors() as exc:
            reason = _spark_reason(exc)
            raise StorageError(f"writing the training set to {directory} on Spark failed: {reason}") from exc
        return SparkFolder(self.engine.spark, str(directory), self._schema()).profile_states(profile)

    def close(self) -> None:
        self._frame = None
        if self.spine.frame is not None:
            self.spine.frame.unpersist()


_SLICE = "__fk_slice"
_SLICE_LAST = "__fk_slice_last"
_BEFORE = "__fk_before"


def _salted_last_match(united: DataFrame, keys: list[str], tie: list[Column], origin: int, width: int) -> DataFrame:
    """The running last match of :meth:`SparkJoin._join_view`, with each key's rows cut into time slices.

    A key holding a tenth of all rows would otherwise be one task's sort. Each (key, slice) is
    sorted apart: a spine row takes the last feature row before it in its slice, or else the
    last feature row of the key's latest earlier slice that has one (from a table of one row per
    key and slice). Equal instants fall in one slice, so the order within an instant holds.
    """
    sql = _spark()
    fn, frames = sql.functions, sql.Window
    ts = fn.unix_micros(fn.col(TS))
    sliced = united.withColumn(_SLICE, fn.floor((ts - fn.lit(origin)) / fn.lit(width)).cast("bigint"))
    ordered = frames.partitionBy(*keys, _SLICE).orderBy(fn.col(TS), fn.col(_KIND), *tie)
    running = ordered.rowsBetween(frames.unboundedPreceding, frames.currentRow)
    whole = ordered.rowsBetween(frames.unboundedPreceding, frames.unboundedFollowing)
    within = sliced.withColumn(_SLICE_LAST, fn.last(_MATCH, ignorenulls=True).over(whole)).withColumn(
        _MATCH, fn.last(_MATCH, ignorenulls=True).over(running)
    )
    slices = within.groupBy(*keys, _SLICE).agg(fn.first(_SLICE_LAST).alias(_SLICE_LAST))
    earlier = frames.partitionBy(*keys).orderBy(_SLICE).rowsBetween(frames.unboundedPreceding, -1)
    carried = slices.select(*keys, _SLICE, fn.last(_SLICE_LAST, ignorenulls=True).over(earlier).alias(_BEFORE))
    points = within.filter(fn.col(_KIND) == 1).drop(_SLICE_LAST)
    joined = points.join(carried, on=[*keys, _SLICE], how="left")
    return joined.withColumn(_MATCH, fn.coalesce(fn.col(_MATCH), fn.col(_BEFORE))).drop(_SLICE, _BEFORE)


def payload_type(features: DataFrame, view: ViewInput) -> Any:
    types = _spark().types
    fields = [
        types.StructField("__e", features.schema[view.timestamp_field].dataType),
        types.StructField("__c", types.TimestampType()),
    ]
    fields += [types.StructField(f"v{i}", features.schema[c].dataType) for i, (c, _) in enumerate(view.features)]
    return types.StructType(fields)
