"""Online/offline consistency on real traffic: the serving log recomputed through the training path.

Every logged row (one served entity) becomes a spine row at its lookup instant, with the view
versions it was served from pinned, and the training set's value of each feature is compared
with the served one by the skew check's rule (:func:`featurekit.skew.same`; float window
aggregations within :data:`featurekit.windows.FLOAT_TOLERANCE`). Per feature the report gives
(Chronon's consistency metrics):

- ``match_rate``: the share of rows where both agree (both null counts as agreeing);
- ``missing``: the training path has a value, serving returned null;
- ``extra``: serving returned a value, the training path has none;
- ``mismatched``: both have values, and they differ;
- ``smape`` (numeric features): the mean over rows where both have a value of
  ``2 |served - offline| / (|served| + |offline|)``, in ``[0, 2]``: 0 for equal values (two
  zeros, two NaNs, equal infinities), 2 when one side is NaN or infinite and the other is not.

Rows the training path answers differently are real skew: a value changed online behind the
store's back, a row that reached the offline store after it was served (late data, a backfill
of the past), a view version whose data was re-materialized since.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from featurekit.quality.serving_log import REQUEST_PREFIX, SERVED, SERVED_AT, log_columns
from featurekit.references import parse_ref
from featurekit.registry import Registry
from featurekit.skew import Mismatch, allowed_tolerance, same

SPINE_AT = "__consistency_at"  # the spine's time column: each row's lookup instant
EXAMPLES = 5  # differing rows kept per feature

Training = Callable[[pa.Table, list[str]], pa.Table]
"""A training set of pinned feature references over a spine (timestamp ``SPINE_AT``), full names."""


@dataclass
class FeatureConsistency:
    """How one served feature (one view version's) compares with the training path."""

    feature: str  # the log's column
    served_from: str  # the view version, as view@vN:feature
    rows: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    mismatched: int = 0
    smape: float | None = None  # numeric features with a value on both sides; None otherwise
    examples: list[Mismatch] = field(default_factory=list)
    _smape_sum: float = 0.0
    _smape_rows: int = 0

    @property
    def match_rate(self) -> float:
        """Share of rows where serving and training agree (NaN without rows)."""
        return self.matched / self.rows if self.rows else math.nan

    def _conclude(self, numeric: bool) -> None:
        if numeric and self._smape_rows:
            self.smape = self._smape_sum / self._smape_rows


@dataclass
class ConsistencyReport:
    """Served values against the training path's, per feature."""

    rows: int  # logged rows compared
    features: list[FeatureConsistency]

    @property
    def ok(self) -> bool:
        """Every compared value agreed, and something was compared."""
        return self.rows > 0 and all(f.matched == f.rows for f in self.features)

    def to_pandas(self) -> Any:
        """One row per feature: rows, match_rate, missing, extra, mismatched, smape."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "feature": f.feature,
                    "served_from": f.served_from,
                    "rows": f.rows,
                    "match_rate": f.match_rate,
                    "missing": f.missing,
                    "extra": f.extra,
                    "mismatched": f.mismatched,
                    "smape": f.smape,
                }
                for f in self.features
            ],
            columns=["feature", "served_from", "rows", "match_rate", "missing", "extra", "mismatched", "smape"],
        )

    def __str__(self) -> str:
        if not self.rows:
            return "consistency: nothing was compared: the serving log holds no row in this window (of these features)"
        lines = [f"consistency of {self.rows} served rows with the training path:"]
        for f in self.features:
            smape = "" if f.smape is None else f", SMAPE {f.smape:.4g}"
            lines.append(
                f"  {f.feature} ({f.served_from}): match {f.match_rate:.2%} of {f.rows}, missing {f.missing}, "
                f"extra {f.extra}, mismatched {f.mismatched}{smape}"
            )
            lines.extend(f"    {m}" for m in f.examples)
        return "\n".join(lines)


def check_consistency(
    log: pa.Table, registry: Registry, training: Training, features: Sequence[str] | None = None
) -> ConsistencyReport:
    """Recompute ``log``'s rows through ``training`` and compare per feature.

    ``features`` limits the report to these log columns (``view:feature``), served versions
    (``view@vN:feature``) or views (``view``, ``view@vN``); default: every logged feature.
    """
    wanted = None if features is None else {str(f) for f in features}
    found: dict[tuple[str, str], FeatureConsistency] = {}
    numeric: dict[tuple[str, str], bool] = {}
    compared = 0
    if log.num_rows == 0 or SERVED not in log.column_names:
        return ConsistencyReport(0, [])
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, served in enumerate(log.column(SERVED).to_pylist()):
        groups.setdefault(tuple(served or ()), []).append(index)
    for served, indices in groups.items():
        parsed = [parse_ref(ref) for ref in served]
        triples = [(r.view, int(r.version or 0), str(r.feature)) for r in parsed]
        pairs = [
            (ref, column)
            for ref, column in zip(served, log_columns(triples), strict=True)
            if wanted is None or not wanted.isdisjoint((ref, column, ref.split(":")[0], column.split(":")[0]))
        ]
        if not pairs:
            continue
        rows = log.take(pa.array(indices, pa.int64()))
        trained = training(_spine(rows), [ref for ref, _ in pairs])
        keys = _key_columns(rows)
        compared += rows.num_rows
        for ref, column in pairs:
            parts = parse_ref(ref)
            version = registry.version(parts.view, int(parts.version or 0))
            feature = str(parts.feature)
            name = f"{parts.view}_v{parts.version}__{feature}"
            offline_column = trained.column(name)
            report = found.setdefault((column, ref), FeatureConsistency(column, ref))
            numeric[(column, ref)] = _is_numeric(offline_column.type)
            _tally(
                report,
                keys,
                offline_column.to_pylist(),
                rows.column(column).to_pylist(),
                tolerance=allowed_tolerance(version, feature, 0.0),
                numeric=numeric[(column, ref)],
                owner=(version.view, version.version),
            )
    for key, report in found.items():
        report._conclude(numeric[key])
    return ConsistencyReport(compared, list(found.values()))


def _spine(rows: pa.Table) -> pa.Table:
    """The logged rows' entity keys, lookup instants and request inputs, as a training spine."""
    columns: dict[str, pa.ChunkedArray] = {}
    for name in _key_names(rows):
        columns[name] = rows.column(name)
    columns[SPINE_AT] = rows.column(SERVED_AT)
    for name in rows.column_names:
        if name.startswith(REQUEST_PREFIX):
            columns[name[len(REQUEST_PREFIX) :]] = rows.column(name)
    return pa.table(columns)


def _key_names(rows: pa.Table) -> list[str]:
    """Entity key columns: neither bookkeeping nor features, and holding values in these rows
    (a key of another lookup's entities is all null here)."""
    return [
        name
        for name in rows.column_names
        if not name.startswith("__fk") and ":" not in name and rows.column(name).null_count < rows.num_rows
    ]


def _key_columns(rows: pa.Table) -> dict[str, list[Any]]:
    return {name: rows.column(name).to_pylist() for name in _key_names(rows)}


def _is_numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype))


