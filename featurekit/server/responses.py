"""Response bodies of ``/v1/features``: the columns of an :class:`OnlineResponse` in typed JSON, plus
what the client needs to rebuild the very same response (see :mod:`featurekit.wire`)::

    {"features": {"driver_id": [1001, 1002], "conv_rate": [0.5, null]},
     "metadata": {"columns": [{"name": "driver_id", "role": "entity_key", "dtype": "int64"},
                              {"name": "conv_rate", "role": "feature", "view": "driver_stats",
                               "version": 1, "feature": "conv_rate", "dtype": "double"}],
                  "schema": "<the Arrow schema, IPC-serialized, base64>"},
     "views": {"driver_stats@v1": {"statuses": ["found", "unknown"], "ttl_us": 604800000000,
                                   "event_timestamps": ["2026-01-03T00:00:00.000000Z", null]}},
     "at": "2026-01-04T00:00:00.000000Z",
     "not_finite": []}

With ``packed`` (the client's ``Accept`` prefers :data:`featurekit.wire.PACKED` to JSON), floats are
packed doubles, event times ``event_us`` and the lookup time ``at_us`` integer microseconds, and the
statuses (which follow from them) are left out::

    {"features": {"driver_id": [1001, 1002], "conv_rate": {"f64": "000000000000e03f0000000000000000", "nulls": [1]}},
     "metadata": ..., "views": {"driver_stats@v1": {"event_us": [1767398400000000, null], "ttl_us": 604800000000}},
     "at_us": 1767484800000000, "not_finite": []}

The metadata of a feature list is computed once per applied state (it is cached and checked
against the lookup's own schema object, which serving renews after each apply).
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featurekit.online.serving import OnlineResponse
from featurekit.references import resolve
from featurekit.store import FeatureStore
from featurekit.wire import encode_column, pack_floats, rfc3339_micros, value_encoder

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class Shape:
    """What every response of one feature list shares."""

    schema: pa.Schema
    columns: list[dict[str, Any]]  # per output column: name, role, dtype (and view, version, feature)
    metadata: str  # the "metadata" member, already JSON
    fields: list[tuple[str, pa.DataType, bool]]  # (name, type, JSON as it is: no encoder, no floats)
    views: frozenset[str]  # the batch view versions ("view@v1") the feature list reads
    floats: frozenset[str]  # the float columns (packed in the packed form)


class Shapes:
    """The cached :class:`Shape` of each feature list."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._cache: dict[tuple[Any, ...], Shape] = {}
        self._lock = threading.Lock()

    def of(self, features: list[str], full_names: bool, response: OnlineResponse) -> Shape:
        key = (*features, full_names)
        shape = self._cache.get(key)
        if shape is None or shape.schema is not response.schema or shape.views != response.rows.keys():
            shape = self._build(features, full_names, response)
            with self._lock:
                self._cache[key] = shape
        return shape

    def _build(self, features: list[str], full_names: bool, response: OnlineResponse) -> Shape:
        schema = response.schema if response.schema is not None else response.to_arrow().schema
        registry = self._store.registry
        resolved = resolve(features, registry.active(), registry)
        origins = {
            name: (version.view, version.version, feature, version.definition.get("kind"))
            for (version, feature), name in zip(resolved.outputs, resolved.output_names(full_names), strict=True)
        }
        columns: list[dict[str, Any]] = []
        for field in schema:
            entry: dict[str, Any] = {"name": field.name, "dtype": str(field.type)}
            origin = origins.get(field.name)
            if origin is None:
                entry["role"] = "entity_key"
            else:
                view, version, feature, kind = origin
                role = "on_demand_feature" if kind == "on_demand" else "feature"
                entry.update(role=role, view=view, version=version, feature=feature)
            columns.append(entry)
        encoded_schema = base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")
        # (pyarrow builds a Field object per access: reading them once here keeps them off the hot path)
        fields = [(f.name, f.type, value_encoder(f.type) is None and not pa.types.is_floating(f.type)) for f in schema]
        return Shape(
            schema,
            columns,
            _dumps({"columns": columns, "schema": encoded_schema}),
            fields,
            frozenset(response.rows),
            frozenset(f.name for f in schema if pa.types.is_floating(f.type)),
        )


def _timestamps(events: list[int | None]) -> list[str | None]:
    return [None if e is None else rfc3339_micros(e) for e in events]


def lookup_body(response: OnlineResponse, shape: Shape, packed: bool = False) -> bytes:
    """The JSON body of a lookup (``packed``: the packed form of :data:`featurekit.wire.PACKED`)."""
    not_finite: list[dict[str, Any]] = []
    features: dict[str, Any] = {}
    columns = response.columns
    floats = shape.floats if packed else ()
    for name, dtype, plain in shape.fields:
        if plain:
            features[name] = columns[name]
            continue
        if name in floats:
            packed_column = pack_floats(columns[name])
            if packed_column is not None:
                features[name] = packed_column
                continue
        features[name] = encode_column(name, columns[name], dtype, not_finite)
    views: dict[str, Any] = {}
    at = response.at_us  # the lookup instant (also with no batch view in the response)
    for name, held in response.rows.items():
        if packed:
            views[name] = {"event_us": held.events, "ttl_us": held.ttl_us}
        else:
            views[name] = {
                "statuses": held.statuses(),
                "event_timestamps": _timestamps(held.events),
                "ttl_us": held.ttl_us,
            }
    at_member = f'"at_us":{int(at)}' if packed else f'"at":{_dumps(rfc3339_micros(at))}'
    return (
        f'{{"features":{_dumps(features)},"metadata":{shape.metadata},"views":{_dumps(views)},'
        f'{at_member},"not_finite":{_dumps(not_finite)}}}'
    ).encode()


def newest_events(response: OnlineResponse) -> dict[str, int]:
    """The newest event time (microseconds) each view version returned, for the freshness gauge."""
    newest = {}
    for name, held in response.rows.items():
        found = [e for e in held.events if e is not None]
        if found:
            newest[name] = max(found)
    return newest
