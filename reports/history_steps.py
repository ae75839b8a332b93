"""Step changes in one series of run medians: where the level moved, by how much, and how sure that is.

A history point is one run's step-time median of one record; a series is that record over the runs, in
commit order (:mod:`reports.history`). A real change (a slower commit, a TensorFlow upgrade) shows as a
*step*: the level is flat, then flat again at another height. One run that was slow because the machine was
busy is not a step. The detector is ruptures' PELT (Killick et al. 2012, exact optimal segmentation under a
penalty; `ruptures <https://centre-borelli.github.io/ruptures-docs/>`_, a maintained library) on the
logarithm of the medians, so that a step is a ratio and a 10% slowdown of a 1 ms step weighs what it weighs
on a 100 ms step:

* cost ``l1`` (a piecewise-constant *median*: asv's step detection uses the same absolute-deviation cost, for
  the same reason: one run slowed by a busy machine moves a mean, not a median), ``min_size``
  :data:`MIN_SEGMENT` runs per segment: a step needs two runs on each side, and a lone slow run then lowers no
  segment's cost, so it cannot make one;
* penalty ``sigma / sqrt(2) * ln(n)`` per change point: BIC under Laplace noise of scale b = sigma / sqrt 2 (the
  cost is the sum of absolute deviations, a change adds a location and a level: 2 parameters x ln(n) / 2 x b),
  times :data:`PENALTY_FACTOR`; sigma is the noise of one run's log median: the largest of the series' own
  scatter (the median absolute difference of successive points / (0.6745 sqrt 2), which a step barely moves),
  the same scatter pooled over the series of its group (many more differences: a steadier estimate), the
  runs' own uncertainty (their medians' 95% interval) and :data:`NOISE_FLOOR` (the same record's median
  moves by a few % from one process to the next on a quiet machine, so a history of near-identical runs must
  not call a 0.5% wobble a step);
* a step is kept only if its ratio's interval excludes 1: ``exp(d +- z * 1.2533 sigma sqrt(1/n1 + 1/n2))``, d the
  difference of the two segments' median log values (1.2533 = sqrt(pi/2), a median's standard error over a
  mean's), z the quantile of a 95% level *Bonferroni-corrected over the n - 1 places a step could be* (PELT
  looked at every one): normal when sigma is the floor, the group's pooled scatter or the runs' own intervals,
  Student's t with n - 2 degrees of freedom when it is the series' own scatter (few points estimate it
  loosely). PELT proposes, the interval confirms; the weakest unconfirmed step is removed and
  the rest re-measured until every step left is confirmed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

MIN_SEGMENT = 2
NOISE_FLOOR = 0.02  # log units, ~2%
PENALTY_FACTOR = 1.0  # x sigma / sqrt(2) x ln(n): BIC for one change point (location + level) under Laplace noise
LEVEL = 0.95  # the confirming interval's family-wise level
Z = 1.96  # two-sided 95%: a run median's own interval
MEDIAN_SE = math.sqrt(math.pi / 2)  # standard error of a median / that of a mean, normal data
MAD_TO_SIGMA = 1.0 / (0.6745 * math.sqrt(2.0))  # successive differences of N(0, s^2) have MAD 0.6745 s sqrt 2
INSTALL_HINT = "pip install 'tf-training-bench[history]' (or: pip install ruptures)"


class MissingDependency(RuntimeError):
    """ruptures is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Step:
    index: int  # the first point after the step (the series' position)
    before: float  # level before (geometric mean of the segment's medians, seconds)
    after: float  # level after
    ratio: float  # after / before: > 1 is slower
    low: float  # its interval (95%, Bonferroni-corrected over the places a step could be)
    high: float
    n_before: int  # points in the segments on either side
    n_after: int


def _ruptures():
    try:
        import ruptures
    except ImportError:
        raise MissingDependency(f"tfbench history needs the ruptures package: {INSTALL_HINT}") from None
    return ruptures


