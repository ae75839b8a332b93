"""The regression gate's statistics: the exact Mann-Whitney test over run medians, the signed-rank test over
paired rounds (:mod:`benchmarks.gate.signed_rank`), and the intervals of the ratio they imply; one record's
:class:`Verdict`. Pure NumPy, no records or files: :mod:`benchmarks.gate.compare` has the method and the
reasons for its defaults, :mod:`benchmarks.gate.checks` the decision over many records,
:mod:`benchmarks.gate.views` the rendering of the verdicts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tfbench.benchmarks.gate import signed_rank

DEFAULT_ALPHA = 0.01
# Slowdown the gate is meant to catch, as a fraction; only a ratio whose interval lies above 1 + threshold/2
# fails. Chosen with the simulation quoted in the module docstring.
DEFAULT_THRESHOLD = 0.03
# One run per side cannot see the 5-50 % process-to-process noise: only flag what is confidently > 10 % slower.
SINGLE_RUN_THRESHOLD = 0.20
# Above this many (base x candidate) pairs the rank statistic's normal approximation is used (it is then
# accurate to well under 1e-3), and pooled samples are thinned evenly to keep the pairwise ratios in memory.
EXACT_MAX_PAIRS = 40_000
MAX_SAMPLES_PER_SIDE = 1_000
# With ties, up to this many values in all the p-value is the exact permutation one (a subset-sum table of
# about values^3 / 4 cells); beyond it the normal approximation with the tie correction.
EXACT_TIES_MAX_VALUES = 60
SINGLE_RUN_NOTE = ("single run per side: the process-to-process noise is not measured, so this comparison is "
                   "less reliable; compare runs of one job (`tfbench ab`) or ratios (`--metric speedup`)")


# ---------------------------------------------------------------------------------------------------------
# The statistics: exact Mann-Whitney test and the interval of the ratio it implies. Pure NumPy.
# ---------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=128)
def _null_lower_cdf(m: int, n: int) -> np.ndarray:
    """P(U <= u) for u = 0 .. m*n//2 under H0 (no ties), U the Mann-Whitney count of one side's wins.

    The counts are the coefficients of the Gaussian binomial [m+n choose m]_q =
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), computed as power series truncated after the lower half (the
    distribution is symmetric, and the lower coefficients are small integers: exact in float64).
    """
    size = m * n // 2 + 1
    coefficients = np.zeros(size)
    coefficients[0] = 1.0
    for i in range(1, m + 1):
        shift = n + i
        if shift < size:
            coefficients[shift:] = coefficients[shift:] - coefficients[:size - shift].copy()
        # dividing by (1 - q^i) is a running sum along each residue class modulo i
        padded = np.zeros(-(-size // i) * i)
        padded[:size] = coefficients
        coefficients = np.cumsum(padded.reshape(-1, i), axis=0).reshape(-1)[:size]
    return np.minimum(np.cumsum(coefficients) / math.comb(m + n, m), 1.0)


def _normal_lower_cdf(u: float, m: int, n: int, tie_term: float) -> float:
    """P(U <= u) by the normal approximation with continuity and tie corrections."""
    total = m + n
    variance = m * n / 12.0 * ((total + 1) - tie_term / (total * (total - 1)))
    if variance <= 0:
        return 1.0
    return 0.5 * math.erfc(-((u + 0.5 - m * n / 2.0) / math.sqrt(variance)) / math.sqrt(2.0))


def _lower_cdf(u: float, m: int, n: int, tie_term: float = 0.0) -> float:
    """P(U <= u) under H0 without ties (exact up to :data:`EXACT_MAX_PAIRS` pairs, else the normal
    approximation)."""
    if m * n > EXACT_MAX_PAIRS:
        return _normal_lower_cdf(u, m, n, tie_term)
    u = math.ceil(u - 1e-9)
    if u < 0:
        return 0.0
    table = _null_lower_cdf(m, n)
    return float(table[min(u, len(table) - 1)]) if u < len(table) else 1.0


def _tied_two_sided_p(base: np.ndarray, cand: np.ndarray) -> float:
    """The exact two-sided p-value with ties: the permutation distribution of the candidate's mid-rank sum,
    given the tied values (Hollander & Wolfe ch. 4.1, "ties"), counted over subsets of the pooled mid-ranks.

    Mid-ranks are multiples of 1/2, so twice the rank sum is an integer and the count is a subset-sum table.
    """
    pooled = np.concatenate([base, cand])
    _, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    doubled = (2 * upper - counts + 1)[inverse]  # 2 x mid-rank of each value
    n = cand.size
    top = int(np.sort(doubled)[-n:].sum())
    table = np.zeros((n + 1, top + 1))  # table[k, s]: subsets of k values whose doubled ranks sum to s
    table[0, 0] = 1.0
    for value in doubled.astype(int):
        table[1:, value:] = table[1:, value:] + table[:-1, :top + 1 - value]
    distribution = table[n] / table[n].sum()
    observed = int(doubled[base.size:].sum())
    return min(1.0, 2.0 * min(float(distribution[:observed + 1].sum()), float(distribution[observed:].sum())))


def smallest_p_value(m: int, n: int) -> float:
    """The smallest two-sided p-value the rank test can give with m and n values: 2 / C(m+n, m)."""
    return min(1.0, 2.0 * _lower_cdf(0, m, n))


def _interval_rank(m: int, n: int, alpha: float) -> int:
    """Largest k with P(U <= k-1) <= alpha/2: the interval is the k-th smallest to k-th largest difference.

    0 when no k works (too few values for this alpha): the interval is then unbounded.
    """
    low, high = 0, m * n // 2 + 1  # P(U <= low-1) <= alpha/2 holds for k = low; find the largest such k
    while high - low > 1:
        middle = (low + high) // 2
        if _lower_cdf(middle - 1, m, n) <= alpha / 2:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class Verdict:
    """The comparison of one record.

    ``ratio``, ``low``, ``high`` are candidate / baseline of the metric (for step time > 1 is slower; for a
    higher-is-better metric < 1 is worse); ``p_value`` is None when no test was made.
    """

    status: str
    ratio: float
    low: float
    high: float
    p_value: float | None
    n_base: int
    n_cand: int
    # "runs" (run medians compared), "pairs" (paired rounds), "samples" (one run per side) or "values" (one
    # number per side)
    mode: str
    threshold: float
    baseline: float  # the median of the runs' medians
    candidate: float
    note: str = ""
    higher_is_better: bool = False

    @property
    def worst_case(self) -> float:
        """The slowdown factor (> 1 = worse) the interval still allows: what "unchanged" cannot rule out."""
        if self.higher_is_better:
            return math.inf if self.low <= 0 else 1.0 / self.low
        return self.high


def _positive(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"{what}: no finite values")
    if np.any(array <= 0):
        raise ValueError(f"{what}: values must be positive to compare ratios")
    return array


def _median(values: np.ndarray) -> float:
    """np.median without its overhead (this runs thousands of times per calibration)."""
    ordered = np.sort(values)
    return float(ordered[(ordered.size - 1) // 2] + ordered[ordered.size // 2]) / 2.0


def _thin(values: np.ndarray, limit: int) -> np.ndarray:
    if values.size <= limit:
        return values
    return values[np.linspace(0, values.size - 1, limit).round().astype(int)]


def rank_test(base: np.ndarray, cand: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Two-sided Mann-Whitney p-value and the (1 - alpha) interval of the shift, on log values.

    Returns ``(p_value, low, high)`` with ``low``/``high`` the interval of log(candidate) - log(baseline)
    (``-inf``/``inf`` when the sample sizes cannot reach the level).
    """
    m, n = base.size, cand.size
    differences = np.sort((cand[None, :] - base[:, None]).reshape(-1))
    wins = float(np.count_nonzero(differences > 0)) + 0.5 * float(np.count_nonzero(differences == 0))
    _, tie_counts = np.unique(np.concatenate([base, cand]), return_counts=True)
    tie_term = float(np.sum(tie_counts.astype(float) ** 3 - tie_counts))
    if tie_term and m + n <= EXACT_TIES_MAX_VALUES:
        p_value = _tied_two_sided_p(base, cand)
    else:
        p_value = min(1.0, 2.0 * _lower_cdf(min(wins, m * n - wins), m, n, tie_term))
    k = _interval_rank(m, n, alpha)
    if k == 0:
        return p_value, -math.inf, math.inf
    return p_value, float(differences[k - 1]), float(differences[m * n - k])


