"""``tfbench compare``: is the candidate slower than the baseline? A regression gate that does not cry wolf.

The noise this gate is built for
--------------------------------
On a shared machine the same benchmark's median moves 5-50 % from one *process* to the next (thread placement,
memory layout, the neighbours' load), while the samples *within* one process are tight and autocorrelated. A
per-sample test between two processes therefore sees the between-process shift as a highly significant
difference, and a fixed "10 % slower than the stored number" rule fails at random. So:

**The unit of replication is the run (one process).** Each side gives several runs (``tfbench ab`` alternates
A B A B ... in one job, so drift hits both sides alike); a run is summarised by its median step time, and the
two sets of run medians are compared:

* the test: the exact two-sided Mann-Whitney (Wilcoxon rank-sum) test on the run medians. It is exact for any
  noise distribution as long as runs are exchangeable, which the interleaving is there to make true (with tied
  values, the exact permutation distribution given the ties; for large samples the normal approximation with
  the tie and continuity corrections);
* the effect: ``ratio`` = median of the candidate's run medians / median of the baseline's (> 1 = slower);
* its interval: the distribution-free (1 - alpha) confidence interval of the ratio that inverts the same test
  (Hodges-Lehmann / Moses: order statistics of the m x n candidate/baseline run-median ratios; see
  Hollander & Wolfe, *Nonparametric Statistical Methods*, ch. 4). Exact, hence deterministic: no bootstrap,
  no seed (a bootstrap over 5 runs per side badly under-covers).

A record is **regressed** only if BOTH the test is significant (``p < alpha``) AND the lower bound of the
interval exceeds ``1 + threshold / 2``; **improved** symmetrically (``p < alpha`` and the upper bound below
``1 / (1 + threshold / 2)``); otherwise **unchanged**. Read ``threshold`` as "the slowdown the gate is meant to
catch": a true slowdown of ``threshold`` or more is caught when the noise allows it (``tfbench calibrate-gate``
measures how often), while a slowdown below ``threshold / 2`` fails the gate with probability at most
``alpha / 2`` per record, however many samples were taken (a significant 1 % change does not fail a PR).

Defaults: ``alpha = 0.01``, ``threshold = 3 %`` and ``tfbench ab --rounds 10``. Simulated gates (the two
records of ``--profile gate``, lognormal run-to-run noise of the run medians, 80 % of its variance shared by
the records of one process as measured here; 2000 fresh gates per cell, 10 rounds, threshold 3 %):

    run-to-run noise (sd of log run median)   1 %    2 %    3 %    5 %    10 %   18 %
    A/A false alarms per gate                 0      0      0      0.2 %  0.15 % 0.7 %
    5 % slowdown caught                       100 %  84 %   46 %   17 %   4 %    2 %
    10 % slowdown caught                      100 %  100 %  99.9 % 81 %   23 %   7 %
    20 % slowdown caught                      100 %  100 %  100 %  100 %  83 %   30 %

* The A/A rate is bounded whatever the noise: the exact test gives <= alpha/2 per record and direction, so
  <= 1 % for the gate's 2 records (a gate of more records needs a smaller alpha for the same bound).
* The detection targets (10 % -> 95 %, 5 % -> 80 %) hold when the run-to-run noise is <= ~2 %. Rounds are the
  lever: at 3 % noise 6 rounds catch a 10 % slowdown 91 % of the time, 10 rounds 99.9 %. Ten rounds are 20
  processes of ~9.4 s (``--profile gate``, measured here), ~190 s: within the 5-minute budget.
* A threshold of 3 % rather than 5 % catches a 5 % slowdown at 2 % noise 84 % of the time instead of 54 %,
  while a change below 1.5 % still fails with probability <= alpha/2.
* On this shared 2-core machine, with other jobs running, the run medians scatter by 15-20 % (26 processes
  per condition, ``tfbench calibrate-gate``): there the same gate measured 0.45 % A/A false alarms and caught
  1 % / 4 % / 40 % of 5 / 10 / 20 % slowdowns. No gate that fits in 5 minutes does much better at that noise,
  and this one says so rather than guessing: "unchanged" means "no slowdown proven", and the summary states
  how large a slowdown the intervals still allow.
* With alpha = 0.01 a side needs at least 5 runs for the test to be able to reach significance at all: fewer
  is refused (``inconclusive``), never guessed.

**One run per side** (two stored files): nothing measures the between-process noise, so the fallback is the
same rank test and interval over the pooled *samples*, with a wider default threshold (20 %: fail only if
confidently more than 10 % slower); the output says that such a comparison is less reliable. Absolute times
only compare within one job or one machine.

Other metrics: ``throughput`` is the inverse of step time (higher is better, same test). ``speedup``
(``speedup_vs_eager``) and ``roofline`` (``fraction_of_floor``: the step's roofline floor over its time; older
files, which have no floor, have no value for it) are *ratios*, which travel between machines
(the machine's speed cancels out), so they can compare a stored baseline from another machine; with one value
per side they are decided on the threshold alone (plus non-overlapping intervals for the speedup).
``accuracy`` (``test_accuracy`` of accuracy/recipe records) regresses if it drops by more than
``--accuracy-tolerance`` (absolute, default 0.01).

**Paired rounds** (``tfbench ab --schedule duet``, ``tfbench compare --paired``): the i-th run of each side ran
at the same time, so each round gives one ratio candidate / baseline in which the machine's state cancels. The
decision is then the Wilcoxon signed-rank test of the rounds' log-ratios with the Hodges-Lehmann interval
(:mod:`benchmarks.gate.signed_rank`), under the same rule (p < alpha and the interval beyond 1 + threshold/2).
With alpha = 0.01 it needs at least 8 rounds.

Records are matched on :data:`benchmarks.results.KEY_FIELDS`; only status "ok" records are compared. A record
that is ``ok`` in every baseline run that has it and ``failed`` in a candidate run is **broken**: the PR broke
it; it fails the gate and heads the summary with the candidate's error. Any other record on one side only is
"missing" (reported, not a failure). Exit status: 1 if a record regressed or broke, else 0; 2 on bad input.
``--json FILE`` writes the decision table for machines (record, ratio, interval, p, verdict).
"""

