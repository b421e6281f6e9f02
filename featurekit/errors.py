"""Every error a user can cause derives from :class:`FeaturekitError`.

The tree::

    FeaturekitError
    ├── ConfigError              featurekit.yaml is invalid
    ├── DefinitionError          the feature repo cannot be loaded (lists every problem at once)
    │   └── InvalidNameError     an entity, view or feature name is unsafe or reserved
    ├── UnknownNameError         a view/feature/version that does not exist ("did you mean")
    ├── NotAppliedError          loaded code differs from the applied version (run `featurekit apply`)
    ├── SchemaError              a column is missing or has the wrong dtype
    ├── DataError                bad values: null keys or timestamps, rows outside a window
    ├── CheckError               a view's output failed a check (``checks=``); nothing was committed
    ├── OnlineHistoryError       an online lookup time before what the online store holds
    ├── SourceError              a source file is missing, unreadable, or its schema changed
    ├── FeatureFunctionError     a user feature function raised or returned something unusable
    ├── WindowError              a materialization window is empty, reversed or in the future
    ├── ConflictError            another process holds the view or committed first
    ├── RegistryError            the registry file is unreadable or from an unknown format
    ├── StorageError             a stored file is missing or damaged, a disk fails, Redis does not answer
    ├── ManifestError            a manifest is unreadable, or rebuilding it would differ
    ├── RetentionError           time travel to data that gc removed
    ├── RequestError             an HTTP request the feature server cannot take (not JSON, too large)
    ├── AuthError                a missing or wrong token, or one without the scope a route needs
    └── ServerError              the feature server failed unexpectedly (its log has the error id)

Messages say what went wrong, where, and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

__all__ = [
    "AuthError",
    "CheckError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "DefinitionError",
    "FeatureFunctionError",
    "FeaturekitError",
    "InvalidNameError",
    "ManifestError",
    "NotAppliedError",
    "OnlineHistoryError",
    "RegistryError",
    "RequestError",
    "RetentionError",
    "SchemaError",
    "ServerError",
    "SourceError",
    "StorageError",
    "UnknownNameError",
    "WindowError",
    "did_you_mean",
    "is_io_failure",
    "storage_errors",
]


class FeaturekitError(Exception):
    """Root of every error featurekit raises for something a user can fix."""


class ConfigError(FeaturekitError):
    """The repo's ``featurekit.yaml`` is invalid."""


class DefinitionError(FeaturekitError):
    """The feature repo's definitions are invalid.

    ``problems`` holds every problem found (each already names its file and line), so one run
    reports them all.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} definition problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class InvalidNameError(DefinitionError):
    """A name is unsafe (quotes, separators, too long...) or reserved."""


class UnknownNameError(FeaturekitError):
    """A view, feature or version that does not exist was requested."""


class NotAppliedError(FeaturekitError):
    """The code loaded from the repo differs from what the registry has applied."""


class SchemaError(FeaturekitError):
    """A column is missing or has an unusable dtype."""


class DataError(FeaturekitError):
    """Values are unusable: null keys or timestamps, rows outside the window."""


class CheckError(FeaturekitError):
    """A view's output failed a check declared with ``on_check_failure="fail"``; nothing was committed.

    ``results`` holds every check's :class:`~featurekit.quality.check_results.CheckResult`
    (failing and passing) of the refused output.
    """

    def __init__(self, message: str, results: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class OnlineHistoryError(FeaturekitError):
    """An online lookup asked for a moment before the entity's stored row (the store keeps only the newest)."""


class SourceError(FeaturekitError):
    """A source is missing, unreadable, or its schema changed since apply."""


class FeatureFunctionError(FeaturekitError):
    """A user feature function raised or returned an unusable frame."""


class WindowError(FeaturekitError):
    """A materialization window is reversed, empty or reaches into the future."""


class ConflictError(FeaturekitError):
    """Another writer holds the view or committed first; retry once it is done."""


class RegistryError(FeaturekitError):
    """The registry cannot be read."""


class StorageError(FeaturekitError):
    """A stored file (offline table, registry, online store) is missing, damaged or cannot be written,
    or the Redis online store does not answer or refuses a command."""


_IO_FAILURES = (
    "disk i/o error",
    "database or disk is full",
    "no space left",
    "input/output error",
    "unable to open database",
    "read-only file system",
    "attempt to write a readonly database",
)


def is_io_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the disk failing (full, read-only, I/O error), not a bug or a conflict."""
    return isinstance(exc, OSError) or any(s in str(exc).lower() for s in _IO_FAILURES)


@contextmanager
def storage_errors(what: str, consequence: str = "nothing was committed") -> Iterator[None]:
    """Turn a failing disk under ``what`` into a :class:`StorageError` saying what it means."""
    try:
        yield
    except FeaturekitError:
        raise
    except Exception as exc:
        if not is_io_failure(exc):
            raise
        raise StorageError(
            f"{what} failed: {str(exc).strip().splitlines()[0]}; {consequence}. "
            "Free disk space or fix the device, then run the same command again"
        ) from exc


class ManifestError(FeaturekitError):
    """A training-set manifest is unreadable, or rebuilding it would not give the same result."""


class RetentionError(FeaturekitError):
    """Time travel asked for data that gc removed under the retention policy."""


class RequestError(FeaturekitError):
    """An HTTP request the feature server cannot take: not JSON, too large, too many entities."""


class AuthError(FeaturekitError):
    """A missing or wrong bearer token, or a token without the scope the route needs (push needs ``write``)."""


class ServerError(FeaturekitError):
    """The feature server failed in a way the request did not cause; its log holds the traceback under ``error_id``."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or a list of what exists."""
    pool = sorted(set(candidates))
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in pool}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    if close:
        return f" (did you mean '{close[0]}'?)"
    if not pool:
        return " (none are defined)"
    shown = ", ".join(pool[:10]) + (", ..." if len(pool) > 10 else "")
    return f" (known: {shown})"
