"""The one module that runs user feature functions, for every path.

Batch views: materialization, pushes and schema inference at apply all call :func:`run_view`, so
a function always sees the same input (the source's columns, in the source's order and dtypes, as
the frame type it asks for) and its output is checked and normalized the same way: required
columns present, timestamps as UTC instants, a stable column order.

On-demand views: training sets, online lookups and schema inference all call
:func:`run_on_demand`, which hands the function exactly the declared inputs, in the declared order,
cast to the declared dtypes, whatever path assembled them.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa

from featurekit.definitions import FeatureView, OnDemandView
from featurekit.errors import FeatureFunctionError, InvalidNameError, SchemaError
from featurekit.timestamps import normalize_timestamps

_WIDE_TO_STORAGE = {
    pa.large_string(): pa.string(),
    pa.string_view(): pa.string(),
    pa.large_binary(): pa.binary(),
    pa.binary_view(): pa.binary(),
}


def storage_type(dtype: pa.DataType) -> pa.DataType:
    """The dtype a column has once stored: large/view string and binary types fold to plain ones."""
    return _WIDE_TO_STORAGE.get(dtype, dtype)


def to_frame(rows: pa.Table, kind: str) -> Any:
    """Hand ``rows`` to a function as the frame type it declared."""
    if kind == "pandas":
        return rows.to_pandas()
    if kind == "arrow":
        return rows
    return pl.from_arrow(rows, rechunk=False)


def to_arrow(result: Any, where: str) -> pa.Table:
    """Turn what a function returned into an Arrow table, or fail naming the function."""
    if isinstance(result, pl.LazyFrame):
        result = result.collect()
    names = result.column_names if isinstance(result, pa.Table) else getattr(result, "columns", [])
    unusable = [n for n in names if not isinstance(n, str) or "\x00" in n]
    if unusable:  # (polars cannot even export a NUL in a column name: it panics)
        raise InvalidNameError(
            [f"{where} returned columns named {unusable}; column names must be strings without NUL characters"]
        )
    if isinstance(result, pl.DataFrame):
        return result.to_arrow()
    if isinstance(result, pd.DataFrame):
        return pa.Table.from_pandas(result, preserve_index=False).replace_schema_metadata(None)
    if isinstance(result, pa.Table):
        return result
    raise FeatureFunctionError(
        f"{where} returned {type(result).__name__}; return a polars or pandas DataFrame (or an Arrow table)"
    )


def _user_line(view: FeatureView | OnDemandView, exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if frame.filename == view.location.file:
            return f"{frame.filename}:{frame.lineno}"
    return str(view.location)


def run_view(view: FeatureView, rows: pa.Table, expected: pa.Schema | None = None) -> pa.Table:
    """Run ``view``'s function on source ``rows`` and return its checked, normalized output.

    The output holds the join keys, the event timestamp, the created timestamp (when declared) and
    then the features in the order the function produced them. With ``expected`` (the schema
    recorded at apply) any difference in columns or dtypes is an error naming each column.
    """
    where = f"feature view '{view.name}' ({view.location})"
    try:
        result = view.function(to_frame(rows, view.frame))
    except Exception as exc:  # the user's code: report it with its own line, keep the cause
        raise FeatureFunctionError(
            f"feature view '{view.name}' raised {type(exc).__name__}: {exc} ({_user_line(view, exc)}); "
            "nothing was committed"
        ) from exc
    table = to_arrow(result, where)
    names = table.column_names
    required = [*view.join_keys, *view.source.timestamp_columns]
    missing = [c for c in required if c not in names]
    if missing:
        raise FeatureFunctionError(
            f"{where} returned no column {', '.join(repr(c) for c in missing)}; its output must keep the "
            f"entity keys and timestamps {required} (it returned {names})"
        )
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise FeatureFunctionError(f"{where} returned duplicate columns {duplicated}")
    features = [c for c in names if c not in required]
    if not features:
        raise FeatureFunctionError(
            f"{where} returned only keys and timestamps {names}; add at least one feature column"
        )
    try:
        table = normalize_timestamps(table.select([*required, *features]), list(view.source.timestamp_columns), where)
    except SchemaError as exc:
        raise FeatureFunctionError(str(exc)) from exc
    table = _cast_declared(view, table, where)
    if expected is not None:
        check_schema(table.schema, expected, where)
    return table


def declared_types(view: FeatureView) -> dict[str, pa.DataType]:
    """The view's declared output dtypes (``schema=``) as stored Arrow types; a dtype it cannot use raises."""
    declared = {}
    for name, dtype in view.schema.items():
        if isinstance(dtype, pa.DataType):
            declared[name] = storage_type(dtype)
        elif isinstance(dtype, pl.DataType) or (isinstance(dtype, type) and issubclass(dtype, pl.DataType)):
            declared[name] = storage_type(pl.DataFrame(schema={name: dtype}).to_arrow().schema.field(name).type)
        else:
            raise SchemaError(
                f"schema= gives {name!r} {dtype!r}: not a polars dtype (pl.Int64) or Arrow type (pa.int64())"
            )
    return declared