def _tally(
    report: FeatureConsistency,
    keys: dict[str, list[Any]],
    offline: list[Any],
    served: list[Any],
    *,
    tolerance: float,
    numeric: bool,
    owner: tuple[str, int],
) -> None:
    for row, (expected, got) in enumerate(zip(offline, served, strict=True)):
        report.rows += 1
        if expected is not None and got is not None and numeric:
            report._smape_sum += _smape_term(float(got), float(expected))
            report._smape_rows += 1
        if same(expected, got, tolerance):
            report.matched += 1
            continue
        if got is None:
            report.missing += 1
        elif expected is None:
            report.extra += 1
        else:
            report.mismatched += 1
        if len(report.examples) < EXAMPLES:
            entity = {k: v[row] for k, v in keys.items()}
            feature = report.served_from.rsplit(":", 1)[1]
            report.examples.append(Mismatch(entity, feature, owner[0], owner[1], expected, got))


def _smape_term(served: float, offline: float) -> float:
    """``2 |s - o| / (|s| + |o|)``: 0 for equal values (NaN and NaN too), 2 against a NaN or infinity."""
    if served == offline or (math.isnan(served) and math.isnan(offline)):
        return 0.0
    denominator = abs(served) + abs(offline)
    if math.isnan(denominator) or math.isinf(denominator):
        return 2.0
    return 2 * abs(served - offline) / denominator
