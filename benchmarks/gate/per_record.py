"""Per-record detection rates of the gate from its A/A duet pairs: a slowdown put into one record at a time.

Issue 21 asks how often a 10% (or 5%) slowdown in *any single* approach/workload/mode is caught. Measuring
that for real takes one pool of slowed processes per record and size (``calibrate-gate --inject-into``: about
7 hours for the 20-record gate). The every-record pool gives a lower bound instead
(:func:`benchmarks.gate.calibrate.caught_alone`). This module gives the figure itself, from the A/A pairs alone:

* a duet pair's paired verdict rests on one number per record, the log ratio of the two run medians (normalised
  by the reference kernel: :func:`benchmarks.gate.compare.compare_documents`). A slowdown of s in a record's
  candidate step adds log(1 + s) to that record's log ratio in every pair, and leaves the other records alone;
* so each trial draws ``rounds`` A/A pairs, adds log(1 + s) to one record's log ratios, and decides exactly as
  the gate does: :func:`benchmarks.gate.statistics.compare_pairs` per record, then Holm's correction over all
  records (:func:`benchmarks.gate.checks.holm`). The record is caught when it ends "regressed".

What this assumes: a slowdown scales the step time and adds no noise of its own. A busy-wait of s x the step
(``--inject-slowdown``) nearly does that; the calibration checks it by setting the same scaling, in every
record at once, beside the measured every-record pools (calibrate's Markdown says how the two compare). The
A/A trials of the same draws give the gate's false-alarm rate on the step time, as the full trial does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tfbench.benchmarks.gate import checks
from tfbench.benchmarks.gate.compare import DEFAULT_ALPHA, Row, compare_documents
from tfbench.benchmarks.gate.statistics import compare_pairs


def short_name(record: str) -> str:
    """``approach/workload/mode`` of a step-time record's id (the names ``--inject-into`` takes)."""
    parts = record.split("/")
    return "/".join(parts[1:4]) if len(parts) > 4 and parts[0] == "step_time" else record


def pair_log_ratios(pairs: Sequence[tuple[dict, dict]], normalize: bool = True) -> dict[str, np.ndarray]:
    """Per step-time record (short name), the log ratio candidate / baseline of each pair's run medians, as the
    gate computes it (normalised by the reference kernel where timed); NaN in a pair where the record is not
    "ok" on both sides."""
    logs: dict[str, list[float]] = {}
    for index, (base, cand) in enumerate(pairs):
        rows = compare_documents([base], [cand], "step_time", None, DEFAULT_ALPHA, normalize=normalize,
                                 paired=True)
        for row in rows:
            if row.verdict is not None and row.verdict.ratio > 0:
                values = logs.setdefault(short_name(row.record), [math.nan] * len(pairs))
                values[index] = float(np.log(row.verdict.ratio))
    return {name: np.asarray(values) for name, values in logs.items()}


def robust_spread(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: a standard deviation for normal noise that one outlying pair (which
    the rank test shrugs off) does not set."""
    values = values[np.isfinite(values)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _verdict(log_ratios: np.ndarray, threshold: float | None, alpha: float):
    """The gate's paired verdict of one record from its pairs' log ratios (runs of one value each)."""
    finite = log_ratios[np.isfinite(log_ratios)]
    return compare_pairs([[1.0]] * finite.size, [[v] for v in np.exp(finite)], threshold, alpha)


def _holm_regressed(verdicts: dict[str, object], alpha: float) -> set[str]:
    rows = [Row(name, "step_time", verdict.status, verdict=verdict) for name, verdict in verdicts.items()]
    return {row.record for row in checks.holm(rows, alpha) if row.status == "regressed"}


@dataclass(frozen=True)
class RecordRates:
    """Per slowdown size and record: in how many of ``trials`` that slowdown, put into that record alone, was
    caught; and how many A/A trials (no record scaled) failed the gate on step time."""

    trials: int
    rounds: int
    pairs: int
    caught: dict[float, dict[str, int]] = field(default_factory=dict)
    aa_failures: int = 0
    # the same scaling put into every record at once: in how many trials the gate failed (the check against the
    # measured every-record pools)
    all_at_once: dict[float, int] = field(default_factory=dict)

    def rate(self, size: float, name: str) -> float:
        return self.caught[size].get(name, 0) / self.trials

    def smallest_caught(self, name: str, level: float) -> float | None:
        return next((size for size in sorted(self.caught) if self.rate(size, name) >= level), None)


def record_rates(log_ratios: dict[str, np.ndarray], sizes: Sequence[float], rounds: int, trials: int,
                 threshold: float | None = None, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> RecordRates:
    """Per-record detection rates and the A/A false-alarm rate on step time, by resampling (module docstring).

    * A/A: each trial draws ``rounds`` distinct pairs, as a gate would see them, and counts a failure when any
      record ends "regressed".
    * Detection: each trial draws ``rounds`` distinct pairs from the log ratios *centred* on each record's
      median over the pool, adds log(1 + size) to one record's, and decides with the other records' centred
      values beside it. Under A/A the true median is 0 (both sides run the same code and swap cores), so a
      pool's own median is its sampling error: left in, a record whose 14 pairs happen to lean -4% would read
      "0% caught at 10%" from that accident alone. Pairs are drawn whole (every record's value of one pair
      together), so the correlation between records that Holm's correction sees is kept. (Drawing with
      replacement would vary the trials more, but repeated pairs are ties, and with ties the signed-rank test
      falls back to its normal approximation, which cannot reach alpha / m with 13 pairs.)
    """
    names = sorted(log_ratios)
    pairs = len(next(iter(log_ratios.values()))) if names else 0
    if pairs < rounds:
        raise ValueError(f"{pairs} A/A pairs cannot give trials of {rounds} distinct pairs")
    centred = {name: values - np.nanmedian(values) for name, values in log_ratios.items()}
    rng = np.random.default_rng(seed)
    caught = {size: dict.fromkeys(names, 0) for size in sizes}
    all_at_once = dict.fromkeys(sizes, 0)
    aa_failures = 0
    for _ in range(trials):
        drawn = rng.choice(pairs, rounds, replace=False)
        aa_failures += bool(_holm_regressed({name: _verdict(log_ratios[name][drawn], threshold, alpha)
                                             for name in names}, alpha))
        drawn = rng.choice(pairs, rounds, replace=False)
        null = {name: _verdict(centred[name][drawn], threshold, alpha) for name in names}
        for size in sizes:
            shift = math.log1p(size)
            scaled = {name: _verdict(centred[name][drawn] + shift, threshold, alpha) for name in names}
            all_at_once[size] += bool(_holm_regressed(scaled, alpha))
            for name in names:
                caught[size][name] += name in _holm_regressed({**null, name: scaled[name]}, alpha)
    return RecordRates(trials, rounds, pairs, caught, aa_failures, all_at_once)
