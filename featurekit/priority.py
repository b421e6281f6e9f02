"""Run batch work (materialize, backfills) beside a feature server without taking its cores.

On a host that serves, what slows lookups while another process materializes is the wait for a
core, not the online store (see the README's serving section). Three ways to step aside:

* ``cpus`` (Linux CPU affinity, :func:`confine_to_cpus`): the process runs only on the cores
  named, and the server has the others to itself. This is the one that holds the server's tail
  on Linux kernels built without full preemption (``PREEMPT_NONE``, common on servers and VMs):
  there a batch thread inside a long system call (Delta's 5 MiB writes into the page cache:
  6-7 ms each on the benchmark VM) keeps its core until the call returns, whatever its
  priority, and a lookup woken on that core waits for it (measured in the load benchmark:
  p99 during a materialize 2-13x idle at any priority, 0.7-1.0x confined to one of two cores).

* ``nice`` (0-19): the kernel's fair scheduler gives the process a smaller share of the cores. A
  nice process still runs out its time slice when a lookup wakes up, so the server's tail waits
  for that slice (measured: p99 7x idle at nice 10 in the load benchmark).
* ``idle`` (Linux ``SCHED_IDLE``): the process runs only on a core nothing else wants; a waking
  server thread preempts it at once. The batch job takes as long as before on an otherwise idle
  host, and gives way entirely to anything else.

Each applies to every thread of the process, those already started (DuckDB's, polars' and
Delta's pools) included; threads started later inherit it. A priority is for good: an
unprivileged process cannot raise it back. A
process already lower is left alone; where the platform cannot do what is asked,
:func:`lower_cpu_priority` says so with a :class:`~featurekit.errors.ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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


def parse_cpus(text: str) -> set[int]:
    """CPU numbers written as ``taskset``'s list: ``"1"``, ``"2-3"``, ``"0,2-3"``."""
    found: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ConfigError(f"cpus {text!r} is not a list of CPU numbers; write it as 1, 2-3 or 0,2-3")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ConfigError(f"cpus {text!r}: the range {part} runs backwards; write it as {last}-{first}")
        found.update(range(first, last + 1))
    return found


def confine_to_cpus(cpus: str | Iterable[int]) -> set[int]:
    """Run every thread of this process only on ``cpus`` (``"1"``, ``"2-3"`` or numbers; Linux).

    Call it before opening the store, or at any time: threads already running are moved too, and
    DuckDB then starts as many threads as there are CPUs left (unless ``offline.threads`` says
    otherwise). Returns the CPUs the process now runs on. Refuses, with a ConfigError naming the
    CPUs there are, a CPU this process may not run on.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(
            f"cannot confine a process to CPUs on {os.name}: CPU affinity is Linux's; use the nice option instead"
        )
    wanted = parse_cpus(cpus) if isinstance(cpus, str) else {int(cpu) for cpu in cpus}
    allowed = os.sched_getaffinity(0)
    if not wanted or not wanted <= allowed:
        raise ConfigError(
            f"cpus {sorted(wanted)} are not CPUs this process may run on; it may use {_cpu_list(allowed)}"
        )
    for thread in _threads():
        try:
            os.sched_setaffinity(thread, wanted)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as error:
            raise ConfigError(f"could not confine thread {thread} to CPUs {_cpu_list(wanted)} ({error})") from error
    return wanted


def confined_cpus() -> int | None:
    """How many CPUs this process is confined to, when fewer than the machine has (else None)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    count = len(os.sched_getaffinity(0))
    return count if count < (os.cpu_count() or count) else None


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def current_cpu_priority() -> tuple[str, int]:
    """This thread's scheduling policy (``"idle"`` or ``"normal"``) and nice value, for reports and tests."""
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    nice = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    return ("idle" if policy is not None and policy == getattr(os, "SCHED_IDLE", None) else "normal"), nice
