"""Read source rows through DuckDB: schema, null checks and windowed, entity-partitioned batches.

Values (paths, window bounds) reach DuckDB only as parameters. The declared timestamp columns are
cast to ``TIMESTAMPTZ`` on the way out, so a feature function always receives UTC instants whether
the file stores naive or zoned timestamps (naive = UTC, see :mod:`featurekit.timestamps`).
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from featurekit.definitions import FileSource, Source, SqlSource
from featurekit.errors import DataError, SourceError
from featurekit.names import quote
from featurekit.timestamps import check_timestamp_type


class SourceReader:
    """Reads one source of a repo with a shared DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, root: Path, source: Source) -> None:
        self.con = con
        self.root = root
        self.source = source

    @property
    def label(self) -> str:
        if isinstance(self.source, FileSource):
            return f"source file {self._path()}"
        return f"SQL source at {self.source.location}"

    def _path(self) -> str:
        assert isinstance(self.source, FileSource)
        path = Path(self.source.path)
        return str(path if path.is_absolute() else self.root.resolve() / path)  # DuckDB resolves relative globs itself

    def _relation(self) -> tuple[str, list[Any]]:
        """SQL text of the source's rows and its parameters."""
        source = self.source
        if isinstance(source, SqlSource):
            return f"({source.query})", []
        path = self._path()
        if not glob.has_magic(path) and not Path(path).exists():
            raise SourceError(f"{self.label} does not exist (defined at {source.location}); check the path")
        if glob.has_magic(path) and not glob.glob(path, recursive=True):
            raise SourceError(f"{self.label} matches no files (defined at {source.location})")
        reader = "read_csv" if source.format == "csv" else "read_parquet"
        return f"{reader}(?)", [path]

    def _sql(self, select: str, where: str = "", params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        relation, rel_params = self._relation()
        text = f"SELECT {select} FROM {relation} AS src" + (f" WHERE {where}" if where else "")
        try:
            return self.con.sql(text, params=rel_params + list(params or []))
        except duckdb.Error as exc:
            raise SourceError(f"cannot read {self.label}: {exc}".strip()) from exc

    def schema(self) -> pa.Schema:
        """The source's columns as Arrow types (declared timestamps as UTC instants)."""
        try:
            raw = self._sql("*").limit(0).to_arrow_table().schema
        except duckdb.Error as exc:
            raise SourceError(f"cannot read {self.label}: {exc}".strip()) from exc
        for column in self.source.timestamp_columns:
            if column not in raw.names:
                raise SourceError(
                    f"{self.label} has no timestamp column {column!r} (columns: {raw.names}); "
                    f"fix timestamp_field at {self.source.location}"
                )
            check_timestamp_type(raw.field(column).type, column, self.label)
        fields = [
            pa.field(f.name, pa.timestamp("us", tz="UTC")) if f.name in self.source.timestamp_columns else f
            for f in raw
        ]
        return pa.schema(fields)

    def _select(self) -> str:
        casts = ", ".join(f"CAST({quote(c)} AS TIMESTAMPTZ) AS {quote(c)}" for c in self.source.timestamp_columns)
        return f"* REPLACE ({casts})"

    def check_null_timestamps(self) -> None:
        """Null event timestamps belong to no window: fail (or, with ``on_null="drop"``, skip them)."""
        if self.source.on_null == "drop":
            return
        ts = quote(self.source.timestamp_field)
        count = self._sql("count(*)", f"{ts} IS NULL").fetchall()[0]
        if count and count[0]:
            sample = self._sql("*", f"{ts} IS NULL").limit(3).to_arrow_table().to_pylist()
            raise DataError(
                f"{self.label} has {count[0]} rows with a null event timestamp {self.source.timestamp_field!r} "
                f"(first rows: {sample}); fix the data or set on_null='drop' on the source ({self.source.location})"
            )

    def _window(self, start: datetime, end: datetime) -> tuple[str, list[Any]]:
        ts = quote(self.source.timestamp_field)
        return f"{ts} >= ? AND {ts} < ?", [start, end]

    def count(self, start: datetime, end: datetime) -> int:
        where, params = self._window(start, end)
        row = self._sql("count(*)", where, params).fetchall()[0]
        return int(row[0]) if row else 0

    def min_timestamp(self) -> datetime | None:
        # Through Arrow: DuckDB's Python conversion of TIMESTAMPTZ would need pytz.
        table = self._sql(f"CAST(min({quote(self.source.timestamp_field)}) AS TIMESTAMPTZ) AS m").to_arrow_table()
        value: datetime | None = table.column(0)[0].as_py()
        return value

    def batches(self, start: datetime, end: datetime, partitions: int, partition_keys: list[str]) -> Iterator[pa.Table]:
        """The window's rows in ``partitions`` batches; all rows of one entity land in the same batch."""
        where, params = self._window(start, end)
        if partitions <= 1 or not partition_keys:
            yield self._sql(self._select(), where, params).to_arrow_table()
            return
        # One scan, sorted by bucket (DuckDB sorts out of core within its memory limit), cut at
        # bucket boundaries: measured 3.1 s for 10M rows in 5 buckets against 5.9 s for one
        # filtered scan per bucket.
        keys = ", ".join(quote(k) for k in partition_keys)
        # The bucket count is our own integer, not user data (parameters would precede the path's).
        relation = self._sql(f"{self._select()}, hash({keys}) % {int(partitions)} AS {BUCKET}", where, params)
        reader = relation.order(BUCKET).to_arrow_reader(_STREAM_ROWS)
        yield from _cut_at_buckets(reader)


BUCKET = "__fk_bucket"
_STREAM_ROWS = 256_000


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


def schema_diff(old: pa.Schema, new: pa.Schema) -> list[str]:
    """Columns removed or retyped between two source schemas (added columns are allowed)."""
    diff = [f"removed {f.name!r} ({f.type})" for f in old if f.name not in new.names]
    diff += [
        f"{f.name!r} is now {new.field(f.name).type}, was {f.type}"
        for f in old
        if f.name in new.names and new.field(f.name).type != f.type
    ]
    return diff
