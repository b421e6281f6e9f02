"""Feast's ``POST /get-online-features``: its request body in, its response shape out.

A Feast client switches to featurekit by changing its URL. The request takes Feast's fields
(``entities`` as an object of arrays, ``features`` or ``feature_service`` (the name of a
featurekit feature set), ``full_feature_names``, ``include_feature_view_version_metadata``). The
response is Feast's::

    {"metadata": {"feature_names": ["driver_id", "conv_rate"]},
     "results": [{"values": [1001], "statuses": ["PRESENT"], "event_timestamps": ["1970-01-01T00:00:00Z"]},
                 {"values": [0.5], "statuses": ["PRESENT"], "event_timestamps": ["2026-01-03T00:00:00.000000Z"]}]}

Statuses: ``PRESENT``, ``NULL_VALUE`` (a stored null), ``NOT_FOUND`` (no row for the key) and
``OUTSIDE_MAX_AGE`` (the row is older than the view's TTL at lookup time: featurekit applies the
TTL online, so the value is null, where Feast's server would return the stale value). Values are
typed as in :mod:`featurekit.wire`, except that non-finite floats are Feast's strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``.
"""

from __future__ import annotations

from typing import Any

from featurekit.errors import RequestError
from featurekit.online.serving import OnlineResponse
from featurekit.server.bodies import KeyTypes, LookupBody, entity_columns, requested
from featurekit.server.responses import Shape
from featurekit.wire import encode_column, rfc3339_micros

NO_TIME = "1970-01-01T00:00:00Z"  # what Feast sends for values without an event time
_STATUS = {"found": "PRESENT", "unknown": "NOT_FOUND", "expired": "OUTSIDE_MAX_AGE"}


def lookup_body(body: dict[str, Any], keys: KeyTypes) -> tuple[LookupBody, bool]:
    """The lookup a Feast request asks for, and whether it wants view versions in the metadata."""
    allowed = {
        "entities",
        "features",
        "full_feature_names",
        "feature_service",
        "include_feature_view_version_metadata",
    }
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"/get-online-features takes Feast's fields {sorted(allowed)}; {unknown} are not")
    if "entities" not in body:
        raise RequestError("/get-online-features needs 'entities'")
    features = body.get("features")
    if features == [] and body.get("feature_service") is not None:
        features = None  # Feast's clients send an empty list beside a feature service
    asked = requested(features, body.get("feature_service"), "feature_service")
    full = body.get("full_feature_names", False)
    versions = body.get("include_feature_view_version_metadata", False)
    if not isinstance(full, bool) or not isinstance(versions, bool):
        raise RequestError("'full_feature_names' and 'include_feature_view_version_metadata' must be true or false")
    entities = entity_columns(body["entities"])
    lookup = LookupBody(asked, keys.typed(entities), None, None, full)
    return lookup, versions


def response(result: OnlineResponse, shape: Shape, versions: bool) -> dict[str, Any]:
    """Feast's response for a lookup."""
    count = len(result)
    results = []
    names = []
    seen_views: dict[str, int] = {}
    for column, (name, dtype, _) in zip(shape.columns, shape.fields, strict=True):
        names.append(name)
        not_finite: list[dict[str, Any]] = []
        values = encode_column(name, result.columns[name], dtype, not_finite)
        if not_finite:
            values = list(values)
            for entry in not_finite:
                _put(values, [entry["row"], *entry["path"]], entry["value"])
        if column["role"] == "entity_key":
            statuses = ["PRESENT"] * count
            times = [NO_TIME] * count
        elif column["role"] == "feature":
            key = f"{column['view']}@v{column['version']}"
            seen_views.setdefault(column["view"], column["version"])
            held = result.rows[key]
            statuses = [
                "NULL_VALUE" if s == "found" and v is None else _STATUS[s]
                for s, v in zip(held.statuses(), result.columns[name], strict=True)
            ]
            times = [NO_TIME if e is None else rfc3339_micros(e) for e in held.events]
        else:
            seen_views.setdefault(column["view"], column["version"])
            statuses = ["NULL_VALUE" if v is None else "PRESENT" for v in result.columns[name]]
            times = [NO_TIME] * count
        results.append({"values": values, "statuses": statuses, "event_timestamps": times})
    metadata: dict[str, Any] = {"feature_names": names}
    if versions:
        metadata["feature_view_metadata"] = [{"name": v, "version": n} for v, n in seen_views.items()]
    return {"metadata": metadata, "results": results}


def _put(holder: Any, path: list[Any], value: Any) -> None:
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
