"""Training-set manifests: everything needed to rebuild a training set bit for bit.

A manifest names the registry version the training set was built at, each view version it read
(with its code hash and fingerprint) and the data version of each table, the requested features
and options, and a content digest of the spine. ``store.training_set(spine, manifest=m)`` builds
at the same registry version and fails if anything it resolves (or the spine) differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, ValidationError

from featurekit.config import validation_problems
from featurekit.errors import ManifestError

METADATA_KEY = "featurekit.manifest"
MANIFEST_FILE = "_featurekit_manifest.json"  # beside the parts of a training set written to a folder
WRITING_MARK = "_featurekit_writing"  # in a folder whose write (to a URI, on Spark) has not finished
FORMAT = 1


class ViewRecord(BaseModel):
    """One view version a training set read (batch) or ran (on-demand)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    view: str
    version: int
    kind: str  # "batch", "window", "on_demand" or "feature_set"
    code_hash: str
    fingerprint: str
    data_version: int | None = None  # Delta table version read (batch views)
    materialized_at_registry_version: int | None = None
    git_commit: str | None = None  # of the repo when the version was applied


class Manifest(BaseModel):
    """What a training set was built from (JSON-serializable with :meth:`to_dict`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    featurekit_version: str
    project: str
    registry_version: int
    built_at: str
    features: list[str]
    full_names: bool
    timestamp_field: str
    known_at: str | None
    spine_digest: str
    spine_rows: int
    spine_columns: list[str]
    views: list[ViewRecord]
    profile: dict[str, Any] | None = None  # of the feature columns (featurekit.quality.profile.Profile.to_dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def load_manifest(value: Any) -> Manifest:
    """A manifest from a :class:`Manifest`, a dict, JSON text, a ``.json`` / ``.parquet`` file, or a
    training set's folder of parts; files and folders given as paths or URIs (``file://``, and the
    schemes pyarrow reads: ``s3://`` (``s3a://`` read as ``s3://``), ``gs://``, ``hdfs://``)."""
    if isinstance(value, Manifest):
        return value
    where = "manifest"
    if isinstance(value, os.PathLike) or (isinstance(value, str) and not value.lstrip().startswith("{")):
        where = f"manifest {os.fspath(value)}"
        value = _stored_manifest(value, where)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be a dict, JSON text or a file, got {type(value).__name__}")
    try:
        manifest = Manifest.model_validate(value)
    except ValidationError as exc:
        raise ManifestError(f"{where} is not a featurekit manifest: {validation_problems(exc)}") from exc
    if manifest.format > FORMAT:
        raise ManifestError(f"{where} has format {manifest.format}, newer than this featurekit reads; upgrade")
    return manifest


def stored_location(value: str | os.PathLike[str], where: str) -> tuple[Any, str]:
    """The pyarrow filesystem and path of a training set's file or folder, given as a path or a URI."""
    import pyarrow.fs as pafs

    from featurekit.offline.engine import local_path, uri_scheme

    text = os.fspath(value)
    scheme = uri_scheme(text) if isinstance(value, str) else None
    if scheme is None or scheme == "file":
        return pafs.LocalFileSystem(), str(Path(local_path(text)).resolve())
    uri = f"s3://{text.split('://', 1)[1]}" if scheme in ("s3a", "s3n") else text
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ManifestError(
            f"{where}: cannot read {scheme}:// here ({exc}); pyarrow reads file://, s3:// (and s3a://), gs:// and "
            "hdfs:// with libhdfs: copy the folder to a local path, or read it where its filesystem is configured"
        ) from exc
    return filesystem, str(path)


