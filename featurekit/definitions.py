"""What a feature repo defines: entities, sources and feature views (plain decorated functions).

Constructors only record what they are given (and where); :mod:`featurekit.repo` validates every
definition at once so that one load reports every problem with its file and line.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any, Literal

NullPolicy = Literal["error", "drop"]
FrameKind = Literal["polars", "pandas", "arrow"]

__all__ = [
    "Entity",
    "FeatureRef",
    "FeatureSet",
    "FeatureView",
    "FileSource",
    "Location",
    "OnDemandView",
    "SqlSource",
    "WindowView",
    "feature_view",
    "on_demand",
    "window_view",
]


@dataclass(frozen=True)
class Location:
    """Where a definition was written."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _caller_location(depth: int = 2) -> Location:
    frame = sys._getframe(depth)
    return Location(frame.f_code.co_filename, frame.f_lineno)


class Entity:
    """A thing features describe, identified by one or more join keys.

    >>> driver = Entity("driver", join_keys=["driver_id"])
    >>> driver.join_keys
    ('driver_id',)
    """

    def __init__(self, name: str, join_keys: Sequence[str], *, description: str = "") -> None:
        self.name = name
        self.join_keys: tuple[str, ...] = (join_keys,) if isinstance(join_keys, str) else tuple(join_keys)
        self.description = description
        self.location = _caller_location()

    def __repr__(self) -> str:
        return f"Entity({self.name!r}, join_keys={list(self.join_keys)!r})"


@dataclass(frozen=True)
class _SourceBase:
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    on_null: NullPolicy = "error"
    location: Location = field(default=Location("<unknown>", 0), compare=False)

    @property
    def timestamp_columns(self) -> list[str]:
        return [self.timestamp_field] + ([self.created_timestamp_field] if self.created_timestamp_field else [])


@dataclass(frozen=True)
class FileSource(_SourceBase):
    """Rows from Parquet or CSV files: a path or glob relative to the repo root.

    ``on_null="drop"`` skips source rows with a null event timestamp (and output rows with a null
    key) instead of failing the materialization.

    >>> FileSource("data/trips.parquet", timestamp_field="event_timestamp").format
    'parquet'
    """

    path: str = ""
    file_format: Literal["parquet", "csv", "auto"] = "auto"

    def __init__(
        self,
        path: str,
        timestamp_field: str = "event_timestamp",
        created_timestamp_field: str | None = None,
        *,
        file_format: Literal["parquet", "csv", "auto"] = "auto",
        on_null: NullPolicy = "error",
    ) -> None:
        object.__setattr__(self, "path", str(path))
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        object.__setattr__(self, "file_format", file_format)
        object.__setattr__(self, "on_null", on_null)
        object.__setattr__(self, "location", _caller_location())

    @property
    def format(self) -> Literal["parquet", "csv"]:
        if self.file_format != "auto":
            return self.file_format
        suffix = PurePosixPath(self.path.lower()).suffix
        return "csv" if suffix in {".csv", ".tsv", ".txt"} or self.path.lower().endswith(".csv.gz") else "parquet"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "file",
            "path": self.path,
            "format": self.format,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "on_null": self.on_null,
        }


@dataclass(frozen=True)
class SqlSource(_SourceBase):
    """Rows from a DuckDB SQL query (DuckDB reads Parquet, CSV, JSON and more).

    Relative paths inside the query resolve against the repo root.

    >>> SqlSource("select * from read_parquet('data/trips.parquet')").timestamp_field
    'event_timestamp'
    """

    query: str = ""

    def __init__(
        self,
        query: str,
        timestamp_field: str = "event_timestamp",
        created_timestamp_field: str | None = None,
        *,
        on_null: NullPolicy = "error",
    ) -> None:
        object.__setattr__(self, "query", query)
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        object.__setattr__(self, "on_null", on_null)
        object.__setattr__(self, "location", _caller_location())

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "sql",
            "query": self.query,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "on_null": self.on_null,
        }


