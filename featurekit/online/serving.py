"""Online lookups: the same feature plan and on-demand executor as training, over an online store.

A lookup resolves its feature list once (cached until the registry's head changes), reads each
batch view version's table by encoded key, applies the view's TTL at the lookup time (a value
older than the TTL is null online exactly as in a training set), and runs on-demand views through
:func:`featurekit.ondemand.run_steps` on a frame with the registered dtypes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa

from featurekit.codebase import Codebase
from featurekit.errors import DataError, NotAppliedError, SchemaError
from featurekit.ondemand import OnDemandStep, build_steps, needed_columns, request_inputs, run_steps
from featurekit.online.base import OnlineStore, encode_key
from featurekit.online.codecs import Decoder, decoder
from featurekit.online.loading import table_name
from featurekit.plan import arrow_to_polars, check_applied
from featurekit.references import FeaturePlan, FeatureRequest, internal_name, resolve
from featurekit.registry import Registry
from featurekit.timestamps import to_micros


@dataclass(frozen=True)
class BatchLookup:
    """How to read one batch view version online."""

    table: str
    join_keys: list[str]
    key_kinds: list[type]
    features: list[str]
    internal: list[str]
    decoders: list[Decoder | None]
    ttl_us: int | None
    dtypes: dict[str, Any]  # internal name -> polars dtype (for on-demand inputs)


@dataclass(frozen=True)
class LookupRecipe:
    """A resolved feature list: what to read from which table, and what to compute."""

    lookups: list[BatchLookup]
    steps: list[OnDemandStep]
    request: dict[str, Any]
    outputs: list[tuple[str, str]]  # (internal name, output name)
    entity_keys: list[str]
    needed: list[str]  # on-demand inputs: internal columns and request names
    dtypes: dict[str, Any]  # internal name -> polars dtype of fetched batch features


class OnlineResponse:
    """Looked-up features: entity keys then features, one list per column."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        self.columns = columns

    def to_dict(self) -> dict[str, list[Any]]:
        """``{"driver_id": [...], "conv_rate": [...], ...}``."""
        return self.columns

    def to_arrow(self) -> pa.Table:
        return pa.table(self.columns)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def to_polars(self) -> pl.DataFrame:
        return pl.DataFrame(self.columns)

    def __len__(self) -> int:
        first = next(iter(self.columns.values()), [])
        return len(first)

    def __repr__(self) -> str:
        return f"OnlineResponse({self.columns!r})"


def entity_columns(entities: Any) -> dict[str, list[Any]]:
    """Entities as columns: from a list of dicts, a dict of lists, or a pandas/polars/Arrow frame."""
    if isinstance(entities, dict):
        columns = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in entities.items()}
    elif isinstance(entities, (list, tuple)):
        if not all(isinstance(e, dict) for e in entities):
            raise SchemaError("entities must be dicts like {'driver_id': 1001}, a dict of lists, or a frame")
        names: list[str] = []
        for entity in entities:
            names.extend(k for k in entity if k not in names)
        columns = {n: [e.get(n) for e in entities] for n in names}
        for index, entity in enumerate(entities):
            absent = [n for n in names if n not in entity]
            if absent:
                raise SchemaError(f"entity {index} ({entity}) has no key {absent[0]!r}; every entity needs every key")
    elif isinstance(entities, pa.Table):
        columns = {n: entities.column(n).to_pylist() for n in entities.column_names}
    elif type(entities).__module__.startswith(("pandas", "polars")):
        table = (
            entities.to_arrow()
            if type(entities).__module__.startswith("polars")
            else pa.Table.from_pandas(entities, preserve_index=False)
        )
        columns = {n: table.column(n).to_pylist() for n in table.column_names}
    else:
        raise SchemaError(
            f"entities must be a list of dicts, a dict of lists or a frame, got {type(entities).__name__}"
        )
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise SchemaError(f"entity key columns have different lengths: { {k: len(v) for k, v in columns.items()} }")
    return columns


def _key_kind(dtype: pa.DataType) -> type:
    if pa.types.is_integer(dtype):
        return int
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return str
    return object


def _encoded_keys(lookup: BatchLookup, columns: dict[str, list[Any]]) -> list[Any]:
    parts = []
    for key, kind in zip(lookup.join_keys, lookup.key_kinds, strict=True):
        values = columns.get(key)
        if values is None:
            raise SchemaError(f"entities have no key {key!r} (they have {list(columns)}); pass {key}=... for each")
        for index, value in enumerate(values):
            if value is None:
                raise DataError(f"entity {index} has a null {key!r}; every key part needs a value")
            if kind is not object and (
                type(value) is not kind and not (kind is int and isinstance(value, int) and not isinstance(value, bool))
            ):
                raise SchemaError(
                    f"entity {index} key {key!r} is {type(value).__name__} {value!r}, but the view's key is "
                    f"{kind.__name__}; pass a value of type {kind.__name__}"
                )
        parts.append(values)
    if len(parts) == 1:
        return parts[0] if lookup.key_kinds[0] is not object else [encode_key([v]) for v in parts[0]]
    return [encode_key(p) for p in zip(*parts, strict=True)]


