"""How fresh a commit's data is: when its materialization (or push) started, and its newest event.

Each materialization and push stores one ``"freshness"`` record with its commit (the registry's
per-commit quality records, written in the commit's own transaction). The commit time minus
``started_at`` is how long the run took (source scan, feature function, write and commit);
``newest_event`` is the newest event time the view version's committed writes held so far (this
commit's output, or an earlier one's if a backfill wrote older rows), so the newest record alone
answers "how fresh is this view" (``window_newest_event``: this commit's own). Both are what the
web UI shows as a view's freshness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from featurekit.registry import Registry

KIND = "freshness"


class FreshnessRecorder:
    """Watches a run's output batches for their newest event time (one ``max`` per batch)."""

    def __init__(self, timestamp_field: str, registry: Registry, version_id: int) -> None:
        self.started_at = datetime.now(UTC)
        self._field = timestamp_field
        self._registry = registry
        self._version_id = version_id
        self._newest: datetime | None = None

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.saw(pc.max(table.column(self._field)).as_py())

    def saw(self, newest: datetime | None) -> None:
        """Take the newest event time of output counted elsewhere (the engine summarized its parts)."""
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest

    def records(self) -> dict[str, str]:
        """The record to store with the commit, JSON by kind (call it under the view's writer lock)."""
        previous = self._registry.latest_quality(KIND, version_id=self._version_id).get(self._version_id)
        before = None if previous is None else Freshness.from_record(*previous).newest_event
        newest = max((t for t in (before, self._newest) if t is not None), default=None)
        return {
            KIND: json.dumps(
                {
                    "started_at": self.started_at.isoformat(),
                    "newest_event": None if newest is None else newest.isoformat(),
                    "window_newest_event": None if self._newest is None else self._newest.isoformat(),
                }
            )
        }


@dataclass(frozen=True)
class Freshness:
    """One commit's freshness record, read back."""

    commit_id: int
    started_at: datetime
    newest_event: datetime | None

    @classmethod
    def from_record(cls, commit_id: int, payload: str) -> Freshness:
        data = json.loads(payload)
        newest = data.get("newest_event")
        started = datetime.fromisoformat(data["started_at"])
        return cls(commit_id, started, None if newest is None else datetime.fromisoformat(newest))
