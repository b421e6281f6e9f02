"""The OpenAPI 3.1 description of the feature server's routes, with request and response schemas.

Written by hand (the routes are few) and checked by the test suite: a schemathesis run against a
live server finds no 500 and no response that breaks these schemas.
"""

from __future__ import annotations

import functools
from typing import Any

from featurekit import __version__
from featurekit.wire import PACK_ROWS, PACKED

_ANY: dict[str, Any] = {}  # any JSON value (feature values are typed by the response's schema)
_KEYS = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": {"type": "array", "items": _ANY},
            "description": 'One array per join key, e.g. {"driver_id": [1001, 1002]}.',
        },
        {"type": "array", "items": {"type": "object"}, "description": 'Entities, e.g. [{"driver_id": 1001}].'},
    ]
}
_FEATURES = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string"},
    "description": '"view:feature", "view" (all its features), "view@v1:feature" or an on-demand view.',
}
_PROBLEM = {
    "type": "object",
    "required": ["title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "error": {"type": "string", "description": "The featurekit error class (the client raises it)."},
        "error_id": {"type": "string", "description": "500 only: the id under which the server logged it."},
    },
}
_LOOKUP_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["entities"],
    "properties": {
        "features": _FEATURES,
        "feature_set": {"type": "string", "description": "A feature set's name, instead of 'features'."},
        "entities": _KEYS,
        "request": {
            "type": ["object", "null"],
            "description": "Request-time inputs of on-demand views: one array (or one value) per name.",
        },
        "at": {
            "type": ["string", "null"],
            "description": "Lookup time for TTLs, RFC 3339 (naive means UTC); default now.",
        },
        "full_names": {"type": "boolean", "description": "Name features view__feature."},
    },
}
_COLUMN = {
    "type": "object",
    "required": ["name", "role", "dtype"],
    "properties": {
        "name": {"type": "string"},
        "role": {"enum": ["entity_key", "feature", "on_demand_feature"]},
        "dtype": {"type": "string", "description": "The registered Arrow type."},
        "view": {"type": "string"},
        "version": {"type": "integer"},
        "feature": {"type": "string"},
    },
}
_LOOKUP_RESPONSE = {
    "type": "object",
    "required": ["features", "metadata", "views", "at", "not_finite"],
    "properties": {
        "features": {"type": "object", "additionalProperties": {"type": "array"}, "description": "Columns."},
        "metadata": {
            "type": "object",
            "required": ["columns", "schema"],
            "properties": {
                "columns": {"type": "array", "items": _COLUMN},
                "schema": {"type": "string", "description": "The Arrow schema, IPC-serialized, base64."},
            },
        },
        "views": {
            "type": "object",
            "description": 'Per batch view version read ("view@v1"): what the store held for each entity.',
            "additionalProperties": {
                "type": "object",
                "required": ["statuses", "event_timestamps", "ttl_us"],
                "properties": {
                    "statuses": {"type": "array", "items": {"enum": ["found", "unknown", "expired"]}},
                    "event_timestamps": {"type": "array", "items": {"type": ["string", "null"]}},
                    "ttl_us": {"type": ["integer", "null"]},
                },
            },
        },
        "at": {
            "type": "string",
            "description": "The lookup instant (the request's `at`, else the server's clock), RFC 3339 in UTC.",
        },
        "not_finite": {
            "type": "array",
            "description": "Each NaN or infinity sent as null, and where.",
            "items": {
                "type": "object",
                "required": ["column", "row", "path", "value"],
                "properties": {
                    "column": {"type": "string"},
                    "row": {"type": "integer"},
                    "path": {"type": "array"},
                    "value": {"enum": ["NaN", "Infinity", "-Infinity"]},
                },
            },
        },
    },
}
_PACKED_FLOATS = {
    "type": "object",
    "required": ["f64", "nulls"],
    "properties": {
        "f64": {"type": "string", "description": "The column's values as little-endian IEEE 754 doubles, hex."},
        "nulls": {"type": "array", "items": {"type": "integer", "minimum": 0}, "description": "Rows that are null."},
    },
}
_PACKED_LOOKUP_RESPONSE = {
    "type": "object",
    "description": (
        f"Answered when the request's Accept header prefers {PACKED} to JSON (fk.Client's form): the JSON body,"
        f" except that each float column of at least {PACK_ROWS} values, all floats or null, is packed (NaN and"
        " infinities"
        " are in its bytes, not in not_finite), times are integer microseconds since the epoch, and the"
        " statuses are left out (unknown where event_us is null, expired where it is older than"
        " at_us - ttl_us, else found)."
    ),
    "required": ["features", "metadata", "views", "at_us", "not_finite"],
    "properties": {
        "features": {
            "type": "object",
            "additionalProperties": {"oneOf": [{"type": "array"}, _PACKED_FLOATS]},
            "description": "Columns: arrays of typed JSON, or packed float columns.",
        },
        "metadata": _LOOKUP_RESPONSE["properties"]["metadata"],  # type: ignore[index]
        "views": {
            "type": "object",
            "description": 'Per batch view version read ("view@v1"): what the store held for each entity.',
            "additionalProperties": {
                "type": "object",
                "required": ["event_us", "ttl_us"],
                "properties": {
                    "event_us": {"type": "array", "items": {"type": ["integer", "null"]}},
                    "ttl_us": {"type": ["integer", "null"]},
                },
            },
        },
        "at_us": {"type": "integer", "description": "The lookup instant, microseconds since the epoch."},
        "not_finite": _LOOKUP_RESPONSE["properties"]["not_finite"],  # type: ignore[index]
    },
}
_PUSH_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["view", "rows"],
    "properties": {
        "view": {"type": "string"},
        "rows": _KEYS | {"description": "Raw source rows: one array per column, or an array of row objects."},
        "to": {"enum": ["online", "online_and_offline"]},
    },
}
_PUSH_RESPONSE = {
    "type": "object",
    "required": ["view", "version", "rows", "online_rows", "data_version"],
    "properties": {
        "view": {"type": "string"},
        "version": {"type": "integer"},
        "rows": {"type": "integer"},
        "online_rows": {"type": "integer"},
        "data_version": {"type": ["integer", "null"]},
    },
}
_FEAST_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["entities"],
    "properties": {
        "entities": {"type": "object", "additionalProperties": {"type": "array"}},
        "features": {"type": "array", "items": {"type": "string"}},
        "full_feature_names": {"type": "boolean"},
        "feature_service": {"type": ["string", "null"], "description": "A featurekit feature set's name."},
        "include_feature_view_version_metadata": {"type": "boolean"},
    },
}
_FEAST_RESPONSE = {
    "type": "object",
    "required": ["metadata", "results"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["feature_names"],
            "properties": {
                "feature_names": {"type": "array", "items": {"type": "string"}},
                "feature_view_metadata": {"type": "array", "items": {"type": "object"}},
            },
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["values", "statuses", "event_timestamps"],
                "properties": {
                    "values": {"type": "array"},
                    "statuses": {
                        "type": "array",
                        "items": {"enum": ["PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"]},
                    },
                    "event_timestamps": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _problems(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "The request is wrong: the detail names the field, key or feature.",
        401: "No token, or a wrong one.",
        403: "The token lacks the scope this route needs.",
        409: "A materialization holds the view (offline push); retry.",
        413: "The body or the entity list is over the server's limit.",
        422: "The view's function failed on the pushed rows, or its output failed a check (nothing written).",
        500: "Unexpected failure; the error id is in the server's log.",
        503: "The server cannot serve now (online store unreachable, code differs from the applied version).",
    }
    content = {"application/problem+json": {"schema": _PROBLEM}}
    return {str(s): {"description": reasons[s], "content": content} for s in statuses}


def _operation(
    summary: str, ok: dict[str, Any], body: dict[str, Any] | None, errors: tuple[int, ...], *, auth: bool
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": ok}, **_problems(*errors)},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    operation["security"] = [{"bearer": []}] if auth else []
    return operation


@functools.cache
def spec() -> dict[str, Any]:
    """The OpenAPI document served at ``/openapi.json``."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    lookup_errors = (400, 401, 403, 413, 500, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "featurekit feature server", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/features": {
                "post": _operation(
                    "Online features of entities",
                    {**_json(_LOOKUP_RESPONSE), PACKED: {"schema": _PACKED_LOOKUP_RESPONSE}},
                    _LOOKUP_REQUEST,
                    lookup_errors,
                    auth=True,
                )
            },
            "/get-online-features": {
                "post": _operation(
                    "Feast-compatible online features",
                    _json(_FEAST_RESPONSE),
                    _FEAST_REQUEST,
                    lookup_errors,
                    auth=True,
                )
            },
            "/v1/push": {
                "post": _operation(
                    "Push raw source rows through a view's function",
                    _json(_PUSH_RESPONSE),
                    _PUSH_REQUEST,
                    (400, 401, 403, 409, 413, 422, 500, 503),
                    auth=True,
                )
            },
            "/healthz": {"get": _operation("The process is up", _json({"type": "object"}), None, (500,), auth=False)},
            "/readyz": {
                "get": {
                    **_operation("Ready to serve what is applied", _json({"type": "object"}), None, (500,), auth=False),
                    "responses": {
                        "200": {"description": "Ready", "content": _json({"type": "object"})},
                        "503": {"description": "Not ready, with the problems", "content": _json({"type": "object"})},
                        **_problems(500),
                    },
                }
            },
            "/metrics": {"get": _operation("Prometheus metrics", text, None, (401, 500), auth=True)},
            "/openapi.json": {"get": _operation("This document", _json({"type": "object"}), None, (500,), auth=False)},
        },
    }
