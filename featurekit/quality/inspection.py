"""The one pass a materialization or push makes over its output before committing it.

``add`` sees every output batch (already cast to the view version's schema), ``conclude`` runs
after the last batch and before the commit (a failing ``"fail"`` check raises
:class:`~featurekit.errors.CheckError` there, so nothing is committed), and ``records`` returns
the JSON the registry stores in the commit's own transaction.

A large batch is checked and profiled on a worker thread while the materialization goes on
writing it (numpy, pyarrow and polars release the GIL in their loops), so the pass costs little
time on a machine with a spare core. At most one batch is in flight, so memory stays bounded,
and the worker's error, if any, is raised by the next ``add`` or by ``conclude``.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

import pyarrow as pa

from featurekit.definitions import FeatureView
from featurekit.quality.checks import CheckRun
from featurekit.quality.data_profiles import checkpoint_records
from featurekit.quality.profiling import ProfileBuilder
from featurekit.registry import Registry, ViewVersion

BACKGROUND_ROWS = 65_536  # smaller batches (pushes, small windows) are inspected right away


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
        self._pending: Future[None] | None = None
        self._records: Future[dict[str, str]] | None = None

    def add(self, table: pa.Table) -> None:
        self._wait()
        if table.num_rows < BACKGROUND_ROWS:
            self._inspect(table)
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="featurekit-inspect")
        self._pending = self._worker.submit(self._inspect, table)

    def _inspect(self, table: pa.Table) -> None:
        tallies = self.profile.add(table)
        self.checks.add(table, tallies)  # not_null and between read the profile's counts

    def _wait(self) -> None:
        """Let the batch in flight finish (its error, if any, is raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
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