from __future__ import annotations

import argparse
import functools
import glob
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tabulate import tabulate

from tfbench.benchmarks.gate import signed_rank
from tfbench.benchmarks.results import KEY_FIELDS, ResultsError, expand, load, record_id, write_json_atomic
from tfbench.errors import UsageError

DEFAULT_ALPHA = 0.01
# Slowdown the gate is meant to catch, as a fraction; only a ratio whose interval lies above 1 + threshold/2
# fails. Chosen with the simulation quoted in the module docstring.
DEFAULT_THRESHOLD = 0.03
# One run per side cannot see the 5-50 % process-to-process noise: only flag what is confidently > 10 % slower.
SINGLE_RUN_THRESHOLD = 0.20
DEFAULT_ACCURACY_TOLERANCE = 0.01
# Above this many (base x candidate) pairs the rank statistic's normal approximation is used (it is then
# accurate to well under 1e-3), and pooled samples are thinned evenly to keep the pairwise ratios in memory.
EXACT_MAX_PAIRS = 40_000
MAX_SAMPLES_PER_SIDE = 1_000
# With ties, up to this many values in all the p-value is the exact permutation one (a subset-sum table of
# about values^3 / 4 cells); beyond it the normal approximation with the tie correction.
EXACT_TIES_MAX_VALUES = 60

TEST_BASIS = {"runs": "Mann-Whitney test over run medians",
              "pairs": "Wilcoxon signed-rank test over the rounds' paired ratios",
              "samples": "Mann-Whitney test over samples, one run per side",
              "values": "one value per side: no test"}
# Worst first: the order of the table, and of the summary's head.
STATUSES = ("broken", "changed results", "regressed", "improved", "inconclusive", "unchanged", "missing")
# "changed results": the results check differs (benchmarks.gate.checks)
FAILING_STATUSES = ("broken", "changed results", "regressed")
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


# ---------------------------------------------------------------------------------------------------------
# Records and documents
# ---------------------------------------------------------------------------------------------------------

def _step_time_samples(record: dict) -> np.ndarray | None:
    summary = record["metrics"].get("step_time_s")
    if not isinstance(summary, dict):
        return None
    samples = summary.get("samples") or ([summary["median"]] if summary.get("median") is not None else [])
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return values if values.size else None


