"""The paired decision of the duet schedule: Wilcoxon signed-rank test and its Hodges-Lehmann interval.

Under ``tfbench ab --schedule duet`` the baseline and the candidate of one round run at the same time, so
whatever slows the machine in that round slows both: the round's ratio candidate / baseline cancels it. The
rounds give ``n`` paired log-ratios ``d_i``, and the question is whether they are centred above zero:

* the test: the two-sided Wilcoxon signed-rank test of ``d`` against 0. Exact (the null distribution of the
  positive-rank sum counted by subset sums) for up to :data:`EXACT_MAX_PAIRS` pairs without ties or zeros;
  otherwise the normal approximation with the tie and continuity corrections (zeros dropped first, as
  Wilcoxon proposed), as in Hollander & Wolfe, *Nonparametric Statistical Methods*, ch. 3;
* the interval: the distribution-free (1 - alpha) interval of the centre of ``d`` that inverts the same test,
  the k-th smallest to k-th largest of the ``n (n + 1) / 2`` Walsh averages ``(d_i + d_j) / 2, i <= j``
  (Tukey; Hollander & Wolfe ch. 3.2); its point estimate is their median (Hodges-Lehmann).

Pure NumPy; tested against SciPy's ``wilcoxon``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Up to this many pairs (and no ties or zeros) the null distribution is counted exactly: 2^50 subsets are
# still exact integers in float64.
EXACT_MAX_PAIRS = 50


@functools.lru_cache(maxsize=64)
def null_lower_cdf(n: int) -> np.ndarray:
    """P(W+ <= w) for w = 0 .. n(n+1)/2 under H0, W+ the sum of the ranks of the positive differences.

    The number of subsets of {1..n} with sum w is the coefficient of q^w in prod_i (1 + q^i).
    """
    total = n * (n + 1) // 2
    counts = np.zeros(total + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return np.minimum(np.cumsum(counts) / 2.0 ** n, 1.0)


def smallest_p_value(n: int) -> float:
    """The smallest two-sided p-value of the exact test with n pairs: 2 / 2^n."""
    return min(1.0, 2.0 / 2.0 ** n) if n > 0 else 1.0


def min_pairs(alpha: float) -> int:
    """Fewest pairs with which the exact test can reach p < alpha."""
    pairs = 1
    while smallest_p_value(pairs) >= alpha:
        pairs += 1
    return pairs


def _ranks(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Mid-ranks of ``values`` (1-based) and the tie term sum(t^3 - t) over groups of ties."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size)
    ordered = values[order]
    start, tie_term = 0, 0.0
    while start < values.size:
        end = start
        while end + 1 < values.size and ordered[end + 1] == ordered[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        size = end - start + 1
        tie_term += size ** 3 - size
        start = end + 1
    return ranks, tie_term


def p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of the signed-rank test that ``differences`` are centred on 0."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]  # Wilcoxon's treatment of zeros: drop them
    n = d.size
    if n == 0:
        return 1.0
    ranks, tie_term = _ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    total = n * (n + 1) / 2.0
    if tie_term == 0 and n <= EXACT_MAX_PAIRS:
        w = min(w_plus, total - w_plus)  # an integer without ties
        return min(1.0, 2.0 * float(null_lower_cdf(n)[int(round(w))]))
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - tie_term / 48.0
    if variance <= 0:
        return 1.0
    distance = max(abs(w_plus - total / 2.0) - 0.5, 0.0)  # continuity correction
    return min(1.0, math.erfc(distance / math.sqrt(variance) / math.sqrt(2.0)))


def _interval_rank(n: int, alpha: float) -> int:
    """Largest k with P(W+ <= k-1) <= alpha/2 (0 if none): the interval is the k-th smallest to k-th largest
    Walsh average."""
    if n <= EXACT_MAX_PAIRS:
        table = null_lower_cdf(n)
        below = np.nonzero(table <= alpha / 2)[0]  # w with P(W+ <= w) <= alpha/2
        return int(below[-1]) + 1 if below.size else 0
    # Normal approximation of the same rank (Hollander & Wolfe eq. 3.24).
    z = _normal_quantile(1 - alpha / 2)
    mean, sd = n * (n + 1) / 4.0, math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    return max(0, int(math.floor(mean - z * sd)))


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on erfc (no SciPy at run time)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * math.erfc(-middle / math.sqrt(2.0)) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def walsh_averages(differences: np.ndarray) -> np.ndarray:
    d = np.asarray(differences, dtype=float)
    i, j = np.triu_indices(d.size)
    return np.sort((d[i] + d[j]) / 2.0)


def signed_rank_test(differences: np.ndarray, alpha: float) -> tuple[float, float, float, float]:
    """``(p_value, estimate, low, high)`` for paired differences (log-ratios): the signed-rank p-value, the
    Hodges-Lehmann estimate of their centre and its (1 - alpha) interval (``-inf``/``inf`` when ``n`` pairs
    cannot reach the level)."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise ValueError("no pairs to test")
    averages = walsh_averages(d)
    estimate = float(np.median(averages))
    k = _interval_rank(d.size, alpha)
    if k == 0:
        return p_value(d), estimate, -math.inf, math.inf
    return p_value(d), estimate, float(averages[k - 1]), float(averages[averages.size - k])
