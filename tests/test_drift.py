"""Drift statistics against scipy's reference implementations, and the false-alarm / detection study."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from featurekit.quality import drift_stats
from featurekit.quality.drift import Thresholds, compare
from featurekit.quality.profile import ColumnProfile, Profile
from featurekit.quality.profiling import profile_table
from featurekit.quality.sides import edges_of


def _edges(values: np.ndarray, bins: int = 20) -> tuple[float, ...]:
    return tuple(float(e) for e in np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])))


def _histogram(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Bin 0 below edges[0], bin i in [edges[i-1], edges[i]), the last at or above edges[-1]."""
    return np.bincount(np.searchsorted(np.array(edges), values, side="right"), minlength=len(edges) + 1)


def _numeric(name: str, values: np.ndarray, edges: tuple[float, ...], nulls: int = 0) -> ColumnProfile:
    return ColumnProfile(
        name=name,
        kind="numeric",
        rows=values.size + nulls,
        nulls=nulls,
        edges=edges,
        histogram=tuple(int(c) for c in _histogram(values, edges)),
    )


def _profile(*columns: ColumnProfile, source: str = "side") -> Profile:
    return Profile(rows=columns[0].rows, columns={c.name: c for c in columns}, source=source)


def _psi_written_out(p: np.ndarray, q: np.ndarray) -> float:
    total = 0.0
    used = [i for i in range(len(p)) if p[i] or q[i]]
    k = len(used)
    for i in used:
        ps = (p[i] + 0.5) / (sum(p) + 0.5 * k)
        qs = (q[i] + 0.5) / (sum(q) + 0.5 * k)
        total += (qs - ps) * math.log(qs / ps)
    return total


@pytest.mark.parametrize("seed", range(5))
def test_statistics_equal_the_reference_implementations_on_the_same_bins(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 1, 3_000)
    cur = rng.normal(0.3 * seed, 1 + 0.1 * seed, 2_000)
    edges = (*_edges(ref, 12), 8.0, 9.0)  # two bins stay empty on both sides
    p, q = _histogram(ref, edges), _histogram(cur, edges)
    assert (p == 0).any()
    assert (q == 0).any()
    assert drift_stats.psi(p, q) == pytest.approx(_psi_written_out(p, q), rel=1e-12)
    assert drift_stats.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9, abs=1e-12)
    binned_ref = np.searchsorted(np.array(edges), ref, side="right")
    binned_cur = np.searchsorted(np.array(edges), cur, side="right")
    assert drift_stats.ks_binned(p, q) == pytest.approx(ks_2samp(binned_ref, binned_cur).statistic, abs=1e-12)
    assert drift_stats.ks_binned(p, q) <= ks_2samp(ref, cur).statistic + 1e-12
    assert drift_stats.linf(p, q) == pytest.approx(np.max(np.abs(p / p.sum() - q / q.sum())))


def test_a_bin_empty_on_one_side_counts_as_a_large_finite_change() -> None:
    p, q = np.array([100, 0, 100]), np.array([0, 100, 100])
    assert math.isfinite(drift_stats.psi(p, q))
    assert drift_stats.psi(p, q) > 2
    assert drift_stats.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert drift_stats.psi(np.array([5, 0]), np.array([5, 0])) == 0.0


def _study(shift: float, trials: int = 100, n: int = 5_000) -> int:
    """Seeded trials through the real profiles: the reference chooses its edges, the current side uses them."""
    alarms = 0
    for seed in range(trials):
        rng = np.random.default_rng(1_000 + seed)
        ref = profile_table(pa.table({"x": rng.normal(0, 1, n)}))
        cur = profile_table(pa.table({"x": rng.normal(shift, 1, n)}), edges=edges_of(ref))
        report = compare(ref, cur)
        alarms += report.features[0].status == "drift"
    return alarms


@pytest.mark.slow
def test_identical_distributions_raise_no_alarm_and_half_a_deviation_is_always_caught() -> None:
    assert _study(0.0) <= 1
    assert _study(0.5) == 100


def test_small_samples_are_insufficient_data_not_alarms() -> None:
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(0, 1, 50), rng.normal(3, 1, 50)
    edges = _edges(ref)
    feature = compare(_profile(_numeric("x", ref, edges)), _profile(_numeric("x", cur, edges))).features[0]
    assert feature.status == "insufficient data"
    assert all(s.status == "insufficient data" for s in feature.statistics)


