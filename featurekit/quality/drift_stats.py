"""The drift statistics, on the counts of shared bins (numeric) or categories (categorical).

Every statistic compares two vectors of counts over the same cells (histogram bins fixed per view
version, or category values). What each one is, exactly (``tests/test_drift.py`` checks them
against scipy):

* **PSI** (population stability index): ``sum((q_i - p_i) * ln(q_i / p_i))`` over the cells that
  hold a value on at least one side, with add-half smoothing ``p_i = (c_i + 0.5) / (n + 0.5 k)``
  (k such cells) so that a cell empty on one side counts as a large, finite change.
* **Jensen-Shannon distance**, base 2 (0 identical, 1 disjoint), on the unsmoothed shares: the
  value of ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
* **Kolmogorov-Smirnov statistic** on the bins: the largest gap between the two cumulative
  shares at a bin edge. It equals ``scipy.stats.ks_2samp``'s statistic on the samples with each
  value replaced by its bin, and never exceeds the statistic of the raw values.
* **L-infinity distance** (TFDV's drift measure for categoricals): the largest gap between the
  shares of one category.

**Noise levels.** A statistic of two finite samples of one distribution is not zero. So that a
small sample raises no false alarm, each statistic comes with the level that two samples of these
sizes drawn from one distribution exceed only 0.1% of the time (from the statistic's large-sample
null distribution: chi-squared for PSI and JS, Kolmogorov's for KS, normal for shares), and it
alarms only above both its threshold and that level.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

Z_999 = NormalDist().inv_cdf(0.999)
KS_999 = 1.949  # Kolmogorov's distribution at 0.999: c(alpha) of the two-sample KS test


def _counts(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"the two sides have {p.size} and {q.size} cells; they must share their bins")
    return p, q


def psi(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """The population stability index of ``q`` against ``p`` (add-half smoothing, see the module)."""
    p, q = _counts(p_counts, q_counts)
    used = (p > 0) | (q > 0)
    p, q = p[used], q[used]
    if not p.size or not p.sum() or not q.sum():
        return 0.0
    k = p.size
    ps = (p + 0.5) / (p.sum() + 0.5 * k)
    qs = (q + 0.5) / (q.sum() + 0.5 * k)
    return float(np.sum((qs - ps) * np.log(qs / ps)))


def _shares(p_counts: np.ndarray, q_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, q = _counts(p_counts, q_counts)
    return p / p.sum(), q / q.sum()


def js_distance(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """The Jensen-Shannon distance, base 2, between the two sides' shares."""
    p, q = _shares(p_counts, q_counts)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        cells = a > 0
        return float(np.sum(a[cells] * np.log2(a[cells] / m[cells])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def ks_binned(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """The Kolmogorov-Smirnov statistic on the bins (ordered cells)."""
    p, q = _shares(p_counts, q_counts)
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q)))) if p.size else 0.0


def linf(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """The L-infinity distance between the two sides' shares."""
    p, q = _shares(p_counts, q_counts)
    return float(np.max(np.abs(p - q))) if p.size else 0.0


def _chi2_999(df: int) -> float:
    """The 0.999 quantile of chi-squared with ``df`` degrees of freedom (Wilson-Hilferty)."""
    if df <= 0:
        return 0.0
    a = 2 / (9 * df)
    return df * (1 - a + Z_999 * math.sqrt(a)) ** 3


def _spread(n: int, m: int) -> float:
    return 1 / n + 1 / m


def psi_noise(cells: int, n: int, m: int) -> float:
    """PSI that samples of sizes n and m of one distribution exceed 0.1% of the time.

    For two samples of one distribution, PSI * nm / (n + m) is asymptotically chi-squared with
    cells - 1 degrees of freedom (PSI is the symmetrized KL divergence, twice the G statistic's share).
    """
    return _chi2_999(cells - 1) * _spread(n, m)


def js_noise(cells: int, n: int, m: int) -> float:
    """The same for the Jensen-Shannon distance (base 2): JS divergence in nats is about PSI / 8."""
    return math.sqrt(psi_noise(cells, n, m) / (8 * math.log(2)))


def ks_noise(n: int, m: int) -> float:
    """The two-sample KS statistic at the 0.999 level of Kolmogorov's distribution."""
    return KS_999 * math.sqrt(_spread(n, m))


def share_noise(cells: int, n: int, m: int) -> float:
    """The gap between two shares of one cell (the worst case share 1/2), Bonferroni over ``cells``."""
    z = NormalDist().inv_cdf(1 - 0.001 / max(cells, 1))
    return z * 0.5 * math.sqrt(_spread(n, m))