def scatter(log_values: np.ndarray) -> float:
    """The series' own noise: the median absolute successive difference, scaled to a normal sigma."""
    return float(np.median(np.abs(np.diff(log_values)))) * MAD_TO_SIGMA if log_values.size > 1 else 0.0


def pooled_scatter(series: Sequence[Sequence[float]]) -> float:
    """The noise of a group of series (same machine, workload and batch): the median absolute successive
    difference of all their log medians, scaled to a normal sigma; 0 without two points in any series."""
    diffs = [np.abs(np.diff(np.log(np.asarray(values, dtype=float)))) for values in series if len(values) > 1]
    return float(np.median(np.concatenate(diffs))) * MAD_TO_SIGMA if diffs else 0.0


def noise(log_values: np.ndarray, log_halfwidths: Sequence[float] = (), pooled: float = 0.0) -> float:
    """sigma of one point's log median (module docstring)."""
    own = float(np.median(log_halfwidths)) / Z if len(log_halfwidths) else 0.0
    return max(scatter(log_values), own, pooled, NOISE_FLOOR)


def penalty(sigma: float, n: int) -> float:
    return PENALTY_FACTOR * sigma / math.sqrt(2.0) * math.log(max(n, 2))


def z_value(n: int, estimated: bool = False) -> float:
    """The two-sided quantile of :data:`LEVEL`, Bonferroni-corrected over the n - 1 places of a step: normal
    when sigma is known (a floor, the runs' own intervals), Student's t with n - 2 degrees of freedom when it was
    estimated from the series' own n - 1 successive differences (one of which the step takes)."""
    level = 1 - (1 - LEVEL) / (2 * max(n - 1, 1))
    if not estimated:
        return NormalDist().inv_cdf(level)
    from scipy.stats import t  # scipy comes with ruptures

    return float(t.ppf(level, df=max(n - 2, 1)))


def _steps(log_values: np.ndarray, breaks: list[int], sigma: float) -> list[Step]:
    bounds = [0, *breaks, log_values.size]
    z = z_value(log_values.size, estimated=sigma == scatter(log_values))
    steps = []
    for i, index in enumerate(breaks):
        left, right = np.median(log_values[bounds[i]:index]), np.median(log_values[index:bounds[i + 2]])
        n_left, n_right = index - bounds[i], bounds[i + 2] - index
        d = float(right - left)
        half = z * MEDIAN_SE * sigma * math.sqrt(1 / n_left + 1 / n_right)
        steps.append(Step(index, math.exp(left), math.exp(right), math.exp(d), math.exp(d - half), math.exp(d + half),
                          n_left, n_right))
    return steps


def detect(values: Sequence[float], log_halfwidths: Sequence[float] = (), pooled: float = 0.0) -> tuple[list[Step],
                                                                                                       float]:
    """The confirmed steps of a series of positive medians (in order), and the noise sigma used.

    ``log_halfwidths``: each point's 95% interval half-width in log units (how sure its own median is);
    ``pooled``: the noise of the series' group (:func:`pooled_scatter`). A series shorter than
    ``2 * MIN_SEGMENT`` has no step (too few runs to tell one).
    """
    log_values = np.log(np.asarray(values, dtype=float))
    sigma = noise(log_values, log_halfwidths, pooled)
    if log_values.size < 2 * MIN_SEGMENT:
        return [], sigma
    ruptures = _ruptures()
    breaks = ruptures.Pelt(model="l1", min_size=MIN_SEGMENT, jump=1).fit(log_values.reshape(-1, 1)).predict(
        pen=penalty(sigma, log_values.size))[:-1]  # the last "break" is the series' end
    while breaks:
        steps = _steps(log_values, breaks, sigma)
        weak = [step for step in steps if step.low <= 1.0 <= step.high]
        if not weak:
            return steps, sigma
        weakest = min(weak, key=lambda step: abs(math.log(step.ratio)))
        breaks.remove(weakest.index)
    return [], sigma