def _throughput_samples(record: dict) -> np.ndarray | None:
    times = _step_time_samples(record)
    if times is None:
        return None
    # Samples/s per timed step; scaled like the harness's own throughput_sps when the record has it.
    reported = record["metrics"].get("throughput_sps")
    scale = reported * float(np.median(times)) if _finite_positive(reported) else float(record["batch_size"])
    return scale / times


def _finite_positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _scalar(name: str) -> Callable[[dict], np.ndarray | None]:
    def extract(record: dict) -> np.ndarray | None:
        value = record["metrics"].get(name)
        return np.array([float(value)]) if _finite_positive(value) else None
    return extract


@dataclass(frozen=True)
class Metric:
    name: str
    extract: Callable[[dict], np.ndarray | None]  # a run's values of one record, or None if it has none
    higher_is_better: bool
    kinds: tuple[str, ...] | None = None  # record kinds it applies to (None: any record that has the value)
    portable: bool = False  # a ratio that travels between machines


METRICS = {
    "step_time": Metric("step_time", _step_time_samples, False),
    "throughput": Metric("throughput", _throughput_samples, True),
    "speedup": Metric("speedup", _scalar("speedup_vs_eager"), True, portable=True),
    "roofline": Metric("roofline", _scalar("fraction_of_floor"), True, portable=True),
    "accuracy": Metric("accuracy", _scalar("test_accuracy"), True, kinds=("accuracy", "recipe")),
}


@dataclass(frozen=True)
class Row:
    """One record's line in the comparison: its verdict, or why it was not compared."""

    record: str
    metric: str
    status: str
    baseline: float | None = None
    candidate: float | None = None
    verdict: Verdict | None = None
    note: str = ""


def record_key(record: dict) -> tuple:
    return tuple(record.get(field) for field in KEY_FIELDS)


def _reference(record: dict) -> float | None:
    """The median time of the run's reference kernel, timed beside this record (gate profile), if any."""
    summary = record["metrics"].get("reference_s")
    median = summary.get("median") if isinstance(summary, dict) else None
    return float(median) if _finite_positive(median) else None


def _doc_values(doc: dict, metric: Metric) -> dict[tuple, tuple[np.ndarray, float | None]]:
    """One run's values of each record it has "ok", with its reference-kernel time (None if it has none)."""
    values = {}
    for record in doc["records"]:
        if record["status"] != "ok" or (metric.kinds is not None and record["kind"] not in metric.kinds):
            continue
        extracted = metric.extract(record)
        if extracted is not None:
            values[record_key(record)] = (extracted, _reference(record))
    return values


def _runs_by_key(docs: Sequence[dict], metric: Metric) -> tuple[dict[tuple, list[np.ndarray]], dict, dict, dict]:
    """Per record key: the values of each run that has it "ok", a sample record, the other statuses seen,
    and each run's reference-kernel time (None where the run has none)."""
    runs: dict[tuple, list[np.ndarray]] = {}
    examples: dict[tuple, dict] = {}
    not_ok: dict[tuple, str] = {}
    references: dict[tuple, list[float | None]] = {}
    for doc in docs:
        for record in doc["records"]:
            if metric.kinds is not None and record["kind"] not in metric.kinds:
                continue
            key = record_key(record)
            examples.setdefault(key, record)
            if record["status"] != "ok":
                not_ok[key] = f"{record['status']}" + (f": {record['reason']}" if record.get("reason") else "")
        for key, (values, reference) in _doc_values(doc, metric).items():
            runs.setdefault(key, []).append(values)
            references.setdefault(key, []).append(reference)
    return runs, examples, not_ok, references


def _paired_runs(base_docs: Sequence[dict], cand_docs: Sequence[dict], metric: Metric,
                 key: tuple) -> tuple[list[np.ndarray], list, list[np.ndarray], list]:
    """The rounds in which both sides have ``key`` "ok": (baseline runs, their references, candidate runs,
    theirs), aligned round by round."""
    base_runs, base_refs, cand_runs, cand_refs = [], [], [], []
    for base_doc, cand_doc in zip(base_docs, cand_docs):
        base, cand = _doc_values(base_doc, metric).get(key), _doc_values(cand_doc, metric).get(key)
        if base is not None and cand is not None:
            base_runs.append(base[0])
            base_refs.append(base[1])
            cand_runs.append(cand[0])
            cand_refs.append(cand[1])
    return base_runs, base_refs, cand_runs, cand_refs


