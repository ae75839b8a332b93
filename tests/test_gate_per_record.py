"""Per-record detection rates from A/A duet pairs (benchmarks/gate/per_record.py): the fast decision is the gate's
own, and the rates answer to the noise. Synthetic pairs, no TensorFlow, no timing assertions."""

from __future__ import annotations

import numpy as np
import pytest

from tfbench.benchmarks.gate import checks, per_record
from tfbench.benchmarks.gate.calibrate import NULL, Condition, synthetic_pools
from tfbench.benchmarks.gate.compare import compare_documents


def test_the_resampled_decision_is_the_decision_of_the_gate():
    """Per draw, the records that the fast path calls regressed are those `tfbench ab`'s decision calls so."""
    pools = synthetic_pools(16, (0.04,), process_noise=0.03, step_times=(0.002, 0.0025, 0.003, 0.004), seed=3,
                            paired=True)
    rng = np.random.default_rng(0)
    agreed_on_regressions = 0
    for condition in (NULL, Condition(0.04)):
        pairs = pools[condition]
        logs = per_record.pair_log_ratios(pairs)
        for _ in range(6):
            drawn = rng.choice(len(pairs), 13, replace=False)
            base, cand = [pairs[i][0] for i in drawn], [pairs[i][1] for i in drawn]
            rows = compare_documents(base, cand, "step_time", None, 0.01, paired=True)
            rows, _ = checks.decide(rows, base, cand, 0.01)
            gate = {per_record.short_name(row.record) for row in rows if row.status == "regressed"}
            fast = per_record._holm_regressed({name: per_record._verdict(values[drawn], None, 0.01)
                                               for name, values in logs.items()}, 0.01)
            assert fast == gate
            agreed_on_regressions += bool(gate)
    assert agreed_on_regressions  # the comparison saw regressions, not only "unchanged" on both paths


def _noise(records: int, pairs: int, spread: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"r{index}/mlp/function": rng.normal(0.0, spread, pairs) for index in range(records)}


def test_a_slowdown_well_above_the_pair_spread_is_caught_in_every_record_and_one_within_it_is_not():
    quiet = per_record.record_rates(_noise(5, 30, 0.01), [0.02, 0.10], rounds=13, trials=40)
    assert all(quiet.rate(0.10, name) == 1.0 for name in quiet.caught[0.10])
    assert quiet.aa_failures == 0 and quiet.all_at_once[0.10] == 40
    assert all(quiet.smallest_caught(name, 0.8) == 0.10 for name in quiet.caught[0.10])  # 2% is within 3%
    noisy = per_record.record_rates(_noise(5, 30, 0.30), [0.10], rounds=13, trials=40)
    assert max(noisy.rate(0.10, name) for name in noisy.caught[0.10]) < 0.5
    assert noisy.smallest_caught("r0/mlp/function", 0.8) is None


def test_a_pools_own_lean_does_not_decide_a_records_rate():
    """A/A pairs whose median leans -4% by chance: the slowdown is added to the centred values."""
    logs = _noise(3, 24, 0.01, seed=1)
    logs["r0/mlp/function"] = logs["r0/mlp/function"] - 0.04
    rates = per_record.record_rates(logs, [0.06], rounds=13, trials=30)
    assert rates.rate(0.06, "r0/mlp/function") == 1.0


def test_a_slowdown_in_one_record_is_decided_with_holm_over_all_records():
    """The same record and noise are caught less often beside 40 other records than beside 2."""
    few = per_record.record_rates(_noise(3, 30, 0.035, seed=2), [0.07], rounds=13, trials=60)
    many = per_record.record_rates(_noise(41, 30, 0.035, seed=2), [0.07], rounds=13, trials=60)
    assert many.rate(0.07, "r0/mlp/function") < few.rate(0.07, "r0/mlp/function")


def test_too_few_pairs_for_a_trial_are_refused():
    with pytest.raises(ValueError, match="12 A/A pairs cannot give trials of 13 distinct pairs"):
        per_record.record_rates(_noise(2, 12, 0.01), [0.1], rounds=13, trials=5)


def test_a_pair_where_a_record_failed_is_left_out_of_that_records_ratios():
    pools = synthetic_pools(3, (), process_noise=0.02, step_times=(0.002, 0.003), seed=0, paired=True)
    base, cand = pools[NULL][1]
    cand = {**cand, "records": [dict(cand["records"][0], status="failed", metrics={}), *cand["records"][1:]]}
    logs = per_record.pair_log_ratios([pools[NULL][0], (base, cand), pools[NULL][2]])
    first, second = sorted(logs)
    assert np.isnan(logs[first][1]) and np.isfinite(logs[first][[0, 2]]).all()
    assert np.isfinite(logs[second]).all()
    assert per_record.robust_spread(logs[first]) >= 0