def test_a_small_sample_above_the_threshold_but_within_its_noise_is_no_alarm() -> None:
    rng = np.random.default_rng(3)
    alarms = 0
    for _ in range(50):
        ref, cur = rng.normal(0, 1, 150), rng.normal(0, 1, 150)
        edges = _edges(ref)
        feature = compare(_profile(_numeric("x", ref, edges)), _profile(_numeric("x", cur, edges))).features[0]
        psi = next(s for s in feature.statistics if s.name == "psi")
        alarms += feature.status == "drift"
        assert psi.noise > psi.threshold  # at 150 values, 20 bins of noise exceed PSI 0.2
    assert alarms <= 1


def test_null_rate_change_drifts_on_its_own() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 10_000)
    edges = _edges(values)
    ref = _profile(_numeric("x", values[:5_000], edges, nulls=50))
    cur = _profile(_numeric("x", values[5_000:], edges, nulls=2_000))
    feature = compare(ref, cur).features[0]
    assert feature.status == "drift"
    assert [s.name for s in feature.statistics if s.status == "drift"] == ["null_rate"]


def _categorical(name: str, counts: dict[str, int], other: int = 0) -> ColumnProfile:
    top = tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return ColumnProfile(name=name, kind="categorical", rows=sum(counts.values()) + other, top=top, other=other)


def test_categoricals_compare_on_the_union_of_their_values() -> None:
    ref = _profile(_categorical("city", {"paris": 500, "rome": 300, "oslo": 200}))
    cur = _profile(_categorical("city", {"paris": 300, "rome": 300, "lima": 400}))
    feature = compare(ref, cur).features[0]
    assert feature.cells == ("paris", "rome", "oslo", "lima")
    assert feature.statistic("linf") == pytest.approx(0.4)
    assert feature.statistic("new_categories") == pytest.approx(0.4)
    assert feature.statistic("js") == pytest.approx(jensenshannon([500, 300, 200, 0], [300, 300, 0, 400], base=2))
    assert feature.status == "drift"
    same = compare(ref, _profile(_categorical("city", {"paris": 498, "rome": 303, "oslo": 199}))).features[0]
    assert same.status == "ok"


def test_profiles_on_different_edges_are_incomparable_not_wrong() -> None:
    values = np.arange(1_000, dtype=float)
    ref = _profile(_numeric("x", values, (100.0, 500.0)))
    cur = _profile(_numeric("x", values, (200.0, 600.0)))
    feature = compare(ref, cur).features[0]
    assert feature.status == "incomparable"
    assert "edges" in feature.message


def test_fail_on_compares_the_score_above_its_noise() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.5, 1, 20_000)
    edges = _edges(ref)
    report = compare(_profile(_numeric("x", ref, edges)), _profile(_numeric("x", cur, edges)))
    score = report.features[0].score
    assert score is not None
    assert 0.1 < score < 1.0
    assert report.fails(score / 2)
    assert not report.fails(score * 2)
    frame = report.to_pandas()
    assert list(frame["feature"]) == ["x"]
    assert frame.loc[0, "psi"] == pytest.approx(score)


def test_thresholds_are_the_callers() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.1, 1, 20_000)
    edges = _edges(ref)
    loose = compare(_profile(_numeric("x", ref, edges)), _profile(_numeric("x", cur, edges)))
    strict = compare(
        _profile(_numeric("x", ref, edges)),
        _profile(_numeric("x", cur, edges)),
        thresholds=Thresholds(psi=0.001, js=0.001, ks=0.001),
    )
    assert loose.features[0].status == "ok"
    assert strict.features[0].status == "drift"


def test_html_report_escapes_names_and_draws_a_chart_per_drifted_feature(tmp_path) -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(0, 1, 5_000), rng.normal(2, 1, 5_000)
    edges = _edges(ref)
    evil = "<script>alert(1)</script>"
    report = compare(
        _profile(_numeric(evil, ref, edges), _numeric("calm", ref, edges), source="ref <b>"),
        _profile(_numeric(evil, cur, edges), _numeric("calm", ref, edges), source="cur"),
    )
    page = report.to_html(tmp_path / "drift.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "ref &lt;b&gt;" in page
    assert page.count("<svg") == 1
    assert 'role="img"' in page
    assert "aria-label=" in page
