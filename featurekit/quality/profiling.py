"""Profiles built in the materialization's own pass (built by the profiles work)."""

from __future__ import annotations

import pyarrow as pa

from featurekit.registry import Registry, ViewVersion


class ProfileBuilder:
    """Accumulates one window's profile; records nothing until profiles are built."""

    def __init__(self, version: ViewVersion, registry: Registry) -> None:
        self.version = version

    def add(self, table: pa.Table) -> None:
        return None

    def records(self) -> dict[str, str]:
        return {}

    def view_records(self) -> dict[str, str]:
        return {}