def _status(p_value: float | None, worse_low: float, worse_high: float, threshold: float, alpha: float) -> str:
    """Decide in the 'worse factor' orientation (> 1 is worse) from the interval and the test."""
    significant = p_value is None or p_value < alpha
    margin = 1.0 + threshold / 2.0
    if significant and worse_low > margin:
        return "regressed"
    if significant and worse_high < 1.0 / margin:
        return "improved"
    return "unchanged"


def compare_samples(base_runs: Sequence[Sequence[float]], cand_runs: Sequence[Sequence[float]],
                    threshold: float | None = None, alpha: float = DEFAULT_ALPHA,
                    higher_is_better: bool = False) -> Verdict:
    """Compare runs of one record: each run is the array of its samples (one process), all values > 0.

    With >= 2 runs per side the run medians are compared (the module docstring has the rule); with one run on
    either side the pooled samples are, with :data:`SINGLE_RUN_THRESHOLD` by default and a note saying so.
    ``threshold`` is a fraction (0.05 = 5 %).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    base = [_positive(run, "baseline run") for run in base_runs]
    cand = [_positive(run, "candidate run") for run in cand_runs]
    if not base or not cand:
        raise ValueError("each side needs at least one run")
    base_medians = np.array([_median(run) for run in base])
    cand_medians = np.array([_median(run) for run in cand])
    base_value, cand_value = _median(base_medians), _median(cand_medians)
    ratio = cand_value / base_value
    if len(base) >= 2 and len(cand) >= 2:
        mode, note = "runs", ""
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        base_values, cand_values = np.log(base_medians), np.log(cand_medians)
    else:
        mode, note = "samples", SINGLE_RUN_NOTE
        threshold = SINGLE_RUN_THRESHOLD if threshold is None else threshold
        base_values = _thin(np.log(np.concatenate(base)), MAX_SAMPLES_PER_SIDE)
        cand_values = _thin(np.log(np.concatenate(cand)), MAX_SAMPLES_PER_SIDE)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    m, n = base_values.size, cand_values.size
    if m * n > 1 and smallest_p_value(m, n) >= alpha:
        reason = (f"{len(base)} + {len(cand)} runs cannot reach p < {alpha:g} (the smallest p-value is "
                  f"{smallest_p_value(m, n):.3g}); give each side >= {min_runs(alpha)} runs")
        return Verdict("inconclusive", ratio, 0.0, math.inf, None, len(base), len(cand), mode, threshold,
                       base_value, cand_value, reason, higher_is_better)
    if m * n == 1:  # one number per side: no test, the threshold alone decides
        low = high = ratio
        p_value = None
        mode, note = "values", "one value per side: decided on the threshold alone, no test"
    else:
        p_value, log_low, log_high = rank_test(base_values, cand_values, alpha)
        low, high = math.exp(log_low), math.exp(log_high)
    worse_low, worse_high = (1.0 / high, 1.0 / low if low > 0 else math.inf) if higher_is_better else (low, high)
    status = _status(p_value, worse_low, worse_high, threshold, alpha)
    return Verdict(status, ratio, low, high, p_value, len(base), len(cand), mode, threshold, base_value, cand_value,
                   note, higher_is_better)


def min_runs(alpha: float) -> int:
    """Fewest runs per side (equal sides) with which the rank test can reach p < alpha."""
    runs = 2
    while smallest_p_value(runs, runs) >= alpha:
        runs += 1
    return runs


def compare_pairs(base_runs: Sequence[Sequence[float]], cand_runs: Sequence[Sequence[float]],
                  threshold: float | None = None, alpha: float = DEFAULT_ALPHA,
                  higher_is_better: bool = False) -> Verdict:
    """Compare paired runs of one record: ``base_runs[i]`` and ``cand_runs[i]`` ran at the same time (round i).

    Each round gives the log-ratio of the two run medians; the signed-rank test and the Hodges-Lehmann interval
    of those log-ratios decide, under the rule of :func:`compare_samples` (the module docstring has it).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if len(base_runs) != len(cand_runs):
        raise ValueError(f"paired runs need as many baseline runs as candidate runs, got {len(base_runs)} and "
                         f"{len(cand_runs)}")
    if not base_runs:
        raise ValueError("no paired runs")
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    base_medians = np.array([_median(_positive(run, "baseline run")) for run in base_runs])
    cand_medians = np.array([_median(_positive(run, "candidate run")) for run in cand_runs])
    base_value, cand_value = _median(base_medians), _median(cand_medians)
    log_ratios = np.log(cand_medians) - np.log(base_medians)
    pairs = log_ratios.size
    if signed_rank.smallest_p_value(pairs) >= alpha:
        reason = (f"{pairs} paired rounds cannot reach p < {alpha:g} (the smallest p-value is "
                  f"{signed_rank.smallest_p_value(pairs):.3g}); give >= {signed_rank.min_pairs(alpha)} rounds")
        return Verdict("inconclusive", cand_value / base_value, 0.0, math.inf, None, pairs, pairs, "pairs",
                       threshold, base_value, cand_value, reason, higher_is_better)
    p_value, estimate, log_low, log_high = signed_rank.signed_rank_test(log_ratios, alpha)
    low, high = math.exp(log_low), math.exp(log_high)
    worse_low, worse_high = (1.0 / high, 1.0 / low if low > 0 else math.inf) if higher_is_better else (low, high)
    status = _status(p_value, worse_low, worse_high, threshold, alpha)
    return Verdict(status, math.exp(estimate), low, high, p_value, pairs, pairs, "pairs", threshold, base_value,
                   cand_value, "", higher_is_better)
