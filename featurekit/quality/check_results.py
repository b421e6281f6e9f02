"""Check results: what one check found, what one commit's checks found, and how the registry holds them.

Each materialization or offline push of a view with checks stores one ``"checks"`` quality record
in its own registry transaction (JSON, see :meth:`CommitChecks.to_json`), so every data version's
check status is known. A push to the online store only makes no registry commit, so its results
are only in its :class:`~featurekit.errors.CheckError` or warning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from featurekit.registry import Registry, ViewVersion
from featurekit.timestamps import utc

SAMPLE_ROWS = 5  # offending rows kept per check


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: instants as ISO text, durations in seconds, non-finite floats as text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    item = getattr(value, "item", None)  # numpy and pandas scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class CheckResult:
    """One check over one output: what it saw and whether that passes.

    ``passed`` is None for a check that did not apply (``row_count`` on a push). ``rows`` holds up
    to five offending rows (keys, timestamps and the checked column), as JSON values.
    """

    check: str
    kind: str
    observed: Any
    threshold: str
    passed: bool | None
    on_failure: str
    detail: str = ""
    rows: tuple[dict[str, Any], ...] = ()

    @property
    def status(self) -> str:
        return "skipped" if self.passed is None else "passed" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "kind": self.kind,
            "observed": jsonable(self.observed),
            "threshold": self.threshold,
            "passed": self.passed,
            "on_failure": self.on_failure,
            "detail": self.detail,
            "rows": [jsonable(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            check=str(data["check"]),
            kind=str(data["kind"]),
            observed=data.get("observed"),
            threshold=str(data.get("threshold", "")),
            passed=data.get("passed"),
            on_failure=str(data.get("on_failure", "fail")),
            detail=str(data.get("detail", "")),
            rows=tuple(data.get("rows") or ()),
        )

    def __str__(self) -> str:
        text = f"{self.check}: {self.status}, observed {self.observed!r} (threshold: {self.threshold})"
        return text + (f"; {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class CommitChecks:
    """The check results stored with one registry commit (a materialization or an offline push)."""

    view: str
    version: int
    commit_id: int
    data_version: int | None
    mode: str  # "window" or "push"
    window: tuple[datetime, datetime]
    results: tuple[CheckResult, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Whether no check failed (``"warn"`` failures were committed anyway)."""
        return all(r.passed is not False for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "version": self.version,
            "commit_id": self.commit_id,
            "data_version": self.data_version,
            "mode": self.mode,
            "window": [self.window[0].isoformat(), self.window[1].isoformat()],
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        """The registry's ``"checks"`` record (view, version and data version come from the commit)."""
        stored = {k: v for k, v in self.to_dict().items() if k in ("mode", "window", "results")}
        return json.dumps(stored, sort_keys=True, allow_nan=False)

    def __str__(self) -> str:
        head = (
            f"{self.view} v{self.version} data version {self.data_version} (registry version {self.commit_id}, "
            f"{self.mode} [{self.window[0].isoformat()}, {self.window[1].isoformat()})): "
            f"{'passed' if self.passed else 'FAILED'}"
        )
        return "\n".join([head, *(f"  {r}" for r in self.results)])


def stored_checks(registry: Registry, version: ViewVersion) -> list[CommitChecks]:
    """Every commit's stored check results of a view version, oldest first."""
    data_versions = {m.commit_id: m.data_version for m in registry.materializations(version.id)}
    found = []
    for commit_id, payload in registry.quality(version.id, "checks"):
        data = json.loads(payload)
        start, end = data["window"]
        found.append(
            CommitChecks(
                view=version.view,
                version=version.version,
                commit_id=commit_id,
                data_version=data_versions.get(commit_id),
                mode=str(data["mode"]),
                window=(utc(start, "window start"), utc(end, "window end")),
                results=tuple(CheckResult.from_dict(r) for r in data["results"]),
            )
        )
    return found