Source = FileSource | SqlSource


@dataclass(frozen=True)
class FeatureRef:
    """A reference to one feature (or, with ``feature=None``, all features) of a view.

    ``version`` pins a registry version of the view; ``None`` means the applied one.

    >>> str(FeatureRef("driver_stats", "conv_rate", version=2))
    'driver_stats@v2:conv_rate'
    """

    view: str
    feature: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        pinned = f"{self.view}@v{self.version}" if self.version is not None else self.view
        return pinned if self.feature is None else f"{pinned}:{self.feature}"


class _ViewBase:
    """What batch and on-demand views share: a wrapped function, its name, metadata and location."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        tags: Mapping[str, str] | None,
        owner: str | None,
        description: str | None,
        frame: FrameKind | None,
    ) -> None:
        functools.update_wrapper(self, function)
        self.function = function
        self.name: str = function.__name__
        self.tags = dict(tags or {})
        self.owner = owner
        self.description = description if description is not None else (inspect.getdoc(function) or "")
        self.frame: FrameKind = frame or _frame_kind(function)
        self.code_hash: str | None = None  # recorded by the repo loader at import time
        self.source_text: str | None = None
        code = getattr(function, "__code__", None)
        self.location = Location(code.co_filename, code.co_firstlineno) if code else _caller_location(3)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __getitem__(self, feature: str) -> FeatureRef:
        return FeatureRef(self.name, feature)


class FeatureView(_ViewBase):
    """A batch feature view: a plain function from source rows to keyed, timestamped features.

    Calling the view calls the function, so it stays unit-testable. ``view["feature"]`` returns a
    :class:`FeatureRef` for ``training_set(features=[...])``; names are checked against the registry
    before any work starts.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        entities: Sequence[Entity],
        source: Source,
        ttl: timedelta | None,
        tags: Mapping[str, str] | None = None,
        owner: str | None = None,
        description: str | None = None,
        frame: FrameKind | None = None,
        location: Location | None = None,
        schema: Mapping[str, Any] | None = None,
        checks: Sequence[Any] = (),
        on_check_failure: str = "fail",
    ) -> None:
        super().__init__(function, tags=tags, owner=owner, description=description, frame=frame)
        self.entities = tuple(entities)
        self.source = source
        self.ttl = ttl
        self.schema: dict[str, Any] = dict(schema or {})  # declared output dtypes (polars or Arrow)
        # fk.check.* checks of the output before each commit (metadata: not part of the version)
        self.checks: Any = tuple(checks) if isinstance(checks, (list, tuple)) else checks  # else refused at load
        self.on_check_failure = on_check_failure
        if location is not None:
            self.location = location

    @property
    def join_keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        for entity in self.entities:
            keys.extend(k for k in entity.join_keys if k not in keys)
        return tuple(keys)

    @property
    def timestamp_field(self) -> str:
        return self.source.timestamp_field

    @property
    def created_timestamp_field(self) -> str | None:
        return self.source.created_timestamp_field

    def __repr__(self) -> str:
        return f"<FeatureView {self.name} keys={list(self.join_keys)} at {self.location}>"