def broken_records(base_docs: Sequence[dict], cand_docs: Sequence[dict]) -> dict[tuple, str]:
    """Records the candidate broke: ``failed`` in some candidate run, ``ok`` in every baseline run that has
    them (and in one at least). Key -> a note with the candidate's first error and how often it failed."""
    base_statuses: dict[tuple, set[str]] = {}
    for doc in base_docs:
        for record in doc["records"]:
            base_statuses.setdefault(record_key(record), set()).add(record["status"])
    failures: dict[tuple, list[str]] = {}
    for doc in cand_docs:
        for record in doc["records"]:
            if record["status"] == "failed":
                failures.setdefault(record_key(record), []).append(record.get("reason") or "no reason recorded")
    return {key: f"failed in {len(reasons)} of {len(cand_docs)} candidate runs: {reasons[0]}"
            for key, reasons in failures.items() if base_statuses.get(key) == {"ok"}}


def _record_ids(docs: Sequence[dict]) -> dict[tuple, str]:
    return {record_key(record): record_id(record) for doc in docs for record in doc["records"]}


def normalise(base: list[np.ndarray], base_refs: list[float | None], cand: list[np.ndarray],
              cand_refs: list[float | None], higher_is_better: bool) -> tuple[list, list] | None:
    """Each run's values at the machine speed common to all runs, or None if some run has no reference.

    A run measured while the machine was 10% slow has a 10% slower reference
    kernel too; scaling its times by (pooled reference / its reference)
    cancels that drift, which is shared between everything one process times
    (the gate's records correlate 0.83 from process to process here).
    """
    references = base_refs + cand_refs
    if any(r is None for r in references):
        return None
    common = float(np.median(references))

    def scale(runs, refs):  # times shrink on a slow machine's runs; rates (higher is better) grow
        return [run * (common / ref) ** (-1 if higher_is_better else 1) for run, ref in zip(runs, refs)]

    return scale(base, base_refs), scale(cand, cand_refs)


def _speedup_intervals_overlap(base_docs: Sequence[dict], cand_docs: Sequence[dict], key: tuple) -> bool:
    """For one run per side: do the two records' speedup_vs_eager_ci intervals overlap (True if unknown)?"""
    def interval(docs: Sequence[dict]) -> tuple[float, float] | None:
        for doc in docs:
            for record in doc["records"]:
                ci = record["metrics"].get("speedup_vs_eager_ci") if record_key(record) == key else None
                if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite_positive(v) for v in ci):
                    return float(ci[0]), float(ci[1])
        return None
    base, cand = interval(base_docs), interval(cand_docs)
    return base is None or cand is None or (cand[0] <= base[1] and base[0] <= cand[1])


def _accuracy_row(rid: str, base: list[np.ndarray], cand: list[np.ndarray], tolerance: float) -> Row:
    base_value = _median(np.array([run[0] for run in base]))
    cand_value = _median(np.array([run[0] for run in cand]))
    drop = base_value - cand_value
    status = "regressed" if drop > tolerance else "improved" if -drop > tolerance else "unchanged"
    note = f"{-drop:+.4f} (tolerance {tolerance:g})"
    return Row(rid, "accuracy", status, base_value, cand_value, note=note)


