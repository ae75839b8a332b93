"""The regression gate's statistics and `tfbench compare`, on synthetic results (no TensorFlow, no timing)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from tfbench.benchmarks import cli
from tfbench.benchmarks.gate.calibrate import synthetic_document
from tfbench.benchmarks.gate.compare import (
    SINGLE_RUN_THRESHOLD,
    _null_lower_cdf,
    compare_documents,
    compare_samples,
    min_runs,
    smallest_p_value,
    to_markdown,
)
from tfbench.benchmarks.results import make_record, summarize, write_json_atomic
from tfbench.errors import UsageError


def runs(count: int, median: float, *, process_noise: float = 0.0, sample_noise: float = 0.005,
         samples: int = 30, seed: int = 0) -> list[np.ndarray]:
    """``count`` runs of ``samples`` lognormal step times around ``median`` (plus a per-run factor)."""
    rng = np.random.default_rng(seed)
    return [median * np.exp(rng.normal(0, process_noise) + rng.normal(0, sample_noise, samples))
            for _ in range(count)]


def write_runs(folder, name: str, per_workload: dict[str, list[np.ndarray]]) -> list:
    """One results file per run under ``folder/name/``; returns the paths."""
    count = len(next(iter(per_workload.values())))
    paths = []
    for index in range(count):
        path = folder / name / f"run-{index}.json"
        write_json_atomic(path, synthetic_document({w: r[index] for w, r in per_workload.items()}))
        paths.append(path)
    return paths


# --- the statistics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("m,n", [(1, 1), (2, 3), (3, 4), (5, 5), (4, 7)])
def test_exact_null_distribution_matches_enumeration(m, n):
    counts = np.zeros(m * n + 1)
    for base_positions in itertools.combinations(range(m + n), m):
        wins = sum(1 for i in base_positions for j in range(m + n) if j not in base_positions and j > i)
        counts[wins] += 1
    expected = np.cumsum(counts) / counts.sum()
    table = _null_lower_cdf(m, n)
    np.testing.assert_allclose(table, expected[: len(table)])


def test_fewest_runs_that_can_reach_alpha():
    assert smallest_p_value(5, 5) == pytest.approx(2 / math.comb(10, 5))
    assert min_runs(0.01) == 5  # 4 + 4 runs: smallest p = 2/70 > 0.01
    assert min_runs(0.05) == 4


def test_no_shift_is_unchanged():
    verdict = compare_samples(runs(6, 0.010, process_noise=0.03, seed=1), runs(6, 0.010, process_noise=0.03, seed=2))
    assert verdict.status == "unchanged"
    assert verdict.mode == "runs"
    assert verdict.low < 1 < verdict.high


def test_a_30_percent_slowdown_with_tight_noise_regresses():
    verdict = compare_samples(runs(6, 0.010, seed=1), runs(6, 0.013, seed=2))
    assert verdict.status == "regressed"
    assert verdict.ratio == pytest.approx(1.3, rel=0.01)
    assert 1.25 < verdict.low <= verdict.ratio <= verdict.high < 1.35
    assert verdict.p_value < 0.01


def test_a_30_percent_improvement_is_improved():
    verdict = compare_samples(runs(6, 0.013, seed=1), runs(6, 0.010, seed=2))
    assert verdict.status == "improved"
    assert verdict.high < 1


def test_a_tiny_significant_shift_below_the_threshold_is_unchanged():
    base, cand = runs(6, 0.0100, sample_noise=0.001, seed=1), runs(6, 0.0101, sample_noise=0.001, seed=2)
    verdict = compare_samples(base, cand)
    assert verdict.p_value < 0.01  # real and significant...
    assert verdict.low > 1
    assert verdict.status == "unchanged"  # ...but a 1 % change is below threshold/2 of the default 3 %
    assert compare_samples(base, cand, threshold=0.01).status == "regressed"


def test_between_process_noise_does_not_cry_wolf():
    # Each run is internally tight but runs scatter by 20 %: a per-sample test would call this significant.
    base, cand = runs(6, 0.010, process_noise=0.2, seed=3), runs(6, 0.010, process_noise=0.2, seed=4)
    assert compare_samples(base, cand).status == "unchanged"


def test_the_verdict_is_deterministic():
    base, cand = runs(6, 0.010, process_noise=0.05, seed=5), runs(6, 0.011, process_noise=0.05, seed=6)
    assert compare_samples(base, cand) == compare_samples(base, cand)


def test_too_few_runs_are_inconclusive_not_guessed():
    verdict = compare_samples(runs(3, 0.010, seed=1), runs(3, 0.020, seed=2))
    assert verdict.status == "inconclusive"
    assert "5 runs" in verdict.note


def test_one_run_per_side_falls_back_to_samples_with_a_wider_threshold():
    slower = compare_samples(runs(1, 0.010, seed=1), runs(1, 0.013, seed=2))
    assert (slower.mode, slower.threshold, slower.status) == ("samples", SINGLE_RUN_THRESHOLD, "regressed")
    assert "less reliable" in slower.note
    # 8 % slower in one process is within what a process-to-process shift does: not a regression alone
    assert compare_samples(runs(1, 0.010, seed=1), runs(1, 0.0108, seed=2)).status == "unchanged"


def test_higher_is_better_flips_the_direction():
    base, cand = [1 / r for r in runs(6, 0.010, seed=1)], [1 / r for r in runs(6, 0.013, seed=2)]
    verdict = compare_samples(base, cand, higher_is_better=True)
    assert verdict.status == "regressed"
    assert verdict.ratio == pytest.approx(1 / 1.3, rel=0.01)


def test_bad_samples_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        compare_samples([[0.01, -1.0]], [[0.01]])
    with pytest.raises(ValueError, match="alpha"):
        compare_samples([[0.01]], [[0.01]], alpha=1.5)


# --- documents --------------------------------------------------------------------------------------------

def docs(per_workload: dict[str, list[np.ndarray]]) -> list[dict]:
    count = len(next(iter(per_workload.values())))
    return [synthetic_document({w: r[i] for w, r in per_workload.items()}) for i in range(count)]


def test_records_are_matched_and_one_sided_ones_are_missing():
    base = docs({"mlp": runs(5, 0.01, seed=1), "cnn": runs(5, 0.02, seed=2), "old": runs(5, 0.03, seed=3)})
    cand = docs({"mlp": runs(5, 0.013, seed=4), "cnn": runs(5, 0.02, seed=5), "new": runs(5, 0.03, seed=6)})
    rows = compare_documents(base, cand)
    by_workload = {row.record.split("/")[2]: row for row in rows}
    assert {w: r.status for w, r in by_workload.items()} == {"mlp": "regressed", "cnn": "unchanged", "old": "missing",
                                                              "new": "missing"}
    assert rows[0].status == "regressed"  # worst first
    assert by_workload["old"].note == "not in the candidate"
    assert by_workload["new"].baseline is None and by_workload["new"].candidate is not None


def test_a_record_that_failed_on_one_side_is_missing_with_the_reason():
    base = docs({"mlp": runs(5, 0.01, seed=1), "cnn": runs(5, 0.01, seed=2)})
    cand = docs({"mlp": runs(5, 0.01, seed=3), "cnn": runs(5, 0.01, seed=4)})
    for doc in cand:
        doc["records"][1].update(status="failed", reason="out of memory", metrics={})
    rows = {row.record.split("/")[2]: row for row in compare_documents(base, cand)}
    assert rows["cnn"].status == "missing"
    assert "failed: out of memory" in rows["cnn"].note
    assert rows["mlp"].status == "unchanged"


def test_no_records_in_common_is_a_usage_error():
    with pytest.raises(UsageError, match="no step_time records in common"):
        compare_documents(docs({"mlp": runs(5, 0.01)}), docs({"cnn": runs(5, 0.01)}))
    with pytest.raises(UsageError, match="unknown metric"):
        compare_documents(docs({"mlp": runs(5, 0.01)}), docs({"mlp": runs(5, 0.01)}), metric="latency")


def accuracy_doc(accuracy: float) -> dict:
    doc = synthetic_document({"mlp": np.array([0.01, 0.011])})
    doc["records"].append(make_record("accuracy", approach="custom_tape", workload="mlp", mode="function",
                                      steps_per_call=1, device="cpu", batch_size=32, dataset="mnist",
                                      metrics={"test_accuracy": accuracy}))
    return doc


@pytest.mark.parametrize("candidate,status", [(0.95, "regressed"), (0.975, "unchanged"), (0.995, "improved")])
def test_accuracy_drop_beyond_the_tolerance_regresses(candidate, status):
    [row] = compare_documents([accuracy_doc(0.98)], [accuracy_doc(candidate)], metric="accuracy")
    assert row.record.startswith("accuracy/")
    assert row.status == status


def test_speedup_ratios_with_one_value_per_side_use_the_threshold_and_intervals():
    def speedup_doc(value: float, interval: list[float]) -> dict:
        doc = synthetic_document({"mlp": np.array([0.01])})
        doc["records"][0]["metrics"].update(speedup_vs_eager=value, speedup_vs_eager_ci=interval)
        return doc
    [drop] = compare_documents([speedup_doc(3.0, [2.9, 3.1])], [speedup_doc(2.0, [1.9, 2.1])], metric="speedup")
    assert (drop.status, drop.verdict.mode) == ("regressed", "values")
    [overlap] = compare_documents([speedup_doc(3.0, [2.0, 4.0])], [speedup_doc(2.0, [1.5, 2.5])], metric="speedup")
    assert overlap.status == "unchanged"


def test_markdown_summary_has_the_headline_and_the_table():
    base = docs({"mlp": runs(5, 0.01, seed=1), "cnn": runs(5, 0.02, seed=2)})
    clean = to_markdown(compare_documents(base, docs({"mlp": runs(5, 0.01, seed=3), "cnn": runs(5, 0.02, seed=4)})))
    assert clean.startswith("### ✅ no regression in 2 records")
    assert "| record" in clean and "step_time/custom_tape/mlp/" in clean
    bad = to_markdown(compare_documents(base, docs({"mlp": runs(5, 0.013, seed=3), "cnn": runs(5, 0.026, seed=4)})))
    assert bad.startswith("### ❌ 2 regressions in 2 records")


# --- the command line -------------------------------------------------------------------------------------

def test_cli_exit_codes_and_markdown(tmp_path, capsys):
    write_runs(tmp_path, "base", {"mlp": runs(5, 0.01, seed=1)})
    write_runs(tmp_path, "same", {"mlp": runs(5, 0.01, seed=2)})
    slow = write_runs(tmp_path, "slow", {"mlp": runs(5, 0.013, seed=3)})
    summary = tmp_path / "summary.md"
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "same")]) == 0
    assert "unchanged" in capsys.readouterr().out
    as_list = ",".join(str(path) for path in slow)
    assert cli.main(["compare", str(tmp_path / "base"), as_list, "--markdown", str(summary)]) == 1
    assert "regressed" in capsys.readouterr().out
    assert summary.read_text().startswith("### ❌ 1 regression in 1 records")
    assert cli.main(["compare", str(tmp_path / "base" / "run-*.json"), str(tmp_path / "slow" / "run-[0-4].json")]) == 1


def test_cli_single_files_say_they_are_less_reliable(tmp_path, capsys):
    [base] = write_runs(tmp_path, "base", {"mlp": runs(1, 0.01, seed=1)})
    [cand] = write_runs(tmp_path, "cand", {"mlp": runs(1, 0.01, seed=2)})
    assert cli.main(["compare", str(base), str(cand)]) == 0
    assert "less reliable" in capsys.readouterr().out


def bad_input(tmp_path, capsys, argv: list[str]) -> str:
    assert cli.main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def test_cli_missing_file_is_exit_2(tmp_path, capsys):
    [good] = write_runs(tmp_path, "base", {"mlp": runs(1, 0.01)})
    assert "no such results file" in bad_input(tmp_path, capsys, [str(good), str(tmp_path / "nope.json")])


def test_cli_corrupt_json_is_exit_2(tmp_path, capsys):
    [good] = write_runs(tmp_path, "base", {"mlp": runs(1, 0.01)})
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(json.dumps(synthetic_document({"mlp": runs(1, 0.01)[0]}))[:100])
    err = bad_input(tmp_path, capsys, [str(good), str(corrupt)])
    assert "corrupt.json" in err and "not valid JSON" in err


def test_cli_no_records_in_common_is_exit_2(tmp_path, capsys):
    [base] = write_runs(tmp_path, "base", {"mlp": runs(1, 0.01)})
    [cand] = write_runs(tmp_path, "cand", {"cnn": runs(1, 0.01)})
    assert "no step_time records in common" in bad_input(tmp_path, capsys, [str(base), str(cand)])


def test_cli_empty_directory_and_unknown_metric_are_exit_2(tmp_path, capsys):
    [base] = write_runs(tmp_path, "base", {"mlp": runs(1, 0.01)})
    (tmp_path / "empty").mkdir()
    assert "no *.json" in bad_input(tmp_path, capsys, [str(base), str(tmp_path / "empty")])
    assert "no file matches" in bad_input(tmp_path, capsys, [str(base), str(tmp_path / "empty" / "*.json")])
    assert "invalid choice" in bad_input(tmp_path, capsys, [str(base), str(base), "--metric", "latency"])
    assert "percentage" in bad_input(tmp_path, capsys, [str(base), str(base), "--threshold", "lots"])


def _run_doc(step_time: float, reference: float | None, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    metrics = {"step_time_s": summarize(step_time * (1 + 0.01 * rng.standard_normal(50)))}
    if reference is not None:
        metrics["reference_s"] = summarize(reference * (1 + 0.01 * rng.standard_normal(50)))
    record = make_record("step_time", approach="custom_tape", workload="mlp", mode="function", steps_per_call=1,
                         device="cpu", batch_size=128, dataset="synthetic", metrics=metrics)
    return {"schema_version": 1, "run_id": f"r{seed}", "environment": {}, "records": [record]}


def test_the_reference_kernel_cancels_machine_speed_shared_by_a_process():
    # Ten processes a side, each on a machine 0-40% slower; the candidate's code is 10% slower.
    speeds = np.linspace(1.0, 1.4, 10)
    base = [_run_doc(0.002 * f, 0.001 * f, i) for i, f in enumerate(speeds)]
    cand = [_run_doc(0.0022 * f, 0.001 * f, 100 + i) for i, f in enumerate(speeds[::-1])]
    normalised = compare_documents(base, cand)[0]
    raw = compare_documents(base, cand, normalize=False)[0]
    assert normalised.status == "regressed" and "reference kernel" in normalised.note
    assert normalised.verdict.ratio == pytest.approx(1.10, rel=0.02)
    assert raw.status == "unchanged"  # the drift between processes hides the slowdown
    # A run without the reference timing: compared raw, and the note says nothing of normalising.
    base[0] = _run_doc(0.002, None, 0)
    assert "reference kernel" not in compare_documents(base, cand)[0].note