def _cast_declared(view: FeatureView, table: pa.Table, where: str) -> pa.Table:
    if not view.schema:
        return table
    for name, dtype in declared_types(view).items():
        if name not in table.column_names:
            raise FeatureFunctionError(
                f"{where} declares schema= for {name!r} but returned no such column (it returned {table.column_names})"
            )
        column = table.column(name)
        if storage_type(column.type) == dtype:
            continue
        try:
            cast = column.cast(dtype)  # safe: a value that does not fit fails, never wraps or truncates
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FeatureFunctionError(
                f"{where} returned {name!r} as {column.type}, which does not fit its declared dtype {dtype}: {exc}"
            ) from exc
        table = table.set_column(table.column_names.index(name), name, cast)
    return table


def _arrow_code(dtype: pa.DataType) -> str:
    """How to write ``dtype`` in a decorator (``pa.int64()``), for the simple types a message suggests."""
    return f"pa.{dtype}()" if str(dtype).isidentifier() else f"<{dtype}>"


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str) -> None:
    """Fail with a per-column diff when ``actual`` differs from ``expected`` (storage types compared).

    The code is the applied code (materialize and push refuse anything else), so applying again
    would record the same schema: the difference comes from the rows the function got.
    """
    got = {f.name: storage_type(f.type) for f in actual}
    want = {f.name: storage_type(f.type) for f in expected}
    if list(got) == list(want) and got == want:
        return
    diff = [f"missing {c!r} ({want[c]})" for c in want if c not in got]
    diff += [f"new {c!r} ({got[c]})" for c in got if c not in want]
    changed = {c: want[c] for c in want if c in got and got[c] != want[c]}
    diff += [f"{c!r} is {got[c]}, was {want[c]}" for c in changed]
    if not diff:
        diff = [f"column order {list(got)}, was {list(want)}"]
    if changed and len(changed) == len(diff):
        declared = ", ".join(
            f"{c!r}: pa.{t}()" if str(t).isidentifier() else f"{c!r}: <{t}>" for c, t in changed.items()
        )
        fix = (
            "its output dtypes depend on the rows it gets (pandas makes an int column with nulls float64), so "
            f"declare them in the decorator, @fk.feature_view(..., schema={{{declared}}}) (a new version), "
            "or cast inside the function"
        )
    else:
        fix = "it must return the same columns, in the same order, whatever rows it gets"
    raise FeatureFunctionError(
        f"{where} output differs from the schema recorded at apply (inferred from zero rows): {'; '.join(diff)}; "
        f"re-registering the same code cannot fix this: {fix}"
    )