def compare_documents(base_docs: Sequence[dict], cand_docs: Sequence[dict], metric: str = "step_time",
                      threshold: float | None = None, alpha: float = DEFAULT_ALPHA,
                      accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE, normalize: bool = True,
                      paired: bool = False) -> list[Row]:
    """Compare results documents (each one run) of two sides on one metric; rows sorted worst first.

    With ``normalize`` (the default), step times and throughputs of runs that
    all timed the reference kernel are compared at a common machine speed
    (:func:`normalise`); the row's note says so. With ``paired``, ``base_docs[i]``
    and ``cand_docs[i]`` ran at the same time (one round of the duet schedule)
    and the rounds' ratios are compared (:func:`compare_pairs`). Records the
    candidate broke (:func:`broken_records`) come first, whatever the metric.

    Raises :class:`tfbench.errors.UsageError` for an unknown metric or when no record is on both sides.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if paired and len(base_docs) != len(cand_docs):
        raise UsageError(f"paired rounds need as many baseline runs as candidate runs, got {len(base_docs)} and "
                         f"{len(cand_docs)}")
    spec = METRICS[metric]
    base_runs, base_examples, base_not_ok, base_refs = _runs_by_key(base_docs, spec)
    cand_runs, cand_examples, cand_not_ok, cand_refs = _runs_by_key(cand_docs, spec)
    broken = broken_records(base_docs, cand_docs)
    ids = {**_record_ids(cand_docs), **_record_ids(base_docs)}
    rows = [Row(ids[key], metric, "broken",
                _median(np.array([_median(run) for run in base_runs[key]])) if key in base_runs else None,
                None, note=note) for key, note in broken.items()]
    common = sorted((set(base_runs) & set(cand_runs)) - set(broken), key=str)
    if not common and not broken:
        raise UsageError(f"no {metric} records in common: the baseline has {len(base_runs)} ok records with it, "
                         f"the candidate {len(cand_runs)}; were both sides run with the same profile/arguments?")
    for key in common:
        rid = record_id(base_examples[key])
        if spec.name == "accuracy":
            rows.append(_accuracy_row(rid, base_runs[key], cand_runs[key], accuracy_tolerance))
            continue
        if paired:
            base, b_refs, cand, c_refs = _paired_runs(base_docs, cand_docs, spec, key)
            if not base:
                rows.append(Row(rid, metric, "missing", note="no round has it ok on both sides"))
                continue
        else:
            base, b_refs, cand, c_refs = base_runs[key], base_refs[key], cand_runs[key], cand_refs[key]
        normalised = None
        if normalize and spec.name in ("step_time", "throughput"):
            normalised = normalise(base, b_refs, cand, c_refs, spec.higher_is_better)
            if normalised:
                base, cand = normalised
        compare = compare_pairs if paired else compare_samples
        verdict = compare(base, cand, threshold, alpha, spec.higher_is_better)
        if normalised:
            note = "; ".join(filter(None, [verdict.note, "normalised by the reference kernel"]))
            verdict = replace(verdict, note=note)
        status = verdict.status
        if (verdict.mode == "values" and spec.name == "speedup" and status != "unchanged"
                and _speedup_intervals_overlap(base_docs, cand_docs, key)):
            status = "unchanged"
        rows.append(Row(rid, metric, status, verdict.baseline, verdict.candidate, verdict, verdict.note))
    for key in sorted((set(base_runs) ^ set(cand_runs)) - set(broken), key=str):
        side, other_not_ok = ("candidate", cand_not_ok) if key in base_runs else ("baseline", base_not_ok)
        runs = base_runs.get(key) or cand_runs[key]
        value = _median(np.array([_median(run) for run in runs]))
        note = f"not in the {side}" + (f" ({other_not_ok[key]})" if key in other_not_ok else "")
        example = base_examples.get(key) or cand_examples[key]
        rows.append(Row(record_id(example), metric, "missing", value if side == "candidate" else None,
                        value if side == "baseline" else None, note=note))
    return sorted(rows, key=lambda row: (STATUSES.index(row.status), row.record))


def regressions(rows: Sequence[Row]) -> list[Row]:
    """The rows that fail the gate: broken, then regressed."""
    return [row for row in rows if row.status in FAILING_STATUSES]


def exit_code(rows: Sequence[Row]) -> int:
    return 1 if regressions(rows) else 0


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------

def _format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "step_time":
        return f"{value * 1e3:.4g} ms" if value < 1 else f"{value:.4g} s"
    if metric == "throughput":
        return f"{value:.4g}/s"
    if metric == "speedup":
        return f"{value:.3g}x"
    if metric == "roofline":
        return f"{value * 100:.3g} %"
    if metric == "memory":
        return f"{value / 2 ** 20:.1f} MiB"
    return f"{value:.4f}"


def _format_bound(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3f}"


def _format_change(row: Row) -> str:
    verdict = row.verdict
    if verdict is None:
        return row.note if row.metric == "accuracy" and row.status != "missing" else "-"
    if verdict.status == "inconclusive" or verdict.mode == "values":
        return f"{verdict.ratio:.3f}"
    return f"{verdict.ratio:.3f} ({_format_bound(verdict.low)}–{_format_bound(verdict.high)})"


def _format_p(row: Row) -> str:
    p_value = row.verdict.p_value if row.verdict else None
    return "-" if p_value is None else f"{p_value:.2g}"


def _runs(row: Row) -> str:
    return f"{row.verdict.n_base}/{row.verdict.n_cand}" if row.verdict else "-"


def table(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA) -> str:
    """The comparison as a GitHub-flavoured Markdown table (also readable as plain text)."""
    level = f"{100 * (1 - alpha):g} %"
    headers = ["record", "status", "baseline", "candidate", f"ratio ({level} CI)", "p", "runs"]
    body = [[row.record, row.status, _format_value(row.baseline, row.metric),
             _format_value(row.candidate, row.metric), _format_change(row), _format_p(row), _runs(row)]
            for row in rows]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def headline(rows: Sequence[Row]) -> str:
    compared = [row for row in rows if row.status != "missing"]
    broken = sum(row.status == "broken" for row in rows)
    changed = sum(row.status == "changed results" for row in rows)
    regressed = sum(row.status == "regressed" for row in rows)
    if broken or regressed or changed:
        parts = ([f"{broken} broken"] if broken else []) + ([f"{changed} changed results"] if changed else []) + (
            [f"{regressed} regression{'s' * (regressed != 1)}"] if regressed else [])
        return f"❌ {', '.join(parts)} in {len(compared)} records"
    return f"✅ no regression in {len(compared)} records"


def broken_lines(rows: Sequence[Row]) -> list[str]:
    """One line per broken record, with the candidate's error: what heads the summary."""
    return [f"{row.status}: {row.record}: {row.note}" for row in _headed(rows)]


