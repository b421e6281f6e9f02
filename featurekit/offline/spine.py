"""Check a spine (pandas, polars, Arrow or a Parquet file) and describe it for the engine.

A frame is handed to the engine as Arrow. A Parquet file is scanned by the engine inside the join,
like any hand-written query would (in parallel, only once, without first building it in Python
memory); its rows are read back, one column at a time, only if the manifest asks for the spine's
digest. The file's identity (size,
modification time, inode) is taken when the training set is planned and checked after every
read, so a spine file replaced while a training set is built fails loudly instead of giving a
manifest of other rows.

The spine's own columns come back as given; the engine compares a UTC copy of its timestamp
column (naive = UTC, nanoseconds truncated toward the past) and restores the original order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.errors import DataError, SchemaError
from featurekit.frames import as_arrow, key_family
from featurekit.manifest import columns_digest, table_digest
from featurekit.names import RESERVED_PREFIX
from featurekit.offline.engine import Spine
from featurekit.timestamps import check_timestamp_type

_FILE_ROW = "file_row_number"  # DuckDB's name for a Parquet row's position in its file


@dataclass(frozen=True)
class PreparedSpine:
    """A checked spine for the engine, with what the manifest and the consistency check need."""

    spine: Spine
    digest: Callable[[], str]  # content digest of the spine as given, computed on demand
    check: Callable[[], None]  # raises DataError if the rows the engine scanned may no longer be the spine's


def prepare_spine(
    spine: Any, timestamp_field: str, keys: dict[str, pa.DataType], *, spark: bool = False
) -> PreparedSpine:
    """Check the spine (columns, timestamp type, key kinds) and describe it for the engine.

    A Spark DataFrame stays on Spark for the Spark engine (``spark``); for another engine its rows
    are collected into Arrow, so a training set is the same whichever engine builds it.
    """
    if is_spark_frame(spine):
        from featurekit.offline import spark_join

        if not spark:
            spine = spark_join.collect_frame(spine, "spine")  # then an Arrow spine like any other
        else:
            numbered = spark_join.NumberedSpine(spine)
            _check(numbered.schema, timestamp_field, keys, "spine (a Spark DataFrame)")
            described = Spine(numbered.schema, timestamp_field, numbered.rows, frame=numbered.frame)
            return PreparedSpine(described, numbered.digest, _nothing)
    if isinstance(spine, (str, Path)):
        spine_file = _SpineFile(Path(spine))
        schema, rows = spine_file.footer()
        if _FILE_ROW not in schema.names:
            _check(schema, timestamp_field, keys, spine_file.where)
            described = Spine(schema=schema, timestamp_field=timestamp_field, rows=rows, file=spine_file.path)
            return PreparedSpine(described, spine_file.digest, spine_file.check)
        spine = spine_file.read()  # a column the engine's row number would clash with: go through Arrow
    table = as_arrow(spine, "spine")
    _check(table.schema, timestamp_field, keys, "spine")
    described = Spine(schema=table.schema, timestamp_field=timestamp_field, rows=table.num_rows, table=table)
    # A frame cannot change under the join: the engine scans the buffers it was given.
    return PreparedSpine(described, lambda: table_digest(table), _nothing)


def _nothing() -> None:
    pass


def is_spark_frame(value: Any) -> bool:
    """Whether ``value`` is a Spark DataFrame (told without importing pyspark)."""
    return type(value).__module__.startswith("pyspark.sql") and type(value).__name__ == "DataFrame"


class _SpineFile:
    """A spine Parquet file, pinned to the file that was there when the training set was planned."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.where = f"spine file {path}"
        if not self.path.is_file():
            raise SchemaError(f"{self.where} does not exist")
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int, int]:
        stat = os.stat(self.path)
        return stat.st_size, stat.st_mtime_ns, stat.st_ino

    def _readable(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except (pa.ArrowException, OSError) as exc:
            raise SchemaError(f"{self.where} is not a readable Parquet file: {exc}") from exc

    def footer(self) -> tuple[pa.Schema, int]:
        """The file's Arrow schema and row count, from its footer alone."""
        metadata: pq.FileMetaData = self._readable(lambda: pq.read_metadata(self.path))
        return metadata.schema.to_arrow_schema(), metadata.num_rows

    def read(self) -> pa.Table:
        """The file's rows, checked to be the rows planned with."""
        self.check()
        table: pa.Table = self._readable(lambda: pq.ParquetFile(self.path).read())
        self.check()
        return table

    def digest(self) -> str:
        """The manifest's digest of the file's rows, read one column at a time (bounded memory)."""
        self.check()
        parquet = self._readable(lambda: pq.ParquetFile(self.path))
        names = parquet.schema_arrow.names

        def column(name: str) -> pa.ChunkedArray:
            # One thread: measured faster for one column than pyarrow's pool (large spine: 82 ms vs 134 ms whole)
            table: pa.Table = self._readable(lambda: parquet.read(columns=[name], use_threads=False))
            if table.column_names != [name]:  # a name pyarrow takes for a nested path: read the whole file
                table = self._readable(parquet.read).select([names.index(name)])
            return table.column(0)

        found = columns_digest(parquet.metadata.num_rows, ((name, column(name)) for name in names))
        self.check()
        return found

    def check(self) -> None:
        try:
            same = self._identity() == self.identity
        except OSError:
            same = False
        if not same:
            raise DataError(
                f"{self.where} was replaced or changed after this training set was planned, so the rows it "
                "joined are gone; keep the spine file unchanged until the training set (and its manifest) "
                "is written, then build it again"
            )


def _check(schema: pa.Schema, timestamp_field: str, keys: dict[str, pa.DataType], where: str) -> None:
    columns = schema.names
    reserved = [c for c in columns if c.lower().startswith(RESERVED_PREFIX)]
    if reserved:
        raise SchemaError(f"{where} has columns {reserved} with the reserved prefix {RESERVED_PREFIX!r}; rename them")
    missing = [c for c in [*keys, timestamp_field] if c not in columns]
    if missing:
        raise SchemaError(
            f"{where} has no column {', '.join(repr(c) for c in missing)} (it has {columns}); "
            f"add it, or pass timestamp_field= if the spine's time column has another name"
        )
    check_timestamp_type(schema.field(timestamp_field).type, timestamp_field, where)
    for key, feature_type in keys.items():
        spine_type = schema.field(key).type
        if key_family(spine_type) != key_family(feature_type):
            raise SchemaError(
                f"{where} column {key!r} is {spine_type} but the feature data's key is {feature_type}; "
                "cast the spine column to the same kind"
            )
