"""Named crash points and pause points, for the crash and race tests only.

Writers call :func:`checkpoint` at the moments a crash matters (data files written, just before and
after a registry commit, in the middle of an online upsert, during gc). Normally it does nothing.
When the environment variable ``FEATUREKIT_CRASH_AT`` names the point, the process kills itself
with ``SIGKILL`` there, exactly as an out-of-memory kill or a pulled plug would: no exception, no
cleanup, no ``finally``. Only the test suite sets the variable.

``FEATUREKIT_CRASH_AT=materialize.before_commit`` crashes at the first time that point is reached;
``materialize.before_commit:3`` at the third. Several points may be listed, separated by commas.

``FEATUREKIT_PAUSE_AT=gc.view:2`` with ``FEATUREKIT_PAUSE_DIR=/some/dir`` makes the process stop at
the second time it reaches ``gc.view``: it creates ``<dir>/gc.view.reached`` and waits (up to a
minute) for ``<dir>/gc.view.go``, so a race test can do something at exactly that moment.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "FEATUREKIT_CRASH_AT"
PAUSE_ENV = "FEATUREKIT_PAUSE_AT"
PAUSE_DIR_ENV = "FEATUREKIT_PAUSE_DIR"
_PAUSE_LIMIT_S = 60.0

# Every point a writer can crash at (the crash tests iterate over these).
POINTS = (
    "materialize.data_written",  # the Delta commit of the window is written, the registry not yet
    "materialize.before_commit",  # just before the registry records the materialization
    "materialize.after_commit",  # the registry recorded it, the online store is not loaded yet
    "online.mid_upsert",  # halfway through the rows of one online write
    "push.after_offline",  # a push committed offline, its online write not yet done
    "apply.before_commit",  # an apply planned and about to commit
    "gc.view",  # gc is about to take the next view's lock
    "gc.recorded",  # gc recorded what it removes, files not deleted yet
    "gc.mid_delete",  # gc deleted some of the files it removes
)
# Points only a pause test stops at (a reader between two reads; nothing to crash).
PAUSE_POINTS = ("drift.between_sides",)  # a drift report profiled its reference, not its current side yet

_hits: dict[str, int] = {}


def _wanted(env: str = ENV) -> dict[str, int]:
    spec = os.environ.get(env, "")
    wanted: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition(":")
        wanted[name] = int(nth) if nth.isdigit() else 1
    return wanted


def checkpoint(name: str) -> None:
    """Crash (SIGKILL) or pause here if a test asked for it; otherwise return at once."""
    if PAUSE_ENV in os.environ:
        _pause(name)
    if ENV not in os.environ:
        return
    if name in PAUSE_POINTS:
        return
    if name not in POINTS:
        raise AssertionError(f"unknown crash point {name!r}")
    wanted = _wanted().get(name)
    if wanted is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == wanted:
        os.kill(os.getpid(), signal.SIGKILL)


def _pause(name: str) -> None:
    wanted = _wanted(PAUSE_ENV).get(name)
    if wanted is None:
        return
    key = f"pause:{name}"
    _hits[key] = _hits.get(key, 0) + 1
    if _hits[key] != wanted:
        return
    folder = Path(os.environ[PAUSE_DIR_ENV])
    (folder / f"{name}.reached").touch()
    deadline = time.monotonic() + _PAUSE_LIMIT_S
    while not (folder / f"{name}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def armed() -> bool:
    """Whether any crash point is set (writers use it to split work so mid-points exist)."""
    return ENV in os.environ
