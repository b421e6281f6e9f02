"""Drift between two profiles: per feature, every statistic with its threshold and a status.

:func:`compare` lines up a reference and a current :class:`~featurekit.quality.profile.Profile`
feature by feature. Numeric features compare on their shared histogram bins (PSI, Jensen-Shannon
distance, Kolmogorov-Smirnov statistic), categorical ones on their category counts (PSI,
Jensen-Shannon, L-infinity distance, the share of new categories); both compare their null rates.
:mod:`featurekit.quality.drift_stats` defines each statistic and its noise level. A statistic
drifts when it exceeds both its threshold and its noise level; a feature drifts when one of its
statistics does; with fewer than ``min_count`` values on a side, it has "insufficient data"
instead of an alarm. A feature's ``score`` is its PSI, the number ``featurekit drift --fail-on``
compares.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from featurekit.errors import DataError
from featurekit.quality import drift_stats as stats
from featurekit.quality.profile import ColumnProfile, Profile

Status = Literal["ok", "drift", "insufficient data", "incomparable"]
OTHER = "(other values)"  # the cell of values outside a side's top values


@dataclass(frozen=True)
class Thresholds:
    """The default alarm levels (each statistic also has to clear its noise level).

    PSI 0.2 is the industry's "significant shift"; 0.1 for the distances is TFDV's usual choice.
    """

    psi: float = 0.2
    js: float = 0.1
    ks: float = 0.1
    linf: float = 0.1
    null_rate: float = 0.05
    new_categories: float = 0.05
    min_count: int = 100

    def of(self, statistic: str) -> float:
        return float(getattr(self, statistic))


@dataclass(frozen=True)
class Statistic:
    """One statistic of one feature: its value, its threshold, the noise level of these sample sizes."""

    name: str
    value: float
    threshold: float
    noise: float
    status: Status

    @property
    def alarm_level(self) -> float:
        return max(self.threshold, self.noise)


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature, with the cells it was measured on (for charts)."""

    feature: str
    kind: str
    status: Status
    reference_count: int
    current_count: int
    statistics: tuple[Statistic, ...] = ()
    cells: tuple[str, ...] = ()  # bin or category labels, in order
    reference_cells: tuple[int, ...] = ()
    current_cells: tuple[int, ...] = ()
    message: str = ""

    @property
    def score(self) -> float | None:
        """The feature's PSI (None when it could not be measured)."""
        return self.statistic("psi")

    def statistic(self, name: str) -> float | None:
        for s in self.statistics:
            if s.name == name:
                return s.value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "status": self.status,
            "score": self.score,
            "reference_count": self.reference_count,
            "current_count": self.current_count,
            "statistics": [
                {"name": s.name, "value": s.value, "threshold": s.threshold, "noise": s.noise, "status": s.status}
                for s in self.statistics
            ],
            "cells": list(self.cells),
            "reference_cells": list(self.reference_cells),
            "current_cells": list(self.current_cells),
            "message": self.message,
        }


