"""Checks that a view's output must pass before it is committed (built by the checks work)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from featurekit.definitions import FeatureView
from featurekit.registry import ViewVersion


class CheckRun:
    """The view's checks over one window's output: nothing is checked until checks are declared."""

    def __init__(
        self, view: FeatureView, version: ViewVersion, *, window: tuple[datetime, datetime], mode: str
    ) -> None:
        self.view = view

    def add(self, table: pa.Table) -> None:
        return None

    def conclude(self) -> None:
        return None

    def records(self) -> dict[str, str]:
        return {}
