"""A training set written to a folder URI on Spark (``s3a://``, ``hdfs://``, ``file://``, ...).

Spark's writer puts the Parquet parts there and Hadoop's ``FileSystem`` (through the session's
JVM gateway, so every filesystem the cluster is configured for works) writes the files beside
them. Object stores have no atomic rename, so a folder is published by markers instead, in this
order:

1. ``_featurekit_writing`` is written first: the folder is featurekit's and unfinished.
2. Spark writes the parts. Its tasks stage their files under ``_temporary`` (hidden from every
   Parquet reader) and its job commit moves them into the folder; Spark's own ``_SUCCESS`` is
   turned off, since the folder is not finished yet.
3. The executors profile the written parts (only each partition's small mergeable state reaches
   the driver), and the driver writes ``_featurekit_manifest.json``, removes
   ``_featurekit_writing`` (the commit point: featurekit's readers take a folder with a manifest
   and no writing mark), then writes ``_SUCCESS`` (for tools that wait on Hadoop's marker).

So a reader never sees part of a training set: featurekit's readers refuse a folder without a
manifest or with the writing mark (:class:`~featurekit.errors.ManifestError`), and a tool that
waits for ``_SUCCESS`` finds it only once every part is in place. A plain Parquet reader that
lists the folder without checking either may see the parts of a write that died after Spark's job
commit. A job dying between the commit point and ``_SUCCESS`` leaves a committed training set
without ``_SUCCESS``.

A committed folder is never written again (there is no way to swap it whole on an object store):
writing to it is a :class:`~featurekit.errors.StorageError`. A folder left unfinished (it holds the
writing mark, so no reader ever took it) is emptied and written anew.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurekit.errors import StorageError
from featurekit.manifest import MANIFEST_FILE, WRITING_MARK
from featurekit.offline.spark_engine import _cast_like, _errors, _spark_reason

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WRITING = WRITING_MARK
SUCCESS = "_SUCCESS"


class ProfileRun:
    """Run on the executors over written parts: one partition's profile state of ``columns`` as JSON."""

    def __init__(self, schema: pa.Schema, columns: list[str]) -> None:
        self.schema = schema
        self.columns = columns

    def __call__(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from featurekit.quality.profiling import ProfileState

        state = ProfileState.empty(self.schema, self.columns)
        for batch in batches:
            state.add(_cast_like(pa.Table.from_batches([batch]), self.schema))
        yield pa.RecordBatch.from_pydict({"state": [state.to_json()]})


class SparkFolder:
    """One folder URI, written through the Spark session's Hadoop filesystem."""

    def __init__(self, session: SparkSession, uri: str, schema: pa.Schema) -> None:
        self.session = session
        self.schema = schema  # the training set's columns in the types featurekit returns
        self.uri = uri.rstrip("/")
        jvm: Any = session.sparkContext._jvm
        self._jvm = jvm
        self._root = jvm.org.apache.hadoop.fs.Path(self.uri)
        try:
            self._fs = self._root.getFileSystem(session.sparkContext._jsc.hadoopConfiguration())
        except _errors() as exc:
            raise StorageError(
                f"Spark has no filesystem for {uri}: {_spark_reason(exc)}; check the URI's scheme and the "
                "cluster's Hadoop configuration (e.g. spark.hadoop.fs.s3a.* and the hadoop-aws jar for s3a://)"
            ) from exc

    def _path(self, name: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(self._root, name)

    def names(self) -> list[str]:
        """The names in the folder (empty when it does not exist)."""
        if not self._fs.exists(self._root):
            return []
        return sorted(str(status.getPath().getName()) for status in self._fs.listStatus(self._root))

    def begin(self) -> None:
        """Check that the folder may be written, empty an unfinished one, and mark it as being written."""
        names = self.names()
        if MANIFEST_FILE in names and WRITING not in names:  # committed
            raise StorageError(
                f"{self.uri} already holds a training set ({MANIFEST_FILE}); a folder URI is never overwritten "
                "(an object store cannot replace it whole): write to a new folder, or delete this one first"
            )
        if names and WRITING not in names:
            raise StorageError(
                f"{self.uri} holds files that are not a training set ({names[0]}, ...); pass a new or empty folder"
            )
        if names:  # an unfinished write of featurekit's: nothing in it was ever published
            self._fs.delete(self._root, True)
        self._fs.mkdirs(self._root)
        self.write_text(WRITING, "")

    def write_parts(self, frame: DataFrame) -> None:
        """Have Spark's executors write ``frame`` into the folder as Parquet parts."""
        writer = frame.write.mode("append").option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        try:
            writer.parquet(self.uri)
        except _errors() as exc:
            raise StorageError(f"writing the training set to {self.uri} on Spark failed: {_spark_reason(exc)}") from exc

    def profile_states(self, columns: list[str]) -> list[str]:
        """The profile states (JSON) of ``columns`` of the written parts, one per Spark partition,
        taken on the executors: no row comes to the driver."""
        from pyspark.sql.pandas.types import from_arrow_schema

        state = pa.schema([pa.field("state", pa.string())])
        run = ProfileRun(self.schema, [c for c in columns if c in self.schema.names])
        try:
            frame = self.session.read.parquet(self.uri)
            rows = frame.mapInArrow(run, from_arrow_schema(state)).collect()
        except _errors() as exc:
            raise StorageError(f"reading back the training set at {self.uri} failed: {_spark_reason(exc)}") from exc
        return [str(row["state"]) for row in rows]

    def commit(self, manifest: str) -> None:
        """Publish the folder: the manifest, then drop the writing mark (the commit point), then ``_SUCCESS``."""
        self.write_text(MANIFEST_FILE, manifest)
        self._fs.delete(self._path(WRITING), False)
        self.write_text(SUCCESS, "")

    def abort(self) -> None:
        """Remove what this write put in the folder (it was empty or an unfinished write before)."""
        self._fs.delete(self._root, True)

    def write_text(self, name: str, text: str) -> None:
        stream = self._fs.create(self._path(name), True)
        try:
            stream.write(bytearray(text.encode()))
        finally:
            stream.close()
