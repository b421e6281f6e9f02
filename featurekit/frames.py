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
