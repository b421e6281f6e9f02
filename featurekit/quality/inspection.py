"""The one pass a materialization or push makes over its output before committing it.

``add`` sees every output batch (already cast to the view version's schema), ``conclude`` runs
after the last batch and before the commit (a failing ``"fail"`` check raises
:class:`~featurekit.errors.CheckError` there, so nothing is committed), and ``records`` returns
the JSON the registry stores in the commit's own transaction.

A large batch is checked and profiled on two worker threads (numpy, pyarrow and polars release
the GIL in their loops), in three kinds of task taken in order by whichever worker is free: one
for the checks that need no profile counts (``unique_keys`` above all), one per column that a
``not_null`` or ``between`` check reads (its :class:`~featurekit.quality.profiling.ColumnTally`:
null and NaN counts and extremes, a pass or two over the values), and one per profiled column
(its buckets, moments and distinct sketch: most of the pass's work). Only the first two must
finish before the commit: ``conclude`` waits for them and decides the checks, so a profile task
starts only once they are done (not beside them, taking a core from what the commit waits for),
and the profile tasks of the last batch go on while the Delta writer (delta-rs, which encodes most of its input
once the stream of batches has ended, that is after ``conclude``) encodes and commits; ``records``,
before the registry records the commit, waits for them. So most of the pass runs beside that
encoding (and, before the last batch, beside the next batch's read and feature function) rather
than ahead of it. A profile task that fails (nothing in its input can make it, short of memory)
fails ``records``: the Delta commit is then made but never recorded, which the next write's
``prepare`` undoes, as after any failure between the two. Each column's chunks are added in
order by one task, so the profile equals a one-threaded pass. At most one batch is in flight, so
memory stays bounded, and a worker's error, if any, is raised by the next ``add``, by
``conclude`` (the checks' and tallies') or by ``records``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

import pyarrow as pa

from featurekit.definitions import FeatureView
from featurekit.quality.checks import CheckRun
from featurekit.quality.data_profiles import checkpoint_records
from featurekit.quality.profiling import BatchTally, ColumnTally, ProfileBuilder, Scratch
from featurekit.registry import Registry, ViewVersion

BACKGROUND_ROWS = 65_536  # smaller batches (pushes, small windows) are inspected right away
WORKERS = 2


class Inspection:
    """Checks and profile of one materialization window's (or one push's) output."""

    def __init__(
        self,
        view: FeatureView,
        version: ViewVersion,
        registry: Registry,
        *,
        window: tuple[datetime, datetime],
        mode: str,
    ) -> None:
        self.checks = CheckRun(view, version, window=window, mode=mode)
        self.profile = ProfileBuilder(version, registry)
        self.version, self.registry, self.window, self.mode = version, registry, window, mode
        self._worker: ThreadPoolExecutor | None = None
        self._scratch = threading.local()  # each worker's work arrays, reused by its column tasks
        columns = self.profile.state.columns
        checked = {e.check.column for e in self.checks.evaluators}  # what add_tallied hands a tally
        self._tallies = {name: ColumnTally(columns[name].kind) for name in columns if name in checked}
        self._table: pa.Table | None = None  # the batch in flight
        self._checked: Future[None] | None = None  # its checks of no single column
        self._tallied: dict[str, Future[BatchTally]] = {}  # its checked columns' tallies
        self._profiled: list[Future[BatchTally]] = []  # its profiled columns (not needed before the commit)
        self._records: Future[dict[str, str]] | None = None

    def add(self, table: pa.Table) -> None:
        self._wait()
        if table.num_rows < BACKGROUND_ROWS:
            tallies = self.profile.add(table)
            self.checks.add(table, tallies)  # not_null and between read the profile's counts
            for name, tally in self._tallies.items():  # the extremes of every batch, for the next large one
                tally.low, tally.high = tallies[name].low, tallies[name].high
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="featurekit-inspect")
        self.profile.state.count_rows(table)
        self._table = table
        submit = self._worker.submit
        self._checked = submit(self.checks.add_untallied, table)  # first: the hash of the keys
        self._tallied = {name: submit(tally.add, table.column(name)) for name, tally in self._tallies.items()}
        before: list[Future[Any]] = [self._checked, *self._tallied.values()]  # what the commit waits for
        self._profiled = [submit(self._add_column, table, name, before) for name in self.profile.state.columns]

    def _add_column(self, table: pa.Table, name: str, before: list[Future[Any]]) -> BatchTally:
        # After the checks and tallies, not beside them: they are what conclude() waits for, and a
        # profile task beside them would take a core from them. They were submitted first, so they
        # are running or done by now (no task here waits for one behind it in the queue).
        wait(before)
        scratch = getattr(self._scratch, "arrays", None)
        if scratch is None:
            scratch = self._scratch.arrays = Scratch.block()
        return self.profile.state.add_column(name, table.column(name), scratch)

    def _wait(self) -> None:
        """Let the batch in flight finish, profile included (an error is raised here)."""
        self._decide()
        profiled, self._profiled = self._profiled, []
        self._settle(profiled)

    def _decide(self) -> None:
        """Let the batch in flight's checks and tallies finish, then run its checks of one column."""
        table, checked, tallied = self._table, self._checked, self._tallied
        self._table, self._checked, self._tallied = None, None, {}
        if table is None:
            return
        self._settle([*([checked] if checked else []), *tallied.values()])
        try:
            self.checks.add_tallied(table, {name: future.result() for name, future in tallied.items()})
        except BaseException:
            self._close()
            raise

    def _settle(self, futures: list[Future[Any]]) -> None:
        """Wait for every one of ``futures`` (none runs on after a raise), then raise the first error."""
        try:
            failures = [f.exception() for f in futures]
            failure = next((exc for exc in failures if exc is not None), None)
            if failure is not None:
                raise failure
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)  # tasks not started are not needed
            self._worker = None

    def _profile_records(self, profiled: list[Future[BatchTally]]) -> dict[str, str]:
        """The profile's records once its last batch's tasks are done (on a worker: they started before)."""
        for future in profiled:
            future.result()
        return self.profile.records()

    def conclude(self) -> None:
        """After the last batch: raise :class:`~featurekit.errors.CheckError` if a ``"fail"`` check failed.

        Waits for the last batch's checks and tallies, not for its profile (see the module docstring).
        """
        self._decide()
        try:
            self.checks.conclude()
        except BaseException:
            self._close()
            raise
        if self._worker is not None:  # finished and serialized while the write encodes and commits
            profiled, self._profiled = self._profiled, []
            self._records = self._worker.submit(self._profile_records, profiled)

    def committed(self) -> None:
        """After the commit: warn (:class:`~featurekit.quality.checks.CheckWarning`) of ``"warn"`` failures.

        Not from :meth:`conclude`: a materialization concludes in its writer thread, where a
        warning turned into an error (``-W error``) would abort the write instead of reaching the caller.
        """
        self.checks.warn()

    def records(self) -> dict[str, str]:
        """The commit's quality records, JSON by kind (after :meth:`conclude`), with its data version's
        merged profile state when due (see :mod:`featurekit.quality.data_profiles`)."""
        try:
            self._wait()
            profile = self._records.result() if self._records is not None else self.profile.records()
        finally:
            self._records = None
            self._close()
        merged = checkpoint_records(self.registry, self.version, self.window, self.mode, self.profile.state)
        return {**self.checks.records(), **profile, **merged}

    def view_records(self) -> dict[str, str]:
        """Records fixed once per view version (the first materialization's histogram edges)."""
        return self.profile.view_records()