def feature_view(
    *,
    entity: Entity | Sequence[Entity],
    source: Source,
    ttl: timedelta | None = None,
    tags: Mapping[str, str] | None = None,
    owner: str | None = None,
    description: str | None = None,
    frame: FrameKind | None = None,
    schema: Mapping[str, Any] | None = None,
    checks: Sequence[Any] = (),
    on_check_failure: Literal["fail", "warn"] = "fail",
) -> Callable[[Callable[..., Any]], FeatureView]:
    """Declare a feature view: the decorated function's name is the view's name.

    The function receives the source rows of a materialization window (a polars DataFrame, or
    pandas when its first parameter is annotated ``pd.DataFrame``; ``frame=`` overrides) and
    returns the join keys, the event timestamp (and the created timestamp when the source declares
    one) plus one column per feature.

    Output dtypes are inferred by running the function on zero rows. When they depend on the rows
    (pandas turns an int column with nulls into float64), declare them: ``schema={"n": pl.Int64}``
    (polars dtypes or Arrow types, for any output column but the timestamps); the output is cast
    to them on every run, and they are part of the view's version.

    ``checks`` (:mod:`featurekit.check`) run over the output of every materialization and push
    before it is committed; ``on_check_failure="fail"`` refuses to commit on a failing check,
    ``"warn"`` commits and warns. Both are metadata: editing them makes no new version.
    """
    entities = [entity] if isinstance(entity, Entity) else list(entity)

    def decorate(function: Callable[..., Any]) -> FeatureView:
        return FeatureView(
            function,
            entities=entities,
            source=source,
            ttl=ttl,
            tags=tags,
            owner=owner,
            description=description,
            frame=frame,
            schema=schema,
            checks=checks,
            on_check_failure=on_check_failure,
        )

    return decorate


class WindowView(FeatureView):
    """A feature view whose features are aggregates of its function's rows over sliding windows.

    The function is an ordinary view function (same input, same executor): it turns source rows
    into per-event rows, which are stored offline like any view's. Its features are every
    aggregation over every window, computed at the time asked for (a spine row's, or the lookup's).
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        entities: Sequence[Entity],
        source: Source,
        windows: Sequence[timedelta],
        aggregations: Sequence[Any],
        delay: timedelta | None = None,
        tags: Mapping[str, str] | None = None,
        owner: str | None = None,
        description: str | None = None,
        frame: FrameKind | None = None,
        schema: Mapping[str, Any] | None = None,
        checks: Sequence[Any] = (),
        on_check_failure: str = "fail",
    ) -> None:
        super().__init__(
            function,
            entities=entities,
            source=source,
            ttl=None,
            tags=tags,
            owner=owner,
            description=description,
            frame=frame,
            schema=schema,
            checks=checks,
            on_check_failure=on_check_failure,
        )
        self.windows = tuple(windows) if isinstance(windows, (list, tuple)) else (windows,)
        self.aggregations = tuple(aggregations) if isinstance(aggregations, (list, tuple)) else (aggregations,)
        self.delay = delay if delay is not None else timedelta(0)

    def __repr__(self) -> str:
        return f"<WindowView {self.name} keys={list(self.join_keys)} at {self.location}>"


def window_view(
    *,
    entity: Entity | Sequence[Entity],
    source: Source,
    windows: Sequence[timedelta],
    aggregations: Sequence[Any],
    delay: timedelta | None = None,
    tags: Mapping[str, str] | None = None,
    owner: str | None = None,
    description: str | None = None,
    frame: FrameKind | None = None,
    schema: Mapping[str, Any] | None = None,
    checks: Sequence[Any] = (),
    on_check_failure: Literal["fail", "warn"] = "fail",
) -> Callable[[Callable[..., Any]], WindowView]:
    """Declare a window view: every aggregation (:mod:`featurekit.agg`) over every window.

    **The rule.** For a spine row (keys k, time t) and a window w, the aggregation runs over the
    events of keys k with event time e where ``t - delay - w <= e < t - delay``: start inclusive,
    end exclusive. Row features use ``t - ttl <= e <= t`` because a row that happened at t is known
    at t; a window excludes its end so that the event being scored never counts itself and
    consecutive windows tile time exactly. Every event counts (equal times and duplicates too);
    with a created timestamp, ``known_at`` leaves out events created after it. Online lookups apply
    the same rule at the lookup instant, so values decay without any materialization.

    ``windows`` are positive whole numbers of seconds; features are named ``{column}_{fn}_{window}``
    with the window written ``30s``, ``15m``, ``1h`` or ``7d`` (the largest unit that divides it).
    ``delay`` ends every window that long before t, for sources that arrive late.
    ``checks`` and ``on_check_failure`` are :func:`feature_view`'s, over the function's per-event rows.
    """
    entities = [entity] if isinstance(entity, Entity) else list(entity)

    def decorate(function: Callable[..., Any]) -> WindowView:
        return WindowView(
            function,
            entities=entities,
            source=source,
            windows=windows,
            aggregations=aggregations,
            delay=delay,
            tags=tags,
            owner=owner,
            description=description,
            frame=frame,
            schema=schema,
            checks=checks,
            on_check_failure=on_check_failure,
        )

    return decorate


def _frame_kind(function: Callable[..., Any]) -> FrameKind:
    """Pick the frame library from the first parameter's annotation (default polars)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return "polars"
    if not parameters:
        return "polars"
    annotation = parameters[0].annotation
    if isinstance(annotation, str):
        text = annotation
    else:
        text = f"{getattr(annotation, '__module__', '')}.{getattr(annotation, '__qualname__', '')}"
    if text.startswith(("pandas.", "pd.")):
        return "pandas"
    if text.startswith(("pyarrow.", "pa.")):
        return "arrow"
    return "polars"


