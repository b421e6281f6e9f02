"""Reading a view's source through the engine: existence, schema, null checks and windowed batches.

What is checked here is the same for every engine: a file source must exist, the declared
timestamp columns must be timestamps, null event times are an error unless the source drops
them. The declared timestamp columns reach a feature function as UTC instants whether the file
stores naive or zoned timestamps (naive = UTC, see :mod:`featurekit.timestamps`).
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from featurekit.definitions import FileSource, Source
from featurekit.errors import DataError, SourceError
from featurekit.offline.engine import Cancel, OfflineEngine, PartWriter
from featurekit.offline.inputs import source_scan
from featurekit.timestamps import check_timestamp_type


class SourceReader:
    """Reads one source of a repo with the store's engine."""

    def __init__(self, engine: OfflineEngine, root: Path, source: Source) -> None:
        self.engine = engine
        self.source = source
        self.scan = source_scan(source, root)

    @property
    def label(self) -> str:
        return self.scan.label

    def _checked(self) -> None:
        if not isinstance(self.source, FileSource):
            return
        path = self.scan.location
        if not glob.has_magic(path) and not Path(path).exists():
            raise SourceError(f"{self.label} does not exist (defined at {self.source.location}); check the path")
        if glob.has_magic(path) and not glob.glob(path, recursive=True):
            raise SourceError(f"{self.label} matches no files (defined at {self.source.location})")

    def schema(self) -> pa.Schema:
        """The source's columns as Arrow types (declared timestamps as UTC instants)."""
        self._checked()
        raw = self.engine.source_schema(self.scan)
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

    def check_null_timestamps(self) -> None:
        """Null event timestamps belong to no window: fail (or, with ``on_null="drop"``, skip them)."""
        if self.source.on_null == "drop":
            return
        self._checked()
        count, sample = self.engine.source_null_times(self.scan, 3)
        if count:
            raise DataError(
                f"{self.label} has {count} rows with a null event timestamp {self.source.timestamp_field!r} "
                f"(first rows: {sample.to_pylist()}); fix the data or set on_null='drop' on the source "
                f"({self.source.location})"
            )

    def count(self, start: datetime, end: datetime) -> int:
        self._checked()
        return self.engine.source_count(self.scan, (start, end))

    def min_timestamp(self) -> datetime | None:
        self._checked()
        return self.engine.source_min_time(self.scan)

    def batches(
        self, start: datetime, end: datetime, partitions: int, partition_keys: list[str], cancel: Cancel | None = None
    ) -> Iterator[pa.Table]:
        """The window's rows in ``partitions`` batches; all rows of one entity land in the same batch."""
        self._checked()
        return self.engine.source_batches(self.scan, (start, end), partitions, partition_keys, cancel)

    def transformed(
        self,
        start: datetime,
        end: datetime,
        partitions: int,
        partition_keys: list[str],
        *,
        transform: Callable[[pa.Table], pa.Table],
        output: pa.Schema,
        cancel: Cancel | None = None,
    ) -> Iterator[tuple[int | None, pa.Table]]:
        """:meth:`batches`, each run through ``transform`` where the engine runs it (see the engine protocol)."""
        self._checked()
        return self.engine.transformed_batches(
            self.scan, (start, end), partitions, partition_keys, transform=transform, output=output, cancel=cancel
        )

    def written_parts(
        self,
        writer: PartWriter,
        start: datetime,
        end: datetime,
        partitions: int,
        partition_keys: list[str],
        *,
        transform: Callable[[pa.Table], pa.Table],
        output: pa.Schema,
        directory: Path,
        cancel: Cancel | None = None,
        read_back: bool = True,
    ) -> Iterator[tuple[int | None, pa.Table]]:
        """:meth:`transformed`, written as Parquet parts into ``directory`` by the engine, then read
        back (unless ``read_back`` is False: then nothing is yielded)."""
        self._checked()
        for table in writer.transformed_parts(
            self.scan, (start, end), partitions, partition_keys,
            transform=transform, output=output, directory=directory, cancel=cancel, read_back=read_back,
        ):  # fmt: skip
            yield None, table


def schema_diff(old: pa.Schema, new: pa.Schema) -> list[str]:
    """Columns removed or retyped between two source schemas (added columns are allowed)."""
    diff = [f"removed {f.name!r} ({f.type})" for f in old if f.name not in new.names]
    diff += [
        f"{f.name!r} is now {new.field(f.name).type}, was {f.type}"
        for f in old
        if f.name in new.names and new.field(f.name).type != f.type
    ]
    return diff
