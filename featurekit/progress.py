"""Progress of long work (materialize), reported to a bar the caller can turn off.

The library reports through a :class:`Progress` object; :func:`make_progress` picks the bar
(``True``), silence (``False``), a bar only when stderr is a terminal (``"auto"``, the default), or a
caller's own object with the same three methods.
"""

from __future__ import annotations

import sys
import time
from typing import Literal, Protocol, TextIO


class Progress(Protocol):
    """Receives progress of one task at a time."""

    def start(self, total: int, label: str) -> None: ...

    def advance(self, done: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    """Reports nothing (scripts, tests, ``--quiet``)."""

    def start(self, total: int, label: str) -> None:
        return None

    def advance(self, done: int) -> None:
        return None

    def finish(self) -> None:
        return None


class ProgressBar:
    """A one-line bar on a text stream (stderr by default), redrawn at most ten times a second."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.total = 0
        self.done = 0
        self.label = ""
        self.began = 0.0
        self.drawn = 0.0

    def start(self, total: int, label: str) -> None:
        self.total, self.done, self.label = total, 0, label
        self.began = time.monotonic()
        self.drawn = 0.0
        self._draw(force=True)

    def advance(self, done: int) -> None:
        self.done += done
        self._draw()

    def finish(self) -> None:
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn < 0.1:
            return
        self.drawn = now
        share = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(share * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {share:4.0%} {self.done:,}/{self.total:,} rows {now - self.began:5.1f}s"
        )
        self.stream.flush()


def make_progress(option: bool | Literal["auto"] | Progress) -> Progress:
    """Turn the ``progress=`` argument of the API into a :class:`Progress`."""
    if option is True:
        return ProgressBar()
    if option is False:
        return NoProgress()
    if option == "auto":
        return ProgressBar() if sys.stderr.isatty() else NoProgress()
    return option