class OnDemandView(_ViewBase):
    """A request-time feature view: a row-wise function of other features and request inputs.

    It runs inside ``training_set`` (request inputs come from spine columns of the same name) and
    inside ``online_features``, on exactly the declared inputs, in the declared order and dtypes.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        inputs: Sequence[str | FeatureRef],
        request: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        owner: str | None = None,
        description: str | None = None,
        frame: FrameKind | None = None,
    ) -> None:
        super().__init__(function, tags=tags, owner=owner, description=description, frame=frame)
        self.inputs: tuple[str | FeatureRef, ...] = tuple(inputs)
        self.request: dict[str, Any] = dict(request or {})

    def __repr__(self) -> str:
        return f"<OnDemandView {self.name} inputs={[str(i) for i in self.inputs]} at {self.location}>"


def on_demand(
    *,
    inputs: Sequence[str | FeatureRef],
    request: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    owner: str | None = None,
    description: str | None = None,
    frame: FrameKind | None = None,
) -> Callable[[Callable[..., Any]], OnDemandView]:
    """Declare an on-demand view over ``inputs`` (``"view:feature"``) and ``request`` columns.

    ``request`` maps each request-time input to its polars dtype (e.g. ``{"trip_km": pl.Float64}``).
    The function receives one frame with the inputs (named by feature) then the request columns,
    and returns a frame with the same number of rows holding its features.
    """

    def decorate(function: Callable[..., Any]) -> OnDemandView:
        return OnDemandView(
            function, inputs=inputs, request=request, tags=tags, owner=owner, description=description, frame=frame
        )

    return decorate


class FeatureSet:
    """A named list of features a model reads (what Feast calls a feature service).

    Registered and versioned like a view (a new version when its list changes), so a model names
    one thing: ``training_set(spine, "fraud_v1")``, ``online_features(entities, "fraud_v1")``,
    and a training set's manifest records the set's version. Its features are requests as
    ``training_set`` takes them (``"view:feature"``, ``"view"``, ``"view@v2:feature"``,
    ``view["feature"]``); unpinned ones follow the applied view versions.

    >>> FeatureSet("fraud_v1", features=["driver_stats:conv_rate", "trip_risk"]).features
    ('driver_stats:conv_rate', 'trip_risk')
    """

    def __init__(
        self,
        name: str,
        features: Sequence[Any],
        *,
        description: str = "",
        owner: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.features: tuple[Any, ...] = tuple(features) if isinstance(features, (list, tuple)) else (features,)
        self.description = description
        self.owner = owner
        self.tags = dict(tags or {})
        self.location = _caller_location()

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, features={[str(f) for f in self.features]!r})"
