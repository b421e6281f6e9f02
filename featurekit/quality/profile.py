"""The profile model: what is known of a set of feature values, and how two profiles line up.

A :class:`Profile` describes the rows of one data version (or one time window of it, one training
set, one serving log); each :class:`ColumnProfile` one feature column. Numeric columns carry a
histogram on ``edges`` that are fixed per view version, so two profiles of the same version
compare bin by bin: bin 0 holds values below ``edges[0]``, bin i (1 <= i < len(edges)) values in
``[edges[i-1], edges[i])`` and the last bin values at or above ``edges[-1]``; nulls and NaNs are
counted apart and are in no bin. Categorical (string, boolean) columns carry their most frequent
values with counts instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ColumnKind = Literal["numeric", "categorical", "other"]
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
TOP_VALUES = 100


@dataclass(frozen=True)
class ColumnProfile:
    """One column: counts, moments, percentiles, histogram (numeric) or top values (categorical).

    ``rows`` counts every row, ``nulls`` the nulls, ``nans`` the floating NaNs (not nulls);
    ``count`` (rows - nulls - nans) the values the statistics describe. ``top`` lists up to
    :data:`TOP_VALUES` (value, count) pairs, most frequent first (ties by value), values as
    strings; ``other`` counts the values outside ``top``.
    """

    name: str
    kind: ColumnKind
    rows: int
    nulls: int = 0
    nans: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    percentiles: dict[int, float] = field(default_factory=dict)
    edges: tuple[float, ...] = ()
    histogram: tuple[int, ...] = ()
    distinct: int | None = None
    top: tuple[tuple[str, int], ...] = ()
    other: int = 0

    @property
    def count(self) -> int:
        return self.rows - self.nulls - self.nans

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "nulls": self.nulls,
            "nans": self.nans,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "percentiles": {str(k): v for k, v in self.percentiles.items()},
            "edges": list(self.edges),
            "histogram": list(self.histogram),
            "distinct": self.distinct,
            "top": [list(pair) for pair in self.top],
            "other": self.other,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        return cls(
            name=data["name"],
            kind=data["kind"],
            rows=int(data["rows"]),
            nulls=int(data.get("nulls", 0)),
            nans=int(data.get("nans", 0)),
            min=data.get("min"),
            max=data.get("max"),
            mean=data.get("mean"),
            std=data.get("std"),
            percentiles={int(k): float(v) for k, v in (data.get("percentiles") or {}).items()},
            edges=tuple(float(e) for e in data.get("edges") or ()),
            histogram=tuple(int(c) for c in data.get("histogram") or ()),
            distinct=data.get("distinct"),
            top=tuple((str(v), int(c)) for v, c in data.get("top") or ()),
            other=int(data.get("other", 0)),
        )


@dataclass(frozen=True)
class Profile:
    """A profile of a set of rows: the row count and one :class:`ColumnProfile` per feature column.

    ``source`` says what was profiled (for example ``"driver_stats v1 data version 3"``).
    """

    rows: int
    columns: dict[str, ColumnProfile]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "source": self.source, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        columns = [ColumnProfile.from_dict(c) for c in data.get("columns") or ()]
        return cls(rows=int(data["rows"]), columns={c.name: c for c in columns}, source=str(data.get("source", "")))

    def to_pandas(self) -> Any:
        """One row per column, the statistics as columns (percentiles as ``p1`` ... ``p99``)."""
        import pandas as pd

        rows = []
        for column in self.columns.values():
            row = {k: v for k, v in column.to_dict().items() if k not in ("percentiles", "edges", "histogram", "top")}
            row.update({f"p{p}": column.percentiles.get(p) for p in PERCENTILES})
            rows.append(row)
        return pd.DataFrame(rows)
