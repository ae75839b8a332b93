"""The K sweep: the knee on synthetic curves, a record from fake samples, a tiny real sweep, its report."""

from __future__ import annotations

import pytest

from tfbench.benchmarks.cli import main
from tfbench.benchmarks.results import load, make_record, validate
from tfbench.benchmarks.stages.k_sweep import config_name, k_values, knee, sweep_record, warmup_calls
from tfbench.benchmarks.timing import Timed


def test_k_values_are_powers_of_two_up_to_the_maximum():
    assert k_values(64) == [1, 2, 4, 8, 16, 32, 64]
    assert k_values(48) == [1, 2, 4, 8, 16, 32, 48]
    assert k_values(1) == [1]


@pytest.mark.parametrize(("medians", "expected"), [
    ([10, 6, 4, 3.9, 3.85, 3.84, 3.84], 4),  # gains 40%, 33%, then 2.5% and less: the knee is K=4
    ([10, 9.9, 9.9, 9.8, 9.8, 9.8, 9.8], 1),  # nothing to amortise: K=1 is already the knee
    ([10, 8, 6.4, 5.1, 4.1, 3.3, 2.6], None),  # still 20% a doubling at the end: no knee within the sweep
    ([10, 9.8, 7, 6.9, 6.9, 6.9, 6.9], 4),  # a flat doubling followed by a gain does not make a knee
    ([10, 6, 5.9, 5.95, 5.8, 5.0, 4.9], 32),  # a late drop of 14% moves the knee past it
    ([10, 10.4, 10.3, 10.5, 10.6, 11, 12], 1),  # getting slower is not a gain either
])
def test_the_knee_is_where_every_further_doubling_gains_under_five_percent(medians, expected):
    assert knee(k_values(64), medians) == expected


def test_the_knee_skips_failed_k_and_needs_two_measured_points():
    assert knee([1, 2, 4, 8], [10, None, 5, 4.9]) == 4  # 1 -> 4 gained; 4 -> 8 did not
    assert knee([1, 2], [10, None]) is None
    assert knee([1], [10]) is None
    # Exactly at the threshold still counts as paying (gains of 5% or more pay).
    assert knee([1, 2, 4], [100, 95, 94]) == 2


def test_warm_up_is_counted_in_steps_with_at_least_one_call():
    assert [warmup_calls(5, k) for k in (1, 2, 4, 8, 16, 32, 64)] == [5, 5, 4, 2, 1, 1, 1]


def _timed(samples, k):
    timed = Timed(lambda: 0.0, steps_per_call=k)
    timed.samples = list(samples)
    return timed


def test_a_sweep_record_holds_medians_intervals_ratios_and_the_knee_and_validates():
    stub = make_record("k_sweep", approach="raw_tf_nn", workload="mlp", mode="xla", steps_per_call=1,
                       device="cpu", batch_size=128, dataset="synthetic")
    ks = [1, 2, 4, 8]
    level = {1: 4e-3, 2: 3e-3, 4: 2.9e-3}
    timed = {config_name(stub["id"], k): _timed([level[k] * (1 + 0.01 * (i % 5)) for i in range(20)], k)
             for k in level}
    errors = {(stub["id"], 8): "ResourceExhaustedError: out of memory"}
    record = sweep_record(stub, ks, timed, errors)
    metrics = record["metrics"]
    assert metrics["k_values"] == ks and metrics["k_step_time_s"][3] is None
    assert metrics["k_step_time_s"][:3] == pytest.approx([4.08e-3, 3.06e-3, 2.958e-3])
    assert metrics["knee_k"] == 2  # 4 -> 3 ms pays, 3 -> 2.9 does not; K=8 failed and is left out
    assert metrics["k_step_time_ci"][3] is None
    for (low, high), median in zip(metrics["k_step_time_ci"][:3], metrics["k_step_time_s"][:3]):
        assert low <= median <= high
    assert len(metrics["k_doubling_ratios"]) == 2
    ratio, low, high = metrics["k_doubling_ratios"][0]
    assert ratio == pytest.approx(0.75) and low <= ratio <= high
    assert record["reason"] == "K=8: ResourceExhaustedError: out of memory"
    failed = sweep_record(stub, ks, {}, {(stub["id"], 1): "boom"})
    assert failed["status"] == "failed" and failed["reason"] == "K=1: boom"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "sweep.json"
    assert main(["run", "--approach", "raw_tf_nn", "naive_sequential", "--workload", "mlp", "cnn", "--mode",
                 "function", "--batch-size", "8", "--stages", "k_sweep", "--samples", "2", "--quiet",
                 "--output", str(path)]) == 0
    return path


def test_a_tiny_real_sweep_writes_valid_records(tiny_sweep):
    document = load(tiny_sweep)
    validate(document)
    records = {(r["approach"], r["workload"]): r for r in document["records"]}
    assert records["naive_sequential", "cnn"]["status"] == "unsupported"
    for key in [("raw_tf_nn", "mlp"), ("raw_tf_nn", "cnn"), ("naive_sequential", "mlp")]:
        record = records[key]
        assert record["status"] == "ok" and record["kind"] == "k_sweep" and record["batch_size"] == 8
        metrics = record["metrics"]
        assert metrics["k_values"] == [1, 2, 4, 8, 16]  # the quick profile's sweep
        assert all(t > 0 for t in metrics["k_step_time_s"])
        assert metrics["knee_k"] is None or metrics["knee_k"] in metrics["k_values"]


def test_the_report_tables_the_knee_and_plots_the_sweep(tiny_sweep, tmp_path):
    from tfbench.reports.data import load_results
    from tfbench.reports.k_sweep import plot_k_sweep, section

    frame = load_results(tiny_sweep)
    lines = section(frame)
    table = "\n".join(lines)
    assert "| mlp" in table and "raw_tf_nn" in table and "naive_sequential" in table and "Knee" in table
    assert plot_k_sweep(frame, tmp_path / "k.png").stat().st_size > 0
    assert plot_k_sweep(frame.iloc[0:0], tmp_path / "none.png") is None
    assert section(frame.iloc[0:0])[0].startswith("No K-sweep records")
