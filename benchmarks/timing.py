"""Wall and CPU time of a measured block.

CPU time (user + system, every thread of the process) moves less than wall time when other jobs
compete for the machine's two cores: the scaling section judges growth on both.
"""

from __future__ import annotations

import time


class Stopwatch:
    """Started on creation; :meth:`result` gives the seconds since then."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def result(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "cpu_seconds": time.process_time() - self.cpu}
