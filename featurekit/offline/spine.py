"""Bring a spine (pandas, polars, Arrow or a Parquet file) into DuckDB, checked, with a row number.

The spine's own columns come back untouched; the join uses a UTC copy of its timestamp column
(naive = UTC) and a row number that restores the original order.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurekit.errors import SchemaError
from featurekit.frames import as_arrow
from featurekit.names import RESERVED_PREFIX
from featurekit.offline.retrieval import ROW, SpineInput
from featurekit.timestamps import check_timestamp_type

_counter = itertools.count()


def prepare_spine(
    con: duckdb.DuckDBPyConnection,
    spine: Any,
    timestamp_field: str,
    keys: dict[str, pa.DataType],
) -> tuple[SpineInput, list[Any]]:
    """Check the spine and make it a DuckDB relation; returns it and the objects to keep alive."""
    keep_alive: list[Any] = []
    where = "spine"
    if isinstance(spine, (str, Path)):
        # Read once, here: the join and the manifest's digest then see the same rows even if the
        # file is replaced meanwhile, and a Parquet training set does not read the spine twice.
        path = Path(spine)
        where = f"spine file {path}"
        if not path.is_file():
            raise SchemaError(f"{where} does not exist")
        try:
            spine = pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as exc:
            raise SchemaError(f"{where} is not a readable Parquet file: {exc}") from exc
    table = as_arrow(spine, "spine")
    schema = table.schema
    origin = table
    name = f"__fk_spine_{next(_counter)}"
    table = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    con.register(name, table)
    keep_alive.append(table)
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
    return SpineInput(name, timestamp_field, columns, origin), keep_alive


def _family(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or dtype == pa.string_view():
        return "string"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    return str(dtype)