class OnlineReader:
    """Reads features of entities from one online store (``online_features``); safe to share across threads."""

    def __init__(
        self,
        registry: Registry,
        codebase: Codebase,
        online: OnlineStore,
        refresh_s: float,
    ) -> None:
        self.registry = registry
        self.codebase = codebase
        self.online = online
        self.refresh_s = refresh_s
        self._recipes: dict[tuple[Any, ...], LookupRecipe] = {}
        self._head = -1
        self._checked = -1e18

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return
        self._checked = now
        head = self.registry.head_commit()
        if head != self._head:
            self._recipes = {}
            self._head = head

    def recipe(self, features: Sequence[FeatureRequest] | FeatureRequest, full_names: bool = False) -> LookupRecipe:
        """The lookup recipe of a feature list (cached; re-resolved after a new apply)."""
        self._fresh()
        requests = tuple(features) if isinstance(features, (list, tuple)) else (features,)
        cache_key = (*requests, full_names)
        recipe = self._recipes.get(cache_key)
        if recipe is None:
            recipe = self._build(list(requests), full_names)
            self._recipes[cache_key] = recipe
        return recipe

    def _build(self, features: list[FeatureRequest], full_names: bool) -> LookupRecipe:
        definitions = self.codebase.definitions
        resolved: FeaturePlan = resolve(features, self.registry.active(), self.registry)
        lookups = []
        entity_keys: list[str] = []
        for item in resolved.batch:
            version = item.version
            if not item.pinned:
                loaded = definitions.any_view(version.view)
                if loaded is None:
                    raise NotAppliedError(
                        f"feature view '{version.view}' is applied but not in the repo; serving needs its code"
                    )
                check_applied(loaded, version)
            keys = list(version.definition["join_keys"])
            entity_keys.extend(k for k in keys if k not in entity_keys)
            types = [version.schema.field(f).type for f in item.features]
            ttl_us = version.definition["ttl_us"]
            lookups.append(
                BatchLookup(
                    table=table_name(version.view, version.version),
                    join_keys=keys,
                    key_kinds=[_key_kind(version.schema.field(k).type) for k in keys],
                    features=list(item.features),
                    internal=[internal_name(version, f) for f in item.features],
                    decoders=[decoder(t) for t in types],
                    ttl_us=ttl_us,
                    dtypes={
                        internal_name(version, f): arrow_to_polars(t) for f, t in zip(item.features, types, strict=True)
                    },
                )
            )
        steps = build_steps(resolved, self.codebase, self.registry)
        names = resolved.output_names(full_names)
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise SchemaError(f"features {clashes} come from more than one view; pass full_names=True")
        outputs = [(internal_name(v, f), n) for (v, f), n in zip(resolved.outputs, names, strict=True)]
        dtypes = {name: dtype for lookup in lookups for name, dtype in lookup.dtypes.items()}
        return LookupRecipe(lookups, steps, request_inputs(steps), outputs, entity_keys, needed_columns(steps), dtypes)

    def lookup(
        self,
        entities: Any,
        features: Sequence[FeatureRequest] | FeatureRequest,
        request: dict[str, Any] | None = None,
        at: datetime | None = None,
        full_names: bool = False,
    ) -> OnlineResponse:
        """Features of ``entities`` as of ``at`` (default: now)."""
        recipe = self.recipe(features, full_names)
        columns = entity_columns(entities)
        count = len(next(iter(columns.values()), []))
        now_us = to_micros(at if at is not None else datetime.now(UTC))
        values: dict[str, list[Any]] = {}
        for lookup in recipe.lookups:
            keys = _encoded_keys(lookup, columns)
            rows = self.online.read(lookup.table, lookup.features, keys)
            floor = None if lookup.ttl_us is None else now_us - lookup.ttl_us
            for position, (name, decode) in enumerate(zip(lookup.internal, lookup.decoders, strict=True)):
                out: list[Any] = []
                for key in keys:
                    row = rows.get(key)
                    if row is None or row[0] > now_us or (floor is not None and row[0] < floor):
                        out.append(None)
                    else:
                        value = row[2 + position]
                        out.append(value if decode is None else decode(value))
                values[name] = out
        result = {k: columns[k] for k in recipe.entity_keys if k in columns}
        if recipe.steps:
            computed = run_steps(recipe.steps, self._on_demand_inputs(recipe, values, request or {}, count))
            for internal, name in recipe.outputs:
                found = values.get(internal)
                if found is None:
                    column = computed[internal]
                    found = column.to_list() if isinstance(column, pl.Series) else column
                result[name] = found
        else:
            for internal, name in recipe.outputs:
                result[name] = values[internal]
        return OnlineResponse(result)

    def _on_demand_inputs(
        self, recipe: LookupRecipe, values: dict[str, list[Any]], request: dict[str, Any], count: int
    ) -> dict[str, pl.Series | list[Any]]:
        """The on-demand views' inputs: fetched features and request values, one list per column."""
        inputs: dict[str, pl.Series | list[Any]] = {}
        for name in recipe.needed:
            if name in values:
                inputs[name] = values[name]
                continue
            if name not in request:
                raise SchemaError(f"on-demand features need request input {name!r}; pass request={{{name!r}: [...]}}")
            given = request[name]
            column = list(given) if isinstance(given, (list, tuple)) else [given] * count
            if len(column) != count:
                raise SchemaError(f"request input {name!r} has {len(column)} values for {count} entities")
            inputs[name] = column
        return inputs
