"""Progress of long work (materialize, training sets), reported to a bar the caller can turn off.

The library reports through a :class:`Progress` object; :func:`make_progress` picks the bar
(``True``: always), silence (``False``), a bar only when stderr is a terminal (``"auto"``, the
default), or a caller's own object with the same three methods. The library never prints: bars go
to stderr, drawn by `rich <https://rich.readthedocs.io>`_, which is imported only when one is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

ProgressOption = bool | Literal["auto"]


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


def _console(stream: TextIO | None) -> Any:
    from rich.console import Console

    # Shown only when the caller asked for it ("auto" checked the terminal already), so force it.
    return Console(file=stream if stream is not None else sys.stderr, force_terminal=True)


class ProgressBar:
    """A bar of source rows done, with rate and time left, on a text stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def start(self, total: int, label: str) -> None:
        from rich import progress as rp

        self.finish()  # one task at a time: a new start closes a bar left open
        self._bar = rp.Progress(
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.TaskProgressColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("rows"),
            rp.TimeElapsedColumn(),
            rp.TimeRemainingColumn(),
            console=_console(self.stream),
        )
        self._bar.start()
        self._task = self._bar.add_task(label, total=total)

    def advance(self, done: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, done)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None


def _shown(option: ProgressOption) -> bool:
    return option is True or (option == "auto" and sys.stderr.isatty())


def make_progress(option: ProgressOption | Progress) -> Progress:
    """Turn the ``progress=`` argument of the API into a :class:`Progress`."""
    if isinstance(option, (bool, str)):
        return ProgressBar() if _shown(option) else NoProgress()
    return option


@contextmanager
def spinner(label: str, option: ProgressOption = "auto", stream: TextIO | None = None) -> Iterator[None]:
    """A spinner with the time elapsed while work of unknown length runs (gone once it ends)."""
    if not _shown(option):
        yield
        return
    from rich import progress as rp

    with rp.Progress(
        rp.SpinnerColumn(),
        rp.TextColumn("{task.description}"),
        rp.TimeElapsedColumn(),
        console=_console(stream),
        transient=True,
    ) as bar:
        bar.add_task(label, total=None)
        yield
