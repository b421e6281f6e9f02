"""Accept the frame types users hand us (pandas, polars, Arrow, records) as Arrow tables."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from featurekit.errors import SchemaError


def as_arrow(data: Any, what: str) -> pa.Table:
    """``data`` as an Arrow table: a pandas/polars/Arrow frame, a list of dicts or a dict of lists."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("polars"):
        return data.to_arrow()
    if module.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False).replace_schema_metadata(None)
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pa.Table.from_pylist(data)
    if isinstance(data, dict):
        return pa.table(data)
    raise SchemaError(
        f"{what} must be a pandas, polars or Arrow frame, a list of dicts or a dict of lists, got {type(data).__name__}"
    )


def key_family(dtype: pa.DataType) -> str:
    """The kind of a join key's type: keys of one family are cast to each other, others never match.

    Integers of every width are one family, strings of every encoding another, floats and decimals
    a third, timestamps (any unit; naive means UTC) and dates one each; any other type only matches
    itself. Dictionary-encoded (categorical) keys are their values' family.
    """
    if pa.types.is_dictionary(dtype):
        return key_family(dtype.value_type)
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or dtype == pa.string_view():
        return "string"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date(dtype):
        return "date"
    return str(dtype)


def arrow_to_polars(dtype: pa.DataType) -> Any:
    """The polars dtype an Arrow column becomes."""
    import polars as pl

    return pl.DataFrame(pa.schema([("c", dtype)]).empty_table()).schema["c"]
