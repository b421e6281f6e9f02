"""Bring a spine (pandas, polars, Arrow or a Parquet file) into DuckDB, checked, with a row number.

A frame is registered as Arrow with a row-number column. A Parquet file is scanned by DuckDB
inside the join, like any hand-written query would (in parallel, only once, without first
building it in Python memory), numbered by ``file_row_number``; its rows are read back, one
column at a time, only if the manifest asks for the spine's digest. The file's identity (size,
modification time, inode) is taken when the training set is planned and checked after every
read, so a spine file replaced while a training set is built fails loudly instead of giving a
manifest of other rows.

The spine's own columns come back as given; the join uses a UTC copy of its timestamp column
(naive = UTC) and a row number that restores the original order.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.errors import DataError, SchemaError
from featurekit.frames import as_arrow
from featurekit.manifest import columns_digest, table_digest
from featurekit.names import RESERVED_PREFIX
from featurekit.offline.retrieval import ROW, SpineInput
from featurekit.timestamps import check_timestamp_type

_counter = itertools.count()
_FILE_ROW = "file_row_number"  # DuckDB's name for a Parquet row's position in its file


def prepare_spine(
    con: duckdb.DuckDBPyConnection,
    spine: Any,
    timestamp_field: str,
    keys: dict[str, pa.DataType],
) -> tuple[SpineInput, list[Any]]:
    """Check the spine and make it a DuckDB relation; returns it and the objects to keep alive."""
    if isinstance(spine, (str, Path)):
        spine_file = _SpineFile(Path(spine))
        schema, rows = spine_file.footer()
        if _FILE_ROW not in schema.names:
            _check(schema, timestamp_field, keys, spine_file.where)
            scan = f"(SELECT * EXCLUDE ({_FILE_ROW}), {_FILE_ROW} AS {ROW} FROM read_parquet(?, {_FILE_ROW} = true))"
            spine_input = SpineInput(
                relation=scan,
                params=[str(spine_file.path)],
                timestamp_field=timestamp_field,
                columns=schema.names,
                digest=spine_file.digest,
                rows=rows,
                check=spine_file.check,
                release=_nothing,
                file=str(spine_file.path),
            )
            return spine_input, []
        spine = spine_file.read()  # a column DuckDB's row number would clash with: go through Arrow
    table = as_arrow(spine, "spine")
    _check(table.schema, timestamp_field, keys, "spine")
    numbered = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    name = f"__fk_spine_{next(_counter)}"
    con.register(name, numbered)
    spine_input = SpineInput(
        relation=name,
        params=[],
        timestamp_field=timestamp_field,
        columns=table.schema.names,
        digest=lambda: table_digest(table),
        rows=table.num_rows,
        check=_nothing,  # a frame cannot change under the join: DuckDB scans the buffers it was given
        release=_releaser(lambda: con.unregister(name)),
    )
    return spine_input, [numbered]


def _nothing() -> None:
    pass


def _releaser(drop: Callable[[], object]) -> Callable[[], None]:
    """Forget the spine on the connection (run when its training set is garbage collected)."""

    def release() -> None:
        with contextlib.suppress(duckdb.Error):  # the store closed its connection first: nothing to forget
            drop()

    return release


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
        if _family(spine_type) != _family(feature_type):
            raise SchemaError(
                f"{where} column {key!r} is {spine_type} but the feature data's key is {feature_type}; "
                "cast the spine column to the same kind"
            )


def _family(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or dtype == pa.string_view():
        return "string"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    return str(dtype)
