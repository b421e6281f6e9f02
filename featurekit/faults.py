"""Named crash points, for the crash tests only.

Writers call :func:`checkpoint` at the moments a crash matters (data files written, just before and
after a registry commit, in the middle of an online upsert, during gc). Normally it does nothing.
When the environment variable ``FEATUREKIT_CRASH_AT`` names the point, the process kills itself
with ``SIGKILL`` there, exactly as an out-of-memory kill or a pulled plug would: no exception, no
cleanup, no ``finally``. Only the test suite sets the variable.

``FEATUREKIT_CRASH_AT=materialize.before_commit`` crashes at the first time that point is reached;
``materialize.before_commit:3`` at the third. Several points may be listed, separated by commas.
"""

from __future__ import annotations

import os
import signal

ENV = "FEATUREKIT_CRASH_AT"

# Every point a writer can crash at (the crash tests iterate over these).
POINTS = (
    "materialize.data_written",  # the Delta commit of the window is written, the registry not yet
    "materialize.before_commit",  # just before the registry records the materialization
    "materialize.after_commit",  # the registry recorded it, the online store is not loaded yet
    "online.mid_upsert",  # halfway through the rows of one online write
    "push.after_offline",  # a push committed offline, its online write not yet done
    "apply.before_commit",  # an apply planned and about to commit
    "gc.recorded",  # gc recorded what it removes, files not deleted yet
    "gc.mid_delete",  # gc deleted some of the files it removes
)

_hits: dict[str, int] = {}


def _wanted() -> dict[str, int]:
    spec = os.environ.get(ENV, "")
    wanted: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition(":")
        wanted[name] = int(nth) if nth.isdigit() else 1
    return wanted


def checkpoint(name: str) -> None:
    """Crash here (SIGKILL) if the crash tests asked for it; otherwise return at once."""
    if ENV not in os.environ:
        return
    if name not in POINTS:
        raise AssertionError(f"unknown crash point {name!r}")
    wanted = _wanted().get(name)
    if wanted is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == wanted:
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> bool:
    """Whether any crash point is set (writers use it to split work so mid-points exist)."""
    return ENV in os.environ