def _headed(rows: Sequence[Row]) -> list[Row]:
    """The failures whose note says what happened: broken, changed results, a memory rise."""
    return [row for row in rows if row.status in ("broken", "changed results")
            or (row.metric == "memory" and row.status == "regressed")]


def notes(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA) -> list[str]:
    """The decision rule and the caveats that apply to these rows, one sentence each."""
    lines = []
    verdicts = [row.verdict for row in rows if row.verdict is not None]
    thresholds = sorted({v.threshold for v in verdicts})
    if verdicts:
        margins = ", ".join(f"{1 + t / 2:.4g}" for t in thresholds)
        basis = "; ".join(sorted({TEST_BASIS[v.mode] for v in verdicts}))
        lines.append(f"regressed = p < {alpha:g} ({basis}) and the ratio's interval beyond "
                     f"{margins} (threshold {', '.join(f'{100 * t:g} %' for t in thresholds)}); "
                     "ratio = candidate / baseline")
    if any(v.mode == "samples" for v in verdicts):
        lines.append(SINGLE_RUN_NOTE[0].upper() + SINGLE_RUN_NOTE[1:])
    unproven = [v.worst_case for v in verdicts if v.status == "unchanged" and v.worst_case > 1 + v.threshold]
    if unproven:
        worst = max(unproven)
        allowed = "an unbounded slowdown" if math.isinf(worst) else f"slowdowns up to {100 * (worst - 1):.0f} %"
        one = len(unproven) == 1
        lines.append(f"{len(unproven)} unchanged record{'' if one else 's'} only failed to prove a slowdown: "
                     f"{'its interval still allows' if one else 'their intervals still allow'} {allowed} (the "
                     "noise between runs is large; more rounds narrow it, `tfbench calibrate-gate` measures what "
                     "this machine can detect)")
    lines += sorted({f"{row.record}: {row.note}" for row in rows if row.status in ("inconclusive", "missing")})
    return lines


