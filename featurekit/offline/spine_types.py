"""The spine's own columns back in the types they were given, whatever the engine returned.

An engine hands some Arrow types back as its own nearest kind. DuckDB returns a duration as an
interval (``month_day_nano_interval``, which Parquet cannot hold), a large or view string as a
string, a dictionary as its values, a fixed-size binary as binary, a large list as a list, and a
timestamp with a zone as microseconds in UTC. The training set casts each such spine column back
to the spine's own type, batch by batch (a cast decided once per output schema; columns the
engine kept as they were cost nothing), so "the spine comes back whole" holds for its types too.
A column that cannot be cast back (a struct holding a duration, say) stays in the engine's type.

Values are the engine's: a nanosecond duration that went through DuckDB's microsecond interval
comes back truncated to microseconds, like a nanosecond timestamp column does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

_NANOS_PER_DAY = 86_400_000_000_000
_NANOS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_MONTH_DAY_NANO = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")])

Cast = Callable[[pa.Array], pa.Array]


def _interval_to_duration(unit: str) -> Cast:
    """Cast a month-day-nano interval holding no months to a duration in ``unit`` (toward the past)."""
    per_unit = _NANOS_PER_UNIT[unit]

    def cast(array: pa.Array) -> pa.Array:
        data = array.buffers()[1]
        parts = np.frombuffer(data, dtype=_MONTH_DAY_NANO, count=array.offset + len(array))[array.offset :]
        nanos = parts["days"].astype(np.int64) * _NANOS_PER_DAY + parts["nanos"]
        mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
        return pa.array(nanos // per_unit, type=pa.duration(unit), mask=mask)

    return cast


def _plain_cast(target: pa.DataType) -> Cast:
    return lambda array: array.cast(target)


def _cast_back(returned: pa.DataType, given: pa.DataType) -> Cast | None:
    """How to turn an engine's ``returned`` type back into the spine's ``given`` one; None: it cannot be."""
    if pa.types.is_interval(returned) and pa.types.is_duration(given):
        return _interval_to_duration(given.unit)
    try:
        pa.array([], returned).cast(given)
    except (pa.ArrowException, TypeError, ValueError):  # no such cast in this pyarrow
        return None
    return _plain_cast(given)


@dataclass
class SpineTypes:
    """Casts an engine's batches so that the spine's columns have the spine's own types."""

    spine: pa.Schema
    _plans: dict[pa.Schema, list[tuple[int, pa.Field, Cast]]] = field(default_factory=dict)

    def _plan(self, schema: pa.Schema) -> list[tuple[int, pa.Field, Cast]]:
        plan = self._plans.get(schema)
        if plan is None:
            plan = []
            for given in self.spine:
                index = schema.get_field_index(given.name)
                if index < 0 or schema.field(index).type == given.type:
                    continue
                cast = _cast_back(schema.field(index).type, given.type)
                if cast is not None:
                    plan.append((index, schema.field(index).with_type(given.type), cast))
            self._plans[schema] = plan
        return plan

    def batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with the spine's columns in the spine's types."""
        plan = self._plan(batch.schema)
        if not plan:
            return batch
        columns = list(batch.columns)
        fields = list(batch.schema)
        for index, target, cast in plan:
            columns[index] = cast(columns[index])
            fields[index] = target
        return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, metadata=batch.schema.metadata))

    def table(self, table: pa.Table) -> pa.Table:
        """``table`` with the spine's columns in the spine's types."""
        plan = self._plan(table.schema)
        for index, target, cast in plan:
            column = table.column(index)
            chunks = [cast(chunk) for chunk in column.chunks]
            table = table.set_column(index, target, pa.chunked_array(chunks, type=target.type))
        return table