def input_column(view: OnDemandView, name: str, values: pl.Series | Sequence[Any], dtype: Any) -> pl.Series:
    """One declared input of an on-demand view, as a series of exactly its declared dtype.

    Training sets pass spine columns (series), lookups pass request values (lists): both are cast
    by the same rule, and a value that does not fit the dtype is a :class:`SchemaError` naming the
    view, the input, the value and the dtype, on both paths (never a null on one and a crash on
    the other).
    """
    misfit = _wrong_kind(values, dtype)
    if misfit is not _FITS:
        raise SchemaError(
            f"on-demand view '{view.name}' ({view.location}): input {name!r} got {misfit!r}, which is not a value "
            f"of its declared dtype {dtype} (booleans, lists and objects are not numbers or text); pass values of "
            "that dtype, or declare the dtype the values have"
        )
    if not isinstance(values, pl.Series):
        try:  # values that already have the dtype (fetched features, the common request): no inference
            return pl.Series(name, values, dtype=dtype, strict=True)
        except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
            pass  # infer their own dtype, then cast as a spine column would be, below
    try:
        series = values.alias(name) if isinstance(values, pl.Series) else pl.Series(name, list(values), strict=False)
        if series.dtype == dtype:
            return series
        return series.cast(dtype, strict=True)
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
        pass  # find the first value that does not fit, below
    raise SchemaError(
        f"on-demand view '{view.name}' ({view.location}): input {name!r} got {_misfit(values, dtype)!r}, which does "
        f"not fit its declared dtype {dtype}; pass values of that dtype (as request= online, as the spine column "
        f"{name!r} in a training set), or declare the dtype the values have"
    )


_FITS = object()


def _wrong_kind(values: pl.Series | Sequence[Any], dtype: Any) -> Any:
    """A boolean, list or mapping given for a number or text input (polars would turn True into 1.0)."""
    target = dtype if isinstance(dtype, pl.DataType) else dtype()
    if not (target.is_numeric() or target == pl.String):
        return _FITS
    if isinstance(values, pl.Series):
        wrong = values.dtype == pl.Boolean or values.dtype.is_nested()
        return values.drop_nulls().head(1).to_list()[0] if wrong and values.null_count() < len(values) else _FITS
    for value in values:
        if isinstance(value, (bool, dict, list, tuple)):
            return value
    return _FITS


def _misfit(values: pl.Series | Sequence[Any], dtype: Any) -> Any:
    """The first value that cannot be cast to ``dtype``."""
    for value in values:
        if value is None:
            continue
        try:
            pl.Series([value], strict=False).cast(dtype, strict=True)
        except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
            return value
    return next((v for v in values if v is not None), None)


def run_on_demand(view: OnDemandView, frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run an on-demand view on ``frame``'s declared input columns; return its feature columns.

    ``schema`` is the declared input schema (input features then request columns, in order); the
    function receives exactly those columns with exactly those dtypes.
    """
    where = f"on-demand view '{view.name}' ({view.location})"
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where} needs inputs {missing}; pass them (request inputs come from the spine or request=)")
    names = list(schema)
    if frame.columns == names and frame.dtypes == list(schema.values()):
        inputs = frame  # already exactly the declared inputs (the common case): no copy
    else:
        inputs = pl.DataFrame([input_column(view, c, frame.get_column(c), dtype) for c, dtype in schema.items()])
    argument: Any = inputs if view.frame == "polars" else to_frame(inputs.to_arrow(), view.frame)
    try:
        result = view.function(argument)
    except Exception as exc:  # the user's code: report it with its own line, keep the cause
        raise FeatureFunctionError(
            f"on-demand view '{view.name}' raised {type(exc).__name__}: {exc} ({_user_line(view, exc)})"
        ) from exc
    if isinstance(result, pl.LazyFrame):
        result = result.collect()
    if not isinstance(result, pl.DataFrame):
        result = pl.DataFrame(to_arrow(result, where))
    if result.height != inputs.height:
        raise FeatureFunctionError(
            f"{where} returned {result.height} rows for {inputs.height} input rows; "
            "an on-demand view must return one row per input row"
        )
    if not result.columns:
        raise FeatureFunctionError(f"{where} returned no columns; return at least one feature")
    return result
