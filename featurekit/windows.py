"""Window features: names, checks and result types, shared by apply, training sets and serving.

A window view's registered definition holds ``window``: the delay and one entry per feature
(aggregation x window). Everything downstream (the engine's window join, online window state, the
skew check) reads that plain description, never the decorated objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa

from featurekit.agg import FUNCTIONS, NUMERIC_ONLY, ORDERED, Aggregation
from featurekit.definitions import WindowView

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
US = 1_000_000
# Sums of floats (and what is derived from them) may differ in the last bits with the order of
# summation; every other aggregation is exact.
FLOAT_TOLERANCE = 1e-9
# How every path orders a null created time among a window's events: before every real one.
NULL_CREATED_US = -(2**63) + 1


def micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def window_suffix(window_us: int) -> str:
    """``30s``, ``15m``, ``1h``, ``7d``: the largest unit that divides the window."""
    seconds = window_us // US
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("windows are whole seconds")


@dataclass(frozen=True)
class WindowFeature:
    """One feature of a window view: ``fn`` of ``column`` over the last ``window_us``."""

    name: str
    fn: str
    column: str | None
    window_us: int
    n: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fn": self.fn, "column": self.column, "window_us": self.window_us, "n": self.n}


@dataclass(frozen=True)
class WindowSpec:
    """What a registered window view computes: its delay and its features."""

    delay_us: int
    features: tuple[WindowFeature, ...]

    @property
    def longest_us(self) -> int:
        return max(f.window_us for f in self.features)

    @property
    def columns(self) -> list[str]:
        """The function output columns the aggregations read, in first-use order."""
        found: list[str] = []
        for feature in self.features:
            if feature.column is not None and feature.column not in found:
                found.append(feature.column)
        return found

    def describe(self) -> dict[str, Any]:
        return {"delay_us": self.delay_us, "features": [f.describe() for f in self.features]}

    @staticmethod
    def of(definition: dict[str, Any]) -> WindowSpec:
        """The spec of a registered definition (``definition["window"]``)."""
        window = definition["window"]
        return WindowSpec(
            int(window["delay_us"]),
            tuple(
                WindowFeature(f["name"], f["fn"], f["column"], int(f["window_us"]), f.get("n"))
                for f in window["features"]
            ),
        )


def spec_of(view: WindowView) -> WindowSpec:
    """The features of a (checked) window view, aggregation-major: every window of the first, then the next."""
    features = [
        WindowFeature(f"{a.prefix}_{window_suffix(micros(w))}", a.fn, a.column, micros(w), a.n)
        for a in view.aggregations
        for w in view.windows
    ]
    return WindowSpec(micros(view.delay), tuple(features))


def static_problems(view: WindowView) -> list[str]:
    """What is wrong with a window view's arguments, knowable without running it (load time)."""
    where = f"{view.location}: window view {view.name!r}"
    problems: list[str] = []
    if not view.windows:
        problems.append(f"{where}: windows= is empty; pass e.g. windows=[timedelta(hours=1)]")
    for window in view.windows:
        if not isinstance(window, timedelta):
            problems.append(f"{where}: window {window!r} must be a timedelta, e.g. timedelta(hours=1)")
        elif window <= timedelta(0) or window.microseconds:
            problems.append(f"{where}: window {window} must be a positive whole number of seconds")
    if not isinstance(view.delay, timedelta) or view.delay < timedelta(0):
        problems.append(f"{where}: delay= must be a timedelta >= 0, got {view.delay!r}")
    if not view.aggregations:
        problems.append(f"{where}: aggregations= is empty; pass e.g. [agg.count(), agg.sum('amount')]")
    for item in view.aggregations:
        if not isinstance(item, Aggregation):
            problems.append(f"{where}: aggregation {item!r} is not one of featurekit.agg's (agg.sum('amount'), ...)")
            continue
        at = f"{item.location}: aggregation {item.fn}({item.column or ''}) of window view {view.name!r}"
        if item.fn not in FUNCTIONS:
            problems.append(f"{at}: unknown aggregation {item.fn!r}; use one of {', '.join(FUNCTIONS)}")
        if item.fn != "count" and not isinstance(item.column, str):
            problems.append(f"{at}: needs a column name")
        if item.fn == "last_n" and (not isinstance(item.n, int) or isinstance(item.n, bool) or item.n < 1):
            problems.append(f"{at}: n must be a whole number >= 1, got {item.n!r}")
        if item.name is not None and (not isinstance(item.name, str) or not item.name):
            problems.append(f"{at}: name= must be a non-empty string")
    if problems:
        return problems
    seen: dict[str, Aggregation] = {}
    for item in view.aggregations:
        for window in view.windows:
            name = f"{item.prefix}_{window_suffix(micros(window))}"
            if name in seen:
                problems.append(
                    f"{item.location}: window view {view.name!r} computes feature {name!r} twice "
                    f"(also at {seen[name].location}); give one of them name=..."
                )
            seen.setdefault(name, item)
    return problems


def _numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))


def _orderable(dtype: pa.DataType) -> bool:
    return bool(
        _numeric(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_temporal(dtype)
        or pa.types.is_decimal(dtype)
    )


def column_problems(view: WindowView, schema: pa.Schema) -> list[str]:
    """Aggregations of columns the function does not return, or of the wrong type (apply time)."""
    reserved = {*view.join_keys, *view.source.timestamp_columns}
    problems = []
    for item in view.aggregations:
        if item.column is None:
            continue
        at = f"{item.location}: window view {view.name!r}, agg.{item.fn}({item.column!r})"
        if item.column not in schema.names or item.column in reserved:
            columns = [c for c in schema.names if c not in reserved]
            problems.append(f"{at}: the function returns no value column {item.column!r} (it returns {columns})")
            continue
        dtype = schema.field(item.column).type
        if item.fn in NUMERIC_ONLY and not _numeric(dtype):
            problems.append(f"{at}: {item.fn} needs an integer or float column, {item.column!r} is {dtype}")
        elif item.fn in ORDERED and not _orderable(dtype):
            problems.append(f"{at}: {item.fn} needs comparable values, {item.column!r} is {dtype}")
    return problems


def feature_type(feature: WindowFeature, schema: pa.Schema) -> pa.DataType:
    """The result type of a window feature, given the function's output schema."""
    if feature.fn in ("count", "count_distinct"):
        return pa.int64()
    assert feature.column is not None
    dtype = schema.field(feature.column).type
    if feature.fn == "sum":
        return pa.int64() if pa.types.is_integer(dtype) else pa.float64()
    if feature.fn in ("mean", "std", "var"):
        return pa.float64()
    if feature.fn == "last_n":
        return pa.list_(dtype)
    return dtype


def registered_type(definition: dict[str, Any], schema: pa.Schema, feature: str) -> pa.DataType:
    """The type of a feature of a registered definition whose function output schema is ``schema``."""
    if definition.get("kind") != "window":
        return schema.field(feature).type
    spec = WindowSpec.of(definition)
    return feature_type(next(f for f in spec.features if f.name == feature), schema)


def feature_schema(spec: WindowSpec, schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, feature_type(f, schema)) for f in spec.features])


def tolerant(feature: WindowFeature, schema: pa.Schema) -> bool:
    """Whether values may differ within :data:`FLOAT_TOLERANCE` between engines or paths."""
    if feature.fn in ("mean", "std", "var"):
        return True
    if feature.fn != "sum" or feature.column is None:
        return False
    return bool(pa.types.is_floating(schema.field(feature.column).type))