def to_markdown(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA, title: str = "",
                extra_notes: Sequence[str] = ()) -> str:
    """A PR-comment summary: the headline, the broken records with the candidate's error, the table, then the
    rule and the caveats."""
    parts = [f"### {headline(rows)}" + (f" ({title})" if title else ""), ""]
    broken = [f"- **{row.status if row.metric != 'memory' else 'memory'}** `{row.record}`: {row.note}"
              for row in _headed(rows)]
    parts += [*broken, ""] if broken else []
    parts += [table(rows, alpha), ""]
    parts += [f"- {line}" for line in [*notes(rows, alpha), *extra_notes]]
    missing = sum(row.status == "missing" for row in rows)
    if missing:
        parts.append(f"- {missing} record{'s' * (missing != 1)} on one side only (not a failure)")
    return "\n".join(parts).rstrip() + "\n"


def write_markdown(path: str | Path, text: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as error:
        raise UsageError(f"{path}: cannot write the Markdown summary: {error.strerror}") from None


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

def results_files(spec: str, side: str) -> list[Path]:
    """One results file, a directory of them (``*.json``), a quoted glob pattern (``'out/a-*.json'``) or a
    comma-separated list of those."""
    files: list[Path] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(char in part for char in "*?["):
            found = sorted(Path(match) for match in glob.glob(part))
            if not found:
                raise UsageError(f"{side} {part}: no file matches this pattern")
            files += found
        else:
            try:
                files += expand(part)
            except ResultsError as error:
                raise UsageError(f"{side} {error}") from None
    if not files:
        raise UsageError(f"{side}: no results file given")
    return files


def load_side(spec: str, side: str) -> list[dict]:
    """Load every run of one side; warn (stderr) about interrupted runs."""
    docs = []
    for path in results_files(spec, side):
        doc = load(path)
        if doc.get("complete") is False:
            print(f"tfbench: warning: {path} is an incomplete (interrupted) run", file=sys.stderr)
        docs.append(doc)
    return docs


def _machines(docs: Sequence[dict]) -> set:
    return {doc["environment"].get("machine_id") for doc in docs} - {None}


def percent(text: str) -> float:
    """argparse type: a percentage (5 or 5%) -> fraction 0.05."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"a percentage in [0, 100) is needed, got {text!r}")
    return value / 100.0


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a level in (0, 1) is needed, got {text!r}")
    return value


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    """--threshold and --alpha, shared by compare, ab and calibrate-gate (same decision everywhere)."""
    parser.add_argument("--threshold", type=percent, default=None, metavar="PCT",
                        help=f"slowdown to catch, in %%: regressed only if the ratio's interval lies above "
                             f"1 + PCT/2 (default {100 * DEFAULT_THRESHOLD:g} with several runs per side, "
                             f"{100 * SINGLE_RUN_THRESHOLD:g} with one)")
    parser.add_argument("--alpha", type=probability, default=DEFAULT_ALPHA, metavar="A",
                        help=f"significance level of the rank test (default {DEFAULT_ALPHA:g})")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Compare two sets of results; exit 1 if a record regressed. Each side is a results "
                          "file, a directory of them, a quoted glob pattern or a comma-separated list of those "
                          "(one file per run).")
    parser.add_argument("baseline", metavar="BASELINE", help="results file(s) of the baseline")
    parser.add_argument("candidate", metavar="CANDIDATE", help="results file(s) of the candidate")
    parser.add_argument("--metric", choices=tuple(METRICS), default="step_time",
                        help="step_time / throughput (absolute: compare within one job or machine), speedup "
                             "(speedup_vs_eager) / roofline (fraction_of_floor): ratios that travel between "
                             "machines, accuracy (test_accuracy)")
    add_decision_options(parser)
    parser.add_argument("--accuracy-tolerance", type=float, default=DEFAULT_ACCURACY_TOLERANCE, metavar="ABS",
                        help=f"accuracy drop (absolute) that is a regression (default {DEFAULT_ACCURACY_TOLERANCE})")
    parser.add_argument("--paired", action="store_true",
                        help="the i-th files of the two sides ran at the same time (`tfbench ab --schedule duet`): "
                             "compare the rounds' paired ratios (files are paired in the order given, each "
                             "pattern or directory sorted by name)")
    add_output_options(parser)
    add_check_options(parser)
    parser.add_argument("--raw", action="store_true",
                        help="compare raw step times, not normalised by the reference kernel the gate profile times")


def add_check_options(parser: argparse.ArgumentParser) -> None:
    """--accept-numerics-change and --memory-threshold, shared by compare and ab (benchmarks.gate.checks)."""
    parser.add_argument("--accept-numerics-change", action="store_true",
                        help="a deliberate change of what the step computes: report the results check's "
                             "differences without failing the gate")
    parser.add_argument("--memory-threshold", type=percent, default=None, metavar="PCT",
                        help="peak-memory rise that fails the gate, in %% (default 10)")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """--markdown and --json, shared by compare and ab."""
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary (for a PR comment)")
    parser.add_argument("--json", metavar="FILE", dest="json_path",
                        help="also write the decision table as JSON (record, ratio, interval, p, verdict)")


def _number(value: float | None) -> float | str | None:
    """A JSON-safe number: strict JSON has no infinity, so an unbounded interval end is the string "inf"."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def to_json(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA, title: str = "",
            extra_notes: Sequence[str] = ()) -> dict:
    """The decision table for machines: one entry per record (ratio, interval, p, verdict) and the exit status."""
    records = []
    for row in rows:
        verdict = row.verdict
        records.append({
            "record": row.record, "metric": row.metric, "verdict": row.status,
            "baseline": _number(row.baseline), "candidate": _number(row.candidate),
            "ratio": _number(verdict.ratio) if verdict else None,
            "interval": [_number(verdict.low), _number(verdict.high)] if verdict and verdict.mode != "values"
            else None,
            "confidence": 1 - alpha if verdict and verdict.mode != "values" else None,
            "p_value": verdict.p_value if verdict else None,
            "test": TEST_BASIS[verdict.mode] if verdict else None,
            "runs": [verdict.n_base, verdict.n_cand] if verdict else None,
            "threshold": verdict.threshold if verdict else None,
            "note": row.note,
        })
    return {"title": title, "headline": headline(rows), "exit_status": exit_code(rows), "alpha": alpha,
            "rule": notes(rows, alpha)[:1], "checks": list(extra_notes), "records": records}


