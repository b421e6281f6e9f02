"""The one pass a materialization or push makes over its output before committing it.

``add`` sees every output batch (already cast to the view version's schema), ``conclude`` runs
after the last batch and before the commit (a failing ``"fail"`` check raises
:class:`~featurekit.errors.CheckError` there, so nothing is committed), and ``records`` returns
the JSON the registry stores in the commit's own transaction.

A large batch is checked and profiled on two worker threads (numpy, pyarrow and polars release
the GIL in their loops): one task per profiled column and one for the checks that need no
profile counts (``unique_keys`` above all), taken by whichever worker is free; the checks of one
column (``not_null``, ``between``) then read the columns' tallies. The stream of batches ends
only after ``conclude``, and the Delta writer (delta-rs) encodes its input in its own threads,
partly while ``conclude`` waits, so the pass costs wall time for what of it does not fit beside
that encoding (and, before the last batch, beside the next batch's read and feature function):
split into tasks, it uses whichever core is free. Each column's chunks are added in order by one
task, so the profile equals a one-threaded pass. At most one batch is in flight, so memory stays
bounded, and a worker's error, if any, is raised by the next ``add`` or by ``conclude``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import pyarrow as pa

from featurekit.definitions import FeatureView
from featurekit.quality.checks import CheckRun
from featurekit.quality.data_profiles import checkpoint_records
from featurekit.quality.profiling import BatchTally, ProfileBuilder, Scratch
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
        self._table: pa.Table | None = None  # the batch in flight
        self._checked: Future[None] | None = None  # its checks of no single column
        self._columns: dict[str, Future[BatchTally]] = {}  # its profiled columns
        self._records: Future[dict[str, str]] | None = None

    def add(self, table: pa.Table) -> None:
        self._wait()
        if table.num_rows < BACKGROUND_ROWS:
            tallies = self.profile.add(table)
            self.checks.add(table, tallies)  # not_null and between read the profile's counts
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="featurekit-inspect")
        self.profile.state.count_rows(table)
        self._table = table
        self._checked = self._worker.submit(self.checks.add_untallied, table)  # first: polars' hash of the keys
        columns = self.profile.state.columns
        self._columns = {name: self._worker.submit(self._add_column, table, name) for name in columns}

    def _add_column(self, table: pa.Table, name: str) -> BatchTally:
        scratch = getattr(self._scratch, "arrays", None)
        if scratch is None:
            scratch = self._scratch.arrays = Scratch.block()
        return self.profile.state.add_column(name, table.column(name), scratch)

    def _wait(self) -> None:
        """Let the batch in flight finish, then run its checks of one column (an error is raised here)."""
        table, checked, columns = self._table, self._checked, self._columns
        self._table, self._checked, self._columns = None, None, {}
        if table is None:
            return
        try:
            futures: list[Future[None] | Future[BatchTally]] = [*([checked] if checked else []), *columns.values()]
            failures = [f.exception() for f in futures]  # waits for every task: none runs on after a raise
            failure = next((exc for exc in failures if exc is not None), None)
            if failure is not None:
                raise failure
            self.checks.add_tallied(table, {name: future.result() for name, future in columns.items()})
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def conclude(self) -> None:
        """After the last batch: raise :class:`~featurekit.errors.CheckError` if a ``"fail"`` check failed."""
        self._wait()
        try:
            self.checks.conclude()
        except BaseException:
            self._close()
            raise
        if self._worker is not None:  # serialized while the write finishes its files and commit
            self._records = self._worker.submit(self.profile.records)

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
