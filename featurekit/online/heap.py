"""Why a serving process frees one large block before its first lookup.

A window lookup reads each entity's whole online state: for a hot entity a blob of megabytes
(2 MB for 125k events), which SQLite assembles and Python copies, so a lookup allocates and frees
about twice the state. glibc's ``malloc`` gives the free top of its heap back to the OS once it
exceeds the trim threshold, and that threshold only grows with the largest block the process has
freed (to twice it, up to 64 MB). A fresh process that has freed nothing larger than a state trims
after every such lookup and faults the pages back in on the next: 2.5 ms of a 3 ms hot lookup at
medium, against 0.45 ms in a process that had built a training set first.

Freeing one 31 MB block at start raises the threshold as any large allocation would: ``bytes(n)``
comes from ``calloc``, which maps zero pages without touching them (0.05 ms), and its release
teaches ``malloc`` that blocks this large come and go. Up to 62 MB of freed heap may then stay
with the process instead of going back to the OS. Other allocators ignore it.
"""

from __future__ import annotations

import threading

_BLOCK_BYTES = 31 * 1024 * 1024  # under glibc's 32 MB cap on the dynamic mmap threshold
_done = threading.Event()


def settle() -> None:
    """Free one large block, once per process (later calls return at once)."""
    if _done.is_set():
        return
    block = bytes(_BLOCK_BYTES)
    del block
    _done.set()
