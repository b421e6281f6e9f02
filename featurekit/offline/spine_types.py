"""The spine's own columns back in the types they were given, whatever the engine returned.

An engine hands some Arrow types back as its own nearest kind. DuckDB returns a large or view
string as a string, a dictionary (a pandas category) as its values, a fixed-size binary as
binary, a large list as a list, and a timestamp with a zone as UTC; the DuckDB join hands it a
duration as int64 (its interval would wrap past 292 years and cut nanoseconds), as DuckDB reads a
Parquet spine's durations. The training set casts each such spine column back to the spine's own
type, batch by batch (a cast decided once per output schema; columns the engine kept as they
were cost nothing), so "the spine comes back whole" holds for its types too.

A dictionary column comes back with the spine's own dictionary (unified over its chunks): the
categories keep their order, unused ones included, and every batch has the same dictionary. That
dictionary is read from the spine (an Arrow table, or that column of a Parquet file); a spine the
engine holds itself (a Spark DataFrame) gives the engine's type. So does a column whose type has
no cast back (a struct holding a duration, say).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurekit.offline.engine import Spine

Cast = Callable[[pa.Array], pa.Array]


def _plain_cast(target: pa.DataType) -> Cast:
    return lambda array: array.cast(target)


def _onto_dictionary(target: pa.DictionaryType, dictionary: pa.Array) -> Cast:
    """Encode values (or another dictionary's) on the spine's own ``dictionary``."""

    def cast(array: pa.Array) -> pa.Array:
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        indices = pc.index_in(array.cast(dictionary.type), value_set=dictionary)
        return pa.DictionaryArray.from_arrays(indices.cast(target.index_type), dictionary, ordered=target.ordered)

    return cast


def _cast_back(returned: pa.DataType, given: pa.DataType, dictionary: pa.Array | None) -> Cast | None:
    """How to turn an engine's ``returned`` type back into the spine's ``given`` one; None: it cannot be."""
    if pa.types.is_dictionary(given):
        if dictionary is None:
            return None
        cast = _onto_dictionary(given, dictionary)
    else:
        cast = _plain_cast(given)
    try:  # (a null, not an empty array: an empty list or struct never casts its children)
        cast(pa.nulls(1, returned))
    except (pa.ArrowException, TypeError, ValueError):  # no such cast in this pyarrow
        return None
    return cast


def _dictionary(spine: Spine, name: str, given: pa.DictionaryType) -> pa.Array | None:
    """The spine column's dictionary, unified over its chunks; None if it cannot be read or indexed."""
    if spine.table is not None:
        column = spine.table.column(name)
    elif spine.file is not None:
        try:
            column = pq.read_table(spine.file, columns=[name]).column(0)
        except (pa.ArrowException, OSError, IndexError):  # (a nested name pyarrow takes as a path)
            return None
        if not pa.types.is_dictionary(column.type):
            return None
    else:
        return None
    try:
        unified = column.unify_dictionaries()
    except pa.ArrowInvalid:  # the chunks' dictionaries together outgrow the index type
        return None
    return unified.chunk(0).dictionary if unified.num_chunks else pa.array([], given.value_type)


@dataclass
class SpineTypes:
    """Casts an engine's batches so that the spine's columns have the spine's own types."""

    spine: Spine
    _plans: dict[pa.Schema, list[tuple[int, pa.Field, Cast]]] = field(default_factory=dict)

    def _plan(self, schema: pa.Schema) -> list[tuple[int, pa.Field, Cast]]:
        plan = self._plans.get(schema)
        if plan is None:
            plan = []
            for given in self.spine.schema:
                index = schema.get_field_index(given.name)
                if index < 0 or schema.field(index).type == given.type:
                    continue
                dictionary = None
                if pa.types.is_dictionary(given.type):
                    dictionary = _dictionary(self.spine, given.name, given.type)
                cast = _cast_back(schema.field(index).type, given.type, dictionary)
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
