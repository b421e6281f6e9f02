"""Run batch work (materialize, backfills) beside a feature server without taking its cores.

On a host that serves, what slows lookups while another process materializes is the wait for a
core, not the online store (see the README's serving section). Two ways to step aside:

* ``nice`` (0-19): the kernel's fair scheduler gives the process a smaller share of the cores. A
  nice process still runs out its time slice when a lookup wakes up, so the server's tail waits
  for that slice (measured: p99 7x idle at nice 10 in the load benchmark).
* ``idle`` (Linux ``SCHED_IDLE``): the process runs only on a core nothing else wants; a waking
  server thread preempts it at once. The batch job takes as long as before on an otherwise idle
  host, and gives way entirely to anything else.

Both apply to every thread of the process, those already started (DuckDB's, polars' and Delta's
pools) included, and are for good: an unprivileged process cannot raise its priority back. A
process already lower is left alone; where the platform cannot do what is asked,
:func:`lower_cpu_priority` says so with a :class:`~featurekit.errors.ConfigError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from featurekit.errors import ConfigError

MAX_NICE = 19


def _threads() -> list[int]:
    """This process's thread ids (Linux), or ``[0]`` (the calling thread) where they cannot be listed."""
    tasks = Path("/proc/self/task")
    try:
        return sorted(int(entry.name) for entry in tasks.iterdir())
    except OSError:
        return [0]


def _renice(nice: int) -> None:
    if not hasattr(os, "setpriority"):
        raise ConfigError(
            f"cannot set a nice value on {os.name}: process priorities are POSIX; drop the nice option here"
        )
    for thread in _threads():  # on Linux a nice value belongs to one thread; the rest inherit it
        try:
            if os.getpriority(os.PRIO_PROCESS, thread) < nice:
                os.setpriority(os.PRIO_PROCESS, thread, nice)
        except (ProcessLookupError, PermissionError):  # a thread that ended meanwhile, or not ours
            continue


def _idle() -> None:
    if not hasattr(os, "SCHED_IDLE"):
        raise ConfigError(
            "the idle CPU priority is Linux's SCHED_IDLE, which this platform lacks; use a nice value (0-19) instead"
        )
    for thread in _threads():
        try:
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        except ProcessLookupError:
            continue
        except PermissionError as error:  # not expected: lowering one's own policy is always allowed
            raise ConfigError(
                f"could not switch thread {thread} to SCHED_IDLE ({error}); use a nice value (0-19) instead"
            ) from error


def lower_cpu_priority(nice: int = 0, *, idle: bool = False) -> None:
    """Lower this process's CPU priority: to ``nice`` (0-19; 0 changes nothing), or to ``idle``.

    Call it before opening the store, or at any time: every thread of the process is lowered.
    ``idle`` takes precedence over ``nice`` (it is below every nice value). Never raises a priority.
    """
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= MAX_NICE:
        raise ConfigError(f"nice must be an integer from 0 to {MAX_NICE}, got {nice!r}")
    if idle:
        _idle()
    elif nice:
        _renice(nice)


def current_cpu_priority() -> tuple[str, int]:
    """This thread's scheduling policy (``"idle"`` or ``"normal"``) and nice value, for reports and tests."""
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    nice = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    return ("idle" if policy is not None and policy == getattr(os, "SCHED_IDLE", None) else "normal"), nice