def write_json(path: str | Path, document: dict) -> None:
    try:
        write_json_atomic(Path(path), document)
    except OSError as error:
        raise UsageError(f"{path}: cannot write the JSON decision table: {error.strerror}") from None


def report(rows: Sequence[Row], alpha: float, markdown: str | None, title: str = "",
           json_path: str | None = None, extra_notes: Sequence[str] = ()) -> int:
    """Print the comparison, write the Markdown summary and the JSON table if asked; return the exit status."""
    print(headline(rows) + (f" ({title})" if title else ""))
    for line in broken_lines(rows):
        print(line)
    print(table(rows, alpha))
    for line in [*notes(rows, alpha), *extra_notes]:
        print(f"* {line}")
    if markdown:
        write_markdown(markdown, to_markdown(rows, alpha, title, extra_notes))
    if json_path:
        write_json(json_path, to_json(rows, alpha, title, extra_notes))
    return exit_code(rows)


def main(args: argparse.Namespace) -> int:
    if args.accuracy_tolerance < 0:
        raise UsageError(f"--accuracy-tolerance must be >= 0, got {args.accuracy_tolerance}")
    base_docs = load_side(args.baseline, "BASELINE")
    cand_docs = load_side(args.candidate, "CANDIDATE")
    if not METRICS[args.metric].portable and args.metric != "accuracy":
        machines = _machines(base_docs) | _machines(cand_docs)
        if len(machines) > 1:
            print(f"tfbench: warning: the results come from {len(machines)} machines; absolute times do not "
                  "travel between machines: use --metric speedup or roofline", file=sys.stderr)
    rows = compare_documents(base_docs, cand_docs, args.metric, args.threshold, args.alpha,
                             args.accuracy_tolerance, normalize=not args.raw, paired=args.paired)
    extra: list[str] = []
    if args.metric == "step_time":
        from tfbench.benchmarks.gate.checks import gate_decision

        rows, extra = gate_decision(rows, base_docs, cand_docs, args.alpha, args)
    pairing = " paired" if args.paired else ""
    return report(rows, args.alpha, args.markdown, title=f"{args.metric}: {len(base_docs)} vs {len(cand_docs)}"
                  f"{pairing} runs", json_path=args.json_path, extra_notes=extra)
