"""Errors as ``application/problem+json`` (RFC 9457) bodies, and back.

A :class:`~featurekit.FeaturekitError` is the client's to fix (4xx) or a state of the server it
can wait out (503): its message goes out whole, with the class name under ``error`` so that
:class:`featurekit.Client` raises the same class. Anything else is a bug: the response is a 500
with an ``error_id`` and nothing more, and the traceback goes to the log under that id.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from featurekit import errors

log = logging.getLogger("featurekit.server")

PROBLEM_JSON = "application/problem+json"


class ScopeError(errors.AuthError):
    """A valid token without the scope the route needs (403)."""


class TooLargeError(errors.RequestError):
    """A body or an entity list over the configured limit (413)."""


_STATUS: list[tuple[type[errors.FeaturekitError], int]] = [
    (ScopeError, 403),
    (errors.AuthError, 401),
    (TooLargeError, 413),
    (errors.ConflictError, 409),
    (errors.FeatureFunctionError, 422),
    (errors.CheckError, 422),  # the pushed rows failed one of the view's checks
    (errors.StorageError, 503),
    (errors.RegistryError, 503),
    (errors.NotAppliedError, 503),
    (errors.DefinitionError, 503),  # the server's own repo does not load: nothing the request can fix
]


def status_of(exc: errors.FeaturekitError) -> int:
    """The HTTP status of a library error: 4xx for what the request got wrong, 503 for server states."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def public_name(exc: errors.FeaturekitError) -> str:
    """The nearest class of ``featurekit.errors`` (what the client raises)."""
    for kind in type(exc).__mro__:
        name: str = kind.__name__
        if name in errors.__all__ and getattr(errors, name) is kind:
            return name
    return "FeaturekitError"


def problem(status: int, title: str, detail: str, **extra: Any) -> bytes:
    """A problem+json body."""
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}).encode()


def from_error(exc: errors.FeaturekitError) -> tuple[int, bytes]:
    """The status and body for a library error."""
    status = status_of(exc)
    name = public_name(exc)
    return status, problem(status, name, str(exc), error=name)


def from_bug(exc: BaseException, route: str) -> tuple[int, bytes]:
    """A 500 that says nothing of the internals; the log gets the traceback under the same id."""
    error_id = uuid.uuid4().hex[:16]
    log.error("unexpected error %s on %s", error_id, route, exc_info=exc)
    detail = f"the server failed unexpectedly; its log has the details under error id {error_id}"
    return 500, problem(500, "Internal Server Error", detail, error="ServerError", error_id=error_id)


def to_error(status: int, body: bytes) -> errors.FeaturekitError:
    """The exception a client raises for a problem body (the class the server named, if it is featurekit's)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        text = body[:200].decode("utf-8", "replace")
        return errors.ServerError(f"the server answered {status} without a problem body: {text!r}")
    name = parsed.get("error")
    detail = str(parsed.get("detail") or parsed.get("title") or f"HTTP {status}")
    kind = getattr(errors, name, None) if isinstance(name, str) and name in errors.__all__ else None
    if name == "ServerError" and parsed.get("error_id"):
        return errors.ServerError(detail)
    if isinstance(kind, type) and issubclass(kind, errors.FeaturekitError):
        if issubclass(kind, errors.DefinitionError):
            return kind([detail])
        return kind(detail)
    if status == 404:
        return errors.RequestError(f"the server has no such route ({detail})")
    return errors.ServerError(f"the server answered {status}: {detail}")
