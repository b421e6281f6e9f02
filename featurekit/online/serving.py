"""Online lookups: the same feature plan and on-demand executor as training, over an online store.

A lookup resolves its feature list once (cached until the next apply), reads each
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

from featurekit.applied import check_applied
from featurekit.codebase import Codebase
from featurekit.errors import NotAppliedError, OnlineHistoryError, SchemaError, UnknownNameError
from featurekit.frames import arrow_to_polars
from featurekit.ondemand import OnDemandStep, build_steps, needed_columns, request_inputs, run_steps
from featurekit.online import heap
from featurekit.online.base import OnlineStore
from featurekit.online.codecs import NAN, Decoder, decoder, is_float
from featurekit.online.keys import KeyType, encode_keys, typed_values
from featurekit.online.loading import table_name
from featurekit.online.window_state import COLUMNS as WINDOW_COLUMNS
from featurekit.online.window_state import TAIL_COLUMNS, layout_of, state_of, tail_table
from featurekit.online.window_values import WindowValues, too_early
from featurekit.references import FeatureRequest, ResolvedFeatures, internal_name, resolve
from featurekit.registry import Registry
from featurekit.timestamps import from_micros, to_micros, utc
from featurekit.windows import WindowSpec


@dataclass(frozen=True)
class BatchLookup:
    """How to read one batch view version online."""

    view: str
    version: int
    table: str
    join_keys: list[str]
    key_types: list[KeyType]
    features: list[str]
    internal: list[str]
    decoders: list[Decoder | None]  # None: stored as served (floats too, unless a value is NaN)
    nan_decoders: list[Decoder | None]  # the decoders when a fetched row holds the NaN marker
    has_floats: bool  # whether any feature is a float (the only decoders that NaN changes)
    ttl_us: int | None
    dtypes: dict[str, Any]  # internal name -> polars dtype (for on-demand inputs)
    window: WindowLookup | None = None  # a window view: aggregate the stored events at the lookup time


@dataclass(frozen=True)
class WindowLookup:
    """How to aggregate one window view version's stored events."""

    values: WindowValues  # the requested features, in the lookup's order
    layout: pa.Schema  # the stored events' schema
    tail: str  # the table of the states' tails (featurekit.online.window_state)
    span_us: int  # how far before the lookup instant a window can reach: delay + the longest window


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
    key_types: dict[str, KeyType]  # entity key -> its registered type (the first view's that has it)
    schema: pa.Schema  # the response's registered Arrow schema: entity keys, then the outputs
    served: list[tuple[str, int, str]]  # per output: (view, version, feature) it comes from


@dataclass(frozen=True)
class RowStatus:
    """Event times (microseconds; None: no row) of the rows one view's table held for a lookup."""

    events: list[int | None]
    ttl_us: int | None
    at_us: int

    def statuses(self) -> list[str]:
        floor = None if self.ttl_us is None else self.at_us - self.ttl_us
        return [
            "unknown" if e is None else "expired" if floor is not None and e < floor else "found" for e in self.events
        ]

    def expiries(self) -> list[datetime | None]:
        if self.ttl_us is None:
            return [None] * len(self.events)
        return [None if e is None else from_micros(e + self.ttl_us) for e in self.events]


