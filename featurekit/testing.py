"""Checks for users' own test suites and CI.

>>> from featurekit.testing import assert_no_skew  # doctest: +SKIP
>>> assert_no_skew(store, ["driver_stats:conv_rate", "trip_risk"], request={"trip_km": 5.0})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from featurekit.references import FeatureRequest
from featurekit.skew import SkewReport
from featurekit.store import FeatureStore


def assert_no_skew(
    store: FeatureStore,
    features: Sequence[FeatureRequest] | FeatureRequest,
    **options: Any,
) -> SkewReport:
    """Run :meth:`FeatureStore.verify` and raise ``AssertionError`` listing every mismatch.

    ``options`` are those of ``verify`` (``entities``, ``sample``, ``request``, ``tolerance``, ``seed``).
    """
    report = store.verify(features, **options)
    if not report.ok:
        raise AssertionError(str(report))
    return report