def _stored_manifest(value: str | os.PathLike[str], where: str) -> str:
    """The manifest text of a training set's file or folder (a folder still being written is refused)."""
    import pyarrow.fs as pafs

    filesystem, path = stored_location(value, where)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.Directory:  # a training set written as a folder of parts
        if filesystem.get_file_info(f"{path}/{WRITING_MARK}").type != pafs.FileType.NotFound:
            raise ManifestError(
                f"{where} is a training set folder whose write did not finish ({WRITING_MARK} is in it); "
                "write the training set again"
            )
        path = f"{path}/{MANIFEST_FILE}"
        info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise ManifestError(f"{where} does not exist; pass a manifest dict, JSON, or a training-set file")
    if path.endswith(".parquet"):
        try:
            metadata = pq.read_metadata(path, filesystem=filesystem).metadata or {}  # the file's, not the schema's
        except (OSError, pa.ArrowInvalid) as exc:
            raise ManifestError(f"{where} is not a readable Parquet file: {exc}") from exc
        raw = metadata.get(METADATA_KEY.encode())
        if raw is None:
            raise ManifestError(f"{where} holds no featurekit manifest; was it written by TrainingSet.to_parquet?")
        return str(raw.decode())
    with filesystem.open_input_stream(path) as stream:
        return str(stream.read().decode())


# -- content digest ---------------------------------------------------------------------------


def table_digest(table: pa.Table) -> str:
    """A content digest of a table (a spine, a pushed batch): same rows, columns and values, same digest.

    Independent of how the frame was built (pandas, polars, Arrow, Parquet) as far as the values
    are the same: chunking, string encodings, dictionary encoding and timestamp units (where no
    precision is lost) do not matter; naive timestamps count as UTC, as everywhere else.
    """
    return columns_digest(table.num_rows, ((name, table.column(name)) for name in table.column_names))


def columns_digest(rows: int, columns: Iterable[tuple[str, pa.ChunkedArray | pa.Array]]) -> str:
    """:func:`table_digest` of a table given column by column (only one column need be in memory)."""
    digest = hashlib.sha256(f"rows={rows}\n".encode())
    for name, values in columns:
        column = _canonical(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
        digest.update(f"{name}\0{column.type}\0".encode())
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        digest.update(np.packbits(valid).tobytes())
        digest.update(_value_bytes(column))
    return digest.hexdigest()


def _canonical(array: pa.Array) -> pa.Array:
    dtype = array.type
    if pa.types.is_dictionary(dtype):
        return _canonical(array.dictionary_decode())
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or dtype == pa.string_view():
        return array.cast(pa.large_string())
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or dtype == pa.binary_view():
        return array.cast(pa.large_binary())
    if pa.types.is_timestamp(dtype):
        array = array.cast(pa.timestamp(dtype.unit, "UTC"))  # naive means UTC: same instants
        try:
            return array.cast(pa.timestamp("us", "UTC"), safe=True)
        except pa.ArrowInvalid:
            return array  # sub-microsecond values: keep the nanoseconds
    if pa.types.is_boolean(dtype):
        return array.cast(pa.int8())
    return array


def _value_bytes(array: pa.Array) -> bytes:
    dtype = array.type
    if pa.types.is_large_string(dtype) or pa.types.is_large_binary(dtype):
        filled = array
        if array.null_count:
            filled = pc.fill_null(array, pa.scalar("" if pa.types.is_large_string(dtype) else b"", dtype))
        offsets_buffer, data_buffer = filled.buffers()[1:3]
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[filled.offset : filled.offset + len(filled) + 1]
        data = b"" if data_buffer is None else data_buffer.to_pybytes()[offsets[0] : offsets[-1]]
        return bytes((offsets - offsets[0]).tobytes()) + data
    if pa.types.is_temporal(dtype) and not pa.types.is_interval(dtype):  # an interval has three parts
        # date32 and time32 are 32-bit integers underneath: Arrow casts them only to int32.
        array = array.cast(pa.int32() if pa.types.is_date32(dtype) or pa.types.is_time32(dtype) else pa.int64())
        dtype = array.type
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        if array.null_count:  # null slots hold arbitrary bytes: zero them (the validity bits count them)
            array = pc.fill_null(array, pa.scalar(0, dtype))
        return bytes(array.to_numpy(zero_copy_only=False).tobytes())
    return json.dumps(array.to_pylist(), default=str).encode()  # nested and rare types