class OnlineResponse:
    """Looked-up features: entity keys then features, one list per column, typed by ``schema``.

    ``schema`` is the registered Arrow type of each column (the view versions' key and feature
    types), so the frames keep a float32 a float32, and a column no entity was found for keeps
    its type instead of becoming null.
    """

    def __init__(
        self,
        columns: dict[str, list[Any]],
        schema: pa.Schema | None = None,
        rows: dict[str, RowStatus] | None = None,
    ) -> None:
        self.columns = columns
        self.schema = schema
        self.rows = rows or {}  # per batch view version ("view@v1"): what the store held for each entity
        self.timings: dict[str, float] = {}  # "online_read_s" and "on_demand_s" of the lookup, in seconds
        self.recipe: LookupRecipe | None = None  # what the lookup read and computed (the serving log's layout)
        self.at_us = 0  # the lookup instant, microseconds since the epoch
        self._arrow: pa.Table | None = None

    def status(self, view: str) -> list[str]:
        """Per entity, why ``view``'s values are what they are: ``"found"``, ``"unknown"`` (the store
        holds no row for the key) or ``"expired"`` (its newest row is older than the TTL at ``at``).

        ``view`` is ``"name"`` (the one version read) or ``"name@v2"``. A found row may still
        hold null feature values.
        """
        return self._rows(view).statuses()

    def expired_at(self, view: str) -> list[datetime | None]:
        """Per entity, when its stored row passed (or passes) the TTL; None for unknown keys or no TTL."""
        return self._rows(view).expiries()

    def _rows(self, view: str) -> RowStatus:
        if view in self.rows:
            return self.rows[view]
        matches = [k for k in self.rows if k.split("@v")[0].lower() == view.lower()]
        if len(matches) != 1:
            raise UnknownNameError(f"no batch view {view!r} in this response; it read {sorted(self.rows)}")
        return self.rows[matches[0]]

    def to_dict(self) -> dict[str, list[Any]]:
        """``{"driver_id": [...], "conv_rate": [...], ...}``."""
        return self.columns

    def to_arrow(self) -> pa.Table:
        """An Arrow table with the registered dtypes."""
        if self._arrow is None:
            if self.schema is None:
                self._arrow = pa.table(self.columns)
            else:
                arrays = [pa.array(self.columns[f.name], f.type) for f in self.schema]
                self._arrow = pa.Table.from_arrays(arrays, schema=self.schema)
        return self._arrow

    def to_pandas(self) -> Any:
        """A pandas frame, converted from :meth:`to_arrow` (as a training set's is)."""
        return self.to_arrow().to_pandas()

    def to_polars(self) -> pl.DataFrame:
        """A polars frame, converted from :meth:`to_arrow` (as a training set's is)."""
        frame = pl.from_arrow(self.to_arrow())
        assert isinstance(frame, pl.DataFrame)
        return frame

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


