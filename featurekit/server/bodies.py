"""Request bodies, checked field by field, into the arguments of ``online_features`` and ``push``.

Every problem is a :class:`~featurekit.FeaturekitError` naming the field and what it should be;
nothing of a body is ever evaluated, used as a path or put into SQL: feature names go to the
resolver (which only looks them up), values to the library's typed checks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from featurekit.errors import RequestError, SchemaError
from featurekit.push import PushTarget
from featurekit.store import FeatureStore
from featurekit.timestamps import utc
from featurekit.wire import decode_request_values, value_decoder


@dataclass(frozen=True)
class LookupBody:
    """What ``POST /v1/features`` asks."""

    features: list[str]
    entities: dict[str, list[Any]]
    request: dict[str, Any] | None
    at: datetime | None
    full_names: bool

    @property
    def count(self) -> int:
        return len(next(iter(self.entities.values()), []))


@dataclass(frozen=True)
class PushBody:
    """What ``POST /v1/push`` sends."""

    view: str
    rows: dict[str, list[Any]]
    to: PushTarget


def _fields(body: dict[str, Any], allowed: set[str], required: set[str], route: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"{route} takes the fields {sorted(allowed)}; {unknown} are not among them")
    missing = sorted(required - set(body))
    if missing:
        raise RequestError(f"{route} needs the fields {missing}")


def feature_list(value: Any, field: str = "features") -> list[str]:
    """A non-empty list of feature references (``"view:feature"``, ``"view"``, ``"view@v1:feature"``)."""
    if not isinstance(value, list) or not value or not all(isinstance(f, str) for f in value):
        raise RequestError(f"'{field}' must be a non-empty list of names like \"driver_stats:conv_rate\"")
    return value


def requested(features: Any, feature_set: Any, set_field: str) -> list[str]:
    """The feature requests of a lookup: ``features``, or the name of a registered feature set."""
    if (features is None) == (feature_set is None):
        raise RequestError(f"send either 'features' (a list of names) or '{set_field}' (a feature set's name)")
    if feature_set is not None:
        if not isinstance(feature_set, str) or not feature_set:
            raise RequestError(f"'{set_field}' must be the name of a feature set, e.g. \"fraud_v1\"")
        return [feature_set]  # resolved like any request: the set's features, in its order
    return feature_list(features)


def entity_columns(value: Any, field: str = "entities") -> dict[str, list[Any]]:
    """Entities as columns: a JSON object of equal-length arrays, or an array of objects."""
    if isinstance(value, list):
        if not value or not all(isinstance(e, dict) for e in value):
            raise RequestError(f"'{field}' must be an object of key arrays or a non-empty array of objects")
        names = list(value[0])
        for index, entity in enumerate(value):
            if list(entity) != names and set(entity) != set(names):
                raise SchemaError(f"entity {index} has keys {sorted(entity)}, entity 0 has {sorted(names)}")
        return {n: [e[n] for e in value] for n in names}
    if not isinstance(value, dict) or not value:
        raise RequestError(f"'{field}' must be an object like {{\"driver_id\": [1001, 1002]}}")
    lengths = set()
    for name, column in value.items():
        if not isinstance(column, list):
            raise RequestError(f"'{field}.{name}' must be an array of key values")
        lengths.add(len(column))
    if len(lengths) > 1:
        raise SchemaError(f"entity key arrays have different lengths: { {k: len(v) for k, v in value.items()} }")
    if lengths == {0}:
        raise RequestError(f"'{field}' holds no entity; send at least one key value")
    return value


class KeyTypes:
    """The registered type of each entity key name (from the applied batch views), refreshed like serving.

    Only needed to read keys JSON cannot type (timestamps, dates, decimals, binaries sent as text).
    """

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
        self._types: dict[str, pa.DataType] = {}
        self._checked = -1e18
        self._head = -1
        self._textual: frozenset[str] = frozenset()  # keys whose values may come as text (timestamps, dates...)
        self._lock = threading.Lock()

    def get(self) -> dict[str, pa.DataType]:
        now = time.monotonic()
        if now - self._checked < self._store.config.online.refresh_s:
            return self._types
        self._checked = now
        head = self._store.registry.head_apply()  # one small query; the key types change only with an apply
        if head != self._head:
            types: dict[str, pa.DataType] = {}
            for active in self._store.registry.active().values():
                definition = active.version.definition
                if definition.get("kind") not in ("batch", "window"):
                    continue
                for key in definition["join_keys"]:
                    types.setdefault(key, active.version.schema.field(key).type)
            with self._lock:
                self._types, self._head = types, head
                self._textual = frozenset(k for k, t in types.items() if value_decoder(t) is not None)
        return self._types

    def typed(self, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """``columns`` with text read as the registered key type where JSON cannot say it."""
        types = self.get()
        out = columns
        for name, values in columns.items():
            dtype = types.get(name)
            if dtype is not None and name in self._textual:
                if out is columns:
                    out = dict(columns)
                out[name] = decode_request_values(values, dtype, f"key {name!r}")
        return out


def lookup_body(body: dict[str, Any], keys: KeyTypes) -> LookupBody:
    """The arguments of ``online_features`` from a ``/v1/features`` body."""
    _fields(body, {"features", "feature_set", "entities", "request", "at", "full_names"}, {"entities"}, "/v1/features")
    request = body.get("request")
    if request is not None and not isinstance(request, dict):
        raise RequestError("'request' must be an object of request inputs, e.g. {\"trip_km\": [3.2]}")
    full_names = body.get("full_names", False)
    if not isinstance(full_names, bool):
        raise RequestError("'full_names' must be true or false")
    return LookupBody(
        features=requested(body.get("features"), body.get("feature_set"), "feature_set"),
        entities=keys.typed(entity_columns(body["entities"])),
        request=request,
        at=moment(body.get("at")),
        full_names=full_names,
    )


def moment(value: Any) -> datetime | None:
    """``at``: RFC 3339 text (naive means UTC) or null for now."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError("'at' must be RFC 3339 text like \"2026-03-01T12:00:00Z\", or null for now")
    return utc(value, "'at'")


def push_body(body: dict[str, Any]) -> PushBody:
    """The arguments of ``push`` from a ``/v1/push`` body (rows as an object of arrays or an array of objects)."""
    _fields(body, {"view", "rows", "to"}, {"view", "rows"}, "/v1/push")
    view = body["view"]
    if not isinstance(view, str) or not view:
        raise RequestError("'view' must be the name of a feature view")
    to = body.get("to", "online")
    if to not in ("online", "online_and_offline"):
        raise RequestError(f'\'to\' must be "online" or "online_and_offline", got {to!r}')
    return PushBody(view, entity_columns(body["rows"], "rows"), to)


def push_table(store: FeatureStore, body: PushBody) -> Any:
    """Pushed rows as an Arrow table of the view's recorded source schema, or as sent when the view is
    unknown (``push`` then names it, with a did-you-mean)."""
    active = store.registry.active()
    found = next((a for n, a in active.items() if n.lower() == body.view.lower()), None)
    schema = None if found is None else found.version.source_schema
    if schema is None:
        return body.rows
    arrays: dict[str, pa.Array] = {}
    for field in schema:
        values = body.rows.get(field.name)
        if values is None:
            continue  # push names every missing source column at once
        typed = decode_request_values(values, field.type, f"column {field.name!r}")
        try:
            arrays[field.name] = pa.array(typed, field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
            raise SchemaError(
                f"rows pushed to '{body.view}': column {field.name!r} does not fit {field.type}: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
    if not arrays:
        return body.rows
    return pa.table(arrays)