@dataclass(frozen=True)
class DriftReport:
    """Per feature drift of ``current`` against ``reference``."""

    reference: str
    current: str
    features: tuple[FeatureDrift, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.status == "drift"]

    def fails(self, score: float) -> bool:
        """Whether a feature's score (PSI) reaches ``score`` above its noise level (``--fail-on``)."""
        for feature in self.features:
            for s in feature.statistics:
                if s.name == "psi" and s.status != "insufficient data" and s.value >= max(score, s.noise):
                    return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "thresholds": self.thresholds.__dict__,
            "features": [f.to_dict() for f in self.features],
        }

    def to_pandas(self) -> Any:
        """One row per feature: status, score, and each statistic's value and status as columns."""
        import pandas as pd

        rows = []
        for f in self.features:
            row: dict[str, Any] = {
                "feature": f.feature,
                "kind": f.kind,
                "status": f.status,
                "score": f.score,
                "reference_count": f.reference_count,
                "current_count": f.current_count,
            }
            for s in f.statistics:
                row[s.name] = s.value
                row[f"{s.name}_status"] = s.status
            rows.append(row)
        return pd.DataFrame(rows)

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML report (a chart per drifted feature, no external assets)."""
        from featurekit.quality.drift_html import render

        target = Path(path)
        try:
            target.write_text(render(self), encoding="utf-8")
        except OSError as exc:
            raise DataError(
                f"cannot write the drift report to {target}: {exc.strerror}; choose a writable path"
            ) from exc
        return target

    def __str__(self) -> str:
        lines = [f"drift of {self.current} against {self.reference}"]
        for f in self.features:
            score = "" if f.score is None else f"  psi {f.score:.4f}"
            detail = ", ".join(f"{s.name} {s.value:.4f}" for s in f.statistics if s.name != "psi")
            lines.append(f"  {f.feature:<32} {f.status:<17}{score}  {detail}{'  ' + f.message if f.message else ''}")
        return "\n".join(lines)


def compare(
    reference: Profile,
    current: Profile,
    features: Sequence[str] | None = None,
    thresholds: Thresholds | None = None,
) -> DriftReport:
    """The drift of ``current`` against ``reference`` for ``features`` (default: the columns both profile)."""
    limits = thresholds or Thresholds()
    names = list(features) if features is not None else [c for c in reference.columns if c in current.columns]
    for side, profile in (("reference", reference), ("current", current)):
        absent = [n for n in names if n not in profile.columns]
        if absent:
            raise DataError(
                f"the {side} side ({profile.source or 'a profile'}) has no feature {absent[0]!r}; it profiles "
                f"{sorted(profile.columns)}; name features both sides hold"
            )
    rows = tuple(_feature(n, reference.columns[n], current.columns[n], limits) for n in names)
    return DriftReport(reference.source, current.source, rows, limits)


def _feature(name: str, ref: ColumnProfile, cur: ColumnProfile, limits: Thresholds) -> FeatureDrift:
    result = functools.partial(
        FeatureDrift, feature=name, kind=ref.kind, reference_count=ref.count, current_count=cur.count
    )
    if ref.kind != cur.kind:
        return result(status="incomparable", message=f"{ref.kind} in the reference, {cur.kind} in the current side")
    if ref.kind == "numeric":
        if ref.edges != cur.edges:
            return result(
                status="incomparable",
                message="the two sides' histograms have different bin edges; profile the current side with the "
                "reference's edges (drift does when it can read the current side's values)",
            )
        cells, p, q = _bins(ref), np.array(ref.histogram), np.array(cur.histogram)
    elif ref.kind == "categorical":
        cells, p, q = _categories(ref, cur)
    else:
        return result(status="incomparable", message=f"{ref.kind} columns are not compared")
    n, m = ref.count, cur.count
    sufficient = n >= limits.min_count and m >= limits.min_count
    k = int(((p > 0) | (q > 0)).sum())
    measured: list[tuple[str, float, float]] = []
    if n and m:
        measured += [
            ("psi", stats.psi(p, q), stats.psi_noise(k, n, m)),
            ("js", stats.js_distance(p, q), stats.js_noise(k, n, m)),
        ]
        if ref.kind == "numeric":
            measured.append(("ks", stats.ks_binned(p, q), stats.ks_noise(n, m)))
        else:
            measured.append(("linf", stats.linf(p, q), stats.share_noise(k, n, m)))
            measured.append(("new_categories", _new_share(ref, cur), stats.share_noise(1, n, m)))
    statistics = [_judge(s, v, noise, limits, sufficient) for s, v, noise in measured]
    if ref.rows and cur.rows:
        nulls = abs((cur.nulls + cur.nans) / cur.rows - (ref.nulls + ref.nans) / ref.rows)
        enough_rows = ref.rows >= limits.min_count and cur.rows >= limits.min_count
        statistics.append(_judge("null_rate", nulls, stats.share_noise(1, ref.rows, cur.rows), limits, enough_rows))
    status: Status = (
        "drift"
        if any(s.status == "drift" for s in statistics)
        else ("ok" if sufficient and statistics else "insufficient data")
    )
    return result(
        status=status,
        statistics=tuple(statistics),
        cells=tuple(cells),
        reference_cells=tuple(int(c) for c in p),
        current_cells=tuple(int(c) for c in q),
    )


def _judge(name: str, value: float, noise: float, limits: Thresholds, sufficient: bool) -> Statistic:
    threshold = limits.of(name)
    if not sufficient:
        status: Status = "insufficient data"
    else:
        status = "drift" if value > threshold and value > noise else "ok"
    return Statistic(name, value, threshold, noise, status)


def _bins(column: ColumnProfile) -> list[str]:
    edges = [f"{e:.6g}" for e in column.edges]
    if not edges:
        return ["all values"]
    return [f"< {edges[0]}"] + [f"[{a}, {b})" for a, b in itertools.pairwise(edges)] + [f">= {edges[-1]}"]


def _categories(ref: ColumnProfile, cur: ColumnProfile) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Counts over the union of both sides' top values, plus one cell for the values outside them."""
    ref_top, cur_top = dict(ref.top), dict(cur.top)
    names = list(ref_top) + [v for v in cur_top if v not in ref_top]
    p = [ref_top.get(v, 0) for v in names]
    q = [cur_top.get(v, 0) for v in names]
    if ref.other or cur.other:
        names.append(OTHER)
        p.append(ref.other)
        q.append(cur.other)
    return names, np.array(p, dtype=np.int64), np.array(q, dtype=np.int64)


def _new_share(ref: ColumnProfile, cur: ColumnProfile) -> float:
    """The share of current values in categories the reference does not have among its top values."""
    known = {v for v, _ in ref.top}
    new = sum(c for v, c in cur.top if v not in known)
    return new / cur.count if cur.count else 0.0