def _key_columns(lookup: BatchLookup, columns: dict[str, list[Any]]) -> list[list[Any]]:
    """The entities' values of ``lookup``'s keys, as values of the registered key types."""
    typed = []
    for key in lookup.key_types:
        values = columns.get(key.name)
        if values is None:
            raise SchemaError(
                f"entities have no key {key.name!r} (they have {list(columns)}); pass {key.name}=... for each"
            )
        typed.append(typed_values(key, values))
    return typed


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
        heap.settle()  # hot entities' window states: see featurekit/online/heap.py

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return
        self._checked = now
        # Recipes depend on the applied definitions only: materializations and pushes (most
        # commits of a busy store) leave them valid.
        head = self.registry.head_apply()
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
        resolved: ResolvedFeatures = resolve(features, self.registry.active(), self.registry)
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
            types = [version.feature_type(f) for f in item.features]
            ttl_us = version.definition["ttl_us"]
            window = None
            if version.is_window:
                spec = WindowSpec.of(version.definition)
                by_name = {f.name: f for f in spec.features}
                layout = layout_of(version)
                chosen = WindowValues([by_name[f] for f in item.features], spec.delay_us, layout)
                table = table_name(version.view, version.version)
                window = WindowLookup(chosen, layout, tail_table(table), spec.delay_us + spec.longest_us)
            lookups.append(
                BatchLookup(
                    view=version.view,
                    version=version.version,
                    table=table_name(version.view, version.version),
                    join_keys=keys,
                    key_types=[KeyType.of(k, version.schema.field(k).type) for k in keys],
                    features=list(item.features),
                    internal=[internal_name(version, f) for f in item.features],
                    decoders=[None if is_float(t) else decoder(t) for t in types],
                    nan_decoders=[decoder(t) for t in types],
                    has_floats=any(is_float(t) for t in types),
                    ttl_us=ttl_us,
                    dtypes={
                        internal_name(version, f): arrow_to_polars(t) for f, t in zip(item.features, types, strict=True)
                    },
                    window=window,
                )
            )
        steps = build_steps(resolved, self.codebase, self.registry)
        names = resolved.output_names(full_names)
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise SchemaError(f"features {clashes} come from more than one view; pass full_names=True")
        outputs = [(internal_name(v, f), n) for (v, f), n in zip(resolved.outputs, names, strict=True)]
        dtypes = {name: dtype for lookup in lookups for name, dtype in lookup.dtypes.items()}
        key_types: dict[str, KeyType] = {}
        for lookup in lookups:
            for key in lookup.key_types:
                key_types.setdefault(key.name, key)
        fields = [pa.field(k, key_types[k].dtype) for k in entity_keys]
        fields += [pa.field(n, v.feature_type(f)) for (v, f), n in zip(resolved.outputs, names, strict=True)]
        return LookupRecipe(
            lookups,
            steps,
            request_inputs(steps),
            outputs,
            entity_keys,
            needed_columns(steps),
            dtypes,
            key_types,
            pa.schema(fields),
            [(v.view, v.version, f) for v, f in resolved.outputs],
        )

    def lookup(
        self,
        entities: Any,
        features: Sequence[FeatureRequest] | FeatureRequest,
        request: dict[str, Any] | None = None,
        at: datetime | str | None = None,
        full_names: bool = False,
    ) -> OnlineResponse:
        """Features of ``entities`` as of ``at`` (default: now; naive means UTC; ISO text is parsed)."""
        recipe = self.recipe(features, full_names)
        columns = entity_columns(entities)
        count = len(next(iter(columns.values()), []))
        now_us = to_micros(utc(at, "at") if at is not None else datetime.now(UTC))
        values: dict[str, list[Any]] = {}
        typed_keys: dict[str, list[Any]] = {}
        held: dict[str, RowStatus] = {}
        asked: list[tuple[BatchLookup, list[list[Any]], list[Any]]] = []
        for lookup in recipe.lookups:
            parts = _key_columns(lookup, columns)
            for key, part in zip(lookup.join_keys, parts, strict=True):
                typed_keys.setdefault(key, part)
            if len(parts) == 1 and lookup.key_types[0].plain:
                keys = parts[0]  # an int or string key is its own encoding
            else:
                keys = encode_keys(parts, [k.dtype for k in lookup.key_types])
            asked.append((lookup, parts, keys))
        reads: list[tuple[str, Sequence[str], Sequence[Any]]] = []
        for lookup, _, keys in asked:
            if lookup.window is not None:  # a window state's tail, read before its base
                reads.append((lookup.window.tail, TAIL_COLUMNS, keys))
            reads.append((lookup.table, _stored_columns(lookup), keys))
        began = time.perf_counter()
        # (several tables: one request for all of them, Redis answers it in one round trip)
        fetched = [self.online.read(*reads[0])] if len(reads) == 1 else self.online.read_many(reads)
        read_s = time.perf_counter() - began
        position = 0
        for lookup, parts, keys in asked:
            tails = None
            if lookup.window is not None:
                tails = fetched[position]
                position += 1
            rows = fetched[position]
            position += 1
            if tails is not None:
                status = self._windows(lookup, keys, parts, rows, tails, now_us=now_us, into=values)
                held[f"{lookup.view}@v{lookup.version}"] = status
                continue
            floor = None if lookup.ttl_us is None else now_us - lookup.ttl_us
            hits: list[Any] = []
            events: list[int | None] = []
            for index, encoded in enumerate(keys):
                row = rows.get(encoded)
                if row is None:
                    hits.append(None)
                    events.append(None)
                    continue
                if row[0] > now_us:
                    raise _too_early(lookup, parts, index, row[0], now_us)
                hits.append(None if floor is not None and row[0] < floor else row)
                events.append(row[0])
            held[f"{lookup.view}@v{lookup.version}"] = RowStatus(events, lookup.ttl_us, now_us)
            if hits and None not in hits:
                stored_columns = list(map(list, zip(*hits, strict=False)))[2:]  # rows have one width
            else:
                width = len(lookup.features)
                stored_columns = [[None if row is None else row[2 + p] for row in hits] for p in range(width)]
            decoders = lookup.decoders
            if lookup.has_floats:
                for row in hits:  # (a loop, not any(...): no generator on the hot path)
                    if row is not None and NAN in row:
                        decoders = lookup.nan_decoders
                        break
            for name, decode, stored in zip(lookup.internal, decoders, stored_columns, strict=True):
                values[name] = stored if decode is None else decode(stored)
        result = {k: typed_keys.get(k, columns.get(k, [])) for k in recipe.entity_keys}
        on_demand_s = 0.0
        if recipe.steps:
            began = time.perf_counter()
            computed = run_steps(recipe.steps, self._on_demand_inputs(recipe, values, request or {}, count))
            on_demand_s = time.perf_counter() - began
            for internal, name in recipe.outputs:
                found = values.get(internal)
                if found is None:
                    column = computed[internal]
                    found = column.to_list() if isinstance(column, pl.Series) else column
                result[name] = found
        else:
            for internal, name in recipe.outputs:
                result[name] = values[internal]
        response = OnlineResponse(result, recipe.schema, held)
        response.timings = {"online_read_s": read_s, "on_demand_s": on_demand_s}
        response.recipe = recipe
        response.at_us = now_us
        return response

    @staticmethod
    def _windows(
        lookup: BatchLookup,
        keys: list[Any],
        parts: list[list[Any]],
        rows: dict[Any, tuple[Any, ...]],
        tails: dict[Any, tuple[Any, ...]],
        *,
        now_us: int,
        into: dict[str, list[Any]],
    ) -> RowStatus:
        """Window features of ``keys`` at ``now_us`` from their stored events; an unknown entity's are empty."""
        window = lookup.window
        assert window is not None
        states: list[pa.RecordBatch | None] = []
        stamps: list[int | None] = []
        for index, encoded in enumerate(keys):
            row = rows.get(encoded)
            if row is None:
                states.append(None)
                stamps.append(None)
                continue
            if now_us < row[3]:
                entity = {k: p[index] for k, p in zip(lookup.join_keys, parts, strict=True)}
                raise too_early(lookup.view, lookup.version, entity, int(row[3]), now_us)
            since_us = now_us - window.span_us
            states.append(state_of(row, tails.get(encoded), window.layout, since_us, (window.tail, encoded)))
            stamps.append(now_us)
        for name, column in zip(lookup.internal, window.values.compute(states, now_us), strict=True):
            into[name] = column
        return RowStatus(stamps, None, now_us)

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


def _stored_columns(lookup: BatchLookup) -> list[str]:
    """What a lookup reads of its table: the features, or a window view's stored events."""
    return WINDOW_COLUMNS if lookup.window is not None else lookup.features


def _too_early(
    lookup: BatchLookup, parts: list[list[Any]], index: int, event_us: int, at_us: int
) -> OnlineHistoryError:
    """The error for a lookup time before the entity's stored row: the store cannot know what came before."""
    entity = {k: p[index] for k, p in zip(lookup.join_keys, parts, strict=True)}
    earliest = from_micros(event_us).isoformat()
    return OnlineHistoryError(
        f"online lookup at {from_micros(at_us).isoformat()} is before the newest row of {entity} in "
        f"'{lookup.view}' v{lookup.version} (event time {earliest}): the online store keeps only each entity's "
        f"newest row, so it can answer for this entity at {earliest} or later; pass a later at=, or build a "
        "training set for earlier moments"
    )
