"""The one pass a materialization or push makes over its output before committing it.

``add`` sees every output batch (already cast to the view version's schema), ``conclude`` runs
after the last batch and before the commit (a failing ``"fail"`` check raises
:class:`~featurekit.errors.CheckError` there, so nothing is committed), and ``records`` returns
the JSON the registry stores in the commit's own transaction.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from featurekit.definitions import FeatureView
from featurekit.quality.checks import CheckRun
from featurekit.quality.data_profiles import checkpoint_records
from featurekit.quality.profiling import ProfileBuilder
from featurekit.registry import Registry, ViewVersion


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

    def add(self, table: pa.Table) -> None:
        self.checks.add(table)
        self.profile.add(table)

    def conclude(self) -> None:
        """After the last batch: raise :class:`~featurekit.errors.CheckError` if a ``"fail"`` check failed."""
        self.checks.conclude()

    def committed(self) -> None:
        """After the commit: warn (:class:`~featurekit.quality.checks.CheckWarning`) of ``"warn"`` failures.

        Not from :meth:`conclude`: a materialization concludes in its writer thread, where a
        warning turned into an error (``-W error``) would abort the write instead of reaching the caller.
        """
        self.checks.warn()

    def records(self) -> dict[str, str]:
        """The commit's quality records, JSON by kind (with its data version's merged profile state
        when due: see :mod:`featurekit.quality.data_profiles`)."""
        records = {**self.checks.records(), **self.profile.records()}
        merged = checkpoint_records(self.registry, self.version, self.window, self.mode, self.profile.state)
        return {**records, **merged}

    def view_records(self) -> dict[str, str]:
        """Records fixed once per view version (the first materialization's histogram edges)."""
        return self.profile.view_records()
