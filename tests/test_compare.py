"""The regression gate's statistics and `tfbench compare`, on synthetic results (no TensorFlow, no timing)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tfbench.benchmarks import cli
from tfbench.benchmarks.gate import signed_rank
from tfbench.benchmarks.gate.calibrate import synthetic_document
from tfbench.benchmarks.gate.compare import (
    SINGLE_RUN_THRESHOLD,
    _null_lower_cdf,
    compare_documents,
    compare_pairs,
    compare_samples,
    exit_code,
    min_runs,
    rank_test,
    smallest_p_value,
)
from tfbench.benchmarks.gate.views import to_json, to_markdown
from tfbench.benchmarks.results import make_record, summarize, write_json_atomic
from tfbench.benchmarks.timing import bootstrap_ratio
from tfbench.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures"


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


def test_a_record_ok_in_the_baseline_and_failed_in_the_candidate_is_broken_and_fails_the_gate():
    base = docs({"mlp": runs(5, 0.01, seed=1), "cnn": runs(5, 0.01, seed=2)})
    cand = docs({"mlp": runs(5, 0.01, seed=3), "cnn": runs(5, 0.01, seed=4)})
    for doc in cand:
        doc["records"][1].update(status="failed", reason="RuntimeError: boom in custom_tape", metrics={})
    rows = compare_documents(base, cand)
    assert [row.status for row in rows] == ["broken", "unchanged"]  # broken heads the table
    assert rows[0].record.split("/")[2] == "cnn"
    assert rows[0].note == "failed in 5 of 5 candidate runs: RuntimeError: boom in custom_tape"
    assert exit_code(rows) == 1
    summary = to_markdown(rows)
    assert summary.startswith("### ❌ 1 broken in 2 records")
    # the candidate's error comes before the table
    assert summary.index("RuntimeError: boom in custom_tape") < summary.index("| record")


def test_a_candidate_that_fails_in_one_run_only_is_broken_too():
    base = docs({"mlp": runs(5, 0.01, seed=1)})
    cand = docs({"mlp": runs(5, 0.01, seed=3)})
    cand[2]["records"][0].update(status="failed", reason="the loss became NaN or infinite", metrics={})
    [row] = compare_documents(base, cand)
    assert (row.status, row.note) == ("broken", "failed in 1 of 5 candidate runs: the loss became NaN or infinite")


def test_a_record_that_failed_in_the_baseline_is_missing_not_broken():
    base = docs({"mlp": runs(5, 0.01, seed=1), "cnn": runs(5, 0.01, seed=2)})
    cand = docs({"mlp": runs(5, 0.01, seed=3), "cnn": runs(5, 0.01, seed=4)})
    for doc in base:
        doc["records"][1].update(status="failed", reason="out of memory", metrics={})
    rows = {row.record.split("/")[2]: row for row in compare_documents(base, cand)}
    assert rows["cnn"].status == "missing"
    assert "failed: out of memory" in rows["cnn"].note
    assert rows["mlp"].status == "unchanged"
    # failing on both sides is not the candidate's doing either
    for doc in cand:
        doc["records"][1].update(status="failed", reason="out of memory", metrics={})
    assert "broken" not in {row.status for row in compare_documents(base, cand)}


def test_broken_fixture_results_fail_the_cli_with_the_error_first(tmp_path, capsys):
    # The committed CPU fixture, as a baseline of 5 runs; the candidate: the same runs with one approach failing.
    fixture = json.loads((FIXTURES / "results_cpu.json").read_text())
    ok_step_records = [r for r in fixture["records"] if r["kind"] == "step_time" and r["status"] == "ok"]
    victim = ok_step_records[0]
    for index in range(5):
        write_json_atomic(tmp_path / "base" / f"run-{index}.json", fixture)
        broken = json.loads(json.dumps(fixture))
        for record in broken["records"]:
            if record["id"] == victim["id"]:
                record.update(status="failed", reason="RuntimeError: planted failure", metrics={})
        write_json_atomic(tmp_path / "cand" / f"run-{index}.json", broken)
    decision = tmp_path / "decision.json"
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--json", str(decision)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("❌ 1 broken in")
    assert out[1] == f"broken: {victim['id']}: failed in 5 of 5 candidate runs: RuntimeError: planted failure"
    table = json.loads(decision.read_text())
    assert table["exit_status"] == 1
    assert table["records"][0]["record"] == victim["id"] and table["records"][0]["verdict"] == "broken"


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


def test_the_roofline_metric_is_the_fraction_of_the_floor_and_older_records_have_none():
    def roofline_doc(fraction: float | None) -> dict:
        doc = synthetic_document({"mlp": np.array([0.01])})
        doc["records"][0]["metrics"]["roofline_fraction"] = 0.5  # older files: 3 x forward over a matmul peak
        if fraction is not None:
            doc["records"][0]["metrics"]["fraction_of_floor"] = fraction
        return doc
    [drop] = compare_documents([roofline_doc(0.6)], [roofline_doc(0.4)], metric="roofline")
    assert (drop.status, drop.baseline, drop.candidate) == ("regressed", 0.6, 0.4)
    with pytest.raises(UsageError, match="no roofline records in common"):  # never floor against old fraction
        compare_documents([roofline_doc(None)], [roofline_doc(0.4)], metric="roofline")


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


# --- against SciPy's reference implementations ------------------------------------------------------------

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("m,n,shift,seed", [(5, 5, 1.0, 0), (6, 7, 0.3, 1), (12, 12, 0.8, 2), (3, 9, 2.0, 3)])
def test_mann_whitney_p_value_matches_scipy_exact(m, n, shift, seed):
    rng = np.random.default_rng(seed)
    base, cand = rng.normal(0, 1, m), rng.normal(shift, 1, n)
    expected = scipy_stats.mannwhitneyu(cand, base, alternative="two-sided", method="exact").pvalue
    assert rank_test(base, cand, 0.01)[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("m,n,seed", [(8, 9, 4), (5, 6, 5), (7, 7, 6)])
def test_mann_whitney_with_ties_is_the_exact_permutation_p_value(m, n, seed):
    rng = np.random.default_rng(seed)
    base, cand = np.round(rng.normal(0, 1, m)), np.round(rng.normal(0.8, 1, n))  # many ties
    assert len(np.unique(np.concatenate([base, cand]))) < m + n
    exact = scipy_stats.mannwhitneyu(cand, base, method=scipy_stats.PermutationMethod(n_resamples=np.inf)).pvalue
    assert rank_test(base, cand, 0.01)[0] == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("decimals", [None, 1])
def test_mann_whitney_large_samples_match_scipy_asymptotic(decimals):
    rng = np.random.default_rng(7)
    base, cand = rng.normal(0, 1, 250), rng.normal(0.15, 1, 250)  # 62,500 pairs: the normal branch
    if decimals is not None:  # ties, and half-integer U
        base, cand = np.round(base, decimals), np.round(cand, decimals)
    expected = scipy_stats.mannwhitneyu(cand, base, method="asymptotic", use_continuity=True).pvalue
    assert rank_test(base, cand, 0.01)[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("m,n,seed", [(6, 6, 8), (10, 12, 9), (12, 12, 10)])
def test_mann_whitney_interval_inverts_scipys_test(m, n, seed):
    # The (1 - alpha) interval of the shift is the set of shifts the two-sided test does not reject.
    rng = np.random.default_rng(seed)
    base, cand = rng.normal(0, 1, m), rng.normal(0.5, 1, n)
    alpha = 0.05
    _, low, high = rank_test(base, cand, alpha)

    def p(shift: float) -> float:
        return scipy_stats.mannwhitneyu(cand - shift, base, method="exact").pvalue

    eps = 1e-9
    assert p(low + eps) >= alpha and p(high - eps) >= alpha
    assert p(low - eps) < alpha and p(high + eps) < alpha


@pytest.mark.parametrize("n,seed", [(8, 11), (12, 12), (20, 13), (45, 14)])
def test_signed_rank_p_value_matches_scipy_exact(n, seed):
    d = np.random.default_rng(seed).normal(0.1, 0.2, n)
    assert signed_rank.p_value(d) == pytest.approx(scipy_stats.wilcoxon(d, method="exact").pvalue, rel=1e-9)


@pytest.mark.parametrize("n,decimals", [(70, None), (15, 1), (40, 1)])
def test_signed_rank_ties_zeros_and_large_samples_match_scipy_approx(n, decimals):
    d = np.random.default_rng(n).normal(0.05, 0.2, n)
    if decimals is not None:
        d = np.round(d, decimals)
        d[:2] = 0.0
        assert len(np.unique(np.abs(d))) < n - 1  # zeros and ties
    expected = scipy_stats.wilcoxon(d, zero_method="wilcox", correction=True, method="approx").pvalue
    assert signed_rank.p_value(d) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n,seed", [(8, 15), (12, 16), (30, 17)])
def test_hodges_lehmann_interval_inverts_scipys_signed_rank_test(n, seed):
    d = np.random.default_rng(seed).normal(0.1, 0.1, n)
    alpha = 0.05
    _, estimate, low, high = signed_rank.signed_rank_test(d, alpha)
    assert low < estimate < high
    assert estimate == pytest.approx(np.median([(d[i] + d[j]) / 2 for i in range(n) for j in range(i, n)]))

    def p(shift: float) -> float:
        return scipy_stats.wilcoxon(d - shift, method="exact").pvalue

    eps = 1e-9
    assert p(low + eps) >= alpha and p(high - eps) >= alpha
    assert p(low - eps) < alpha and p(high + eps) < alpha


def test_signed_rank_needs_eight_pairs_at_alpha_one_percent():
    assert signed_rank.min_pairs(0.01) == 8  # 2 / 2^7 = 0.016
    assert signed_rank.smallest_p_value(8) == pytest.approx(2 / 256)


# --- the paired decision ----------------------------------------------------------------------------------

def paired_rounds(count: int, ratio: float, *, drift: float, pair_noise: float, seed: int) -> tuple[list, list]:
    """``count`` rounds in which both sides share the round's machine speed (``drift``, large) and differ by
    ``ratio`` times a small independent noise: what the duet schedule gives."""
    rng = np.random.default_rng(seed)
    base, cand = [], []
    for _ in range(count):
        speed = np.exp(rng.normal(0, drift))
        base.append(0.01 * speed * np.exp(rng.normal(0, pair_noise) + rng.normal(0, 0.002, 30)))
        cand.append(0.01 * ratio * speed * np.exp(rng.normal(0, pair_noise) + rng.normal(0, 0.002, 30)))
    return base, cand


def test_pairing_sees_a_slowdown_that_shared_drift_hides_from_unpaired_runs():
    base, cand = paired_rounds(12, 1.05, drift=0.15, pair_noise=0.01, seed=1)
    paired = compare_pairs(base, cand)
    assert (paired.status, paired.mode, paired.n_base) == ("regressed", "pairs", 12)
    assert paired.low > 1.015 and paired.p_value == pytest.approx(2 / 2 ** 12)
    assert compare_samples(base, cand).status == "unchanged"  # the same runs, unpaired: drift swamps 5 %


def test_paired_same_code_is_unchanged_and_too_few_rounds_are_inconclusive():
    base, cand = paired_rounds(12, 1.0, drift=0.15, pair_noise=0.01, seed=2)
    assert compare_pairs(base, cand).status == "unchanged"
    short = compare_pairs(base[:7], cand[:7])
    assert short.status == "inconclusive" and ">= 8 rounds" in short.note
    with pytest.raises(ValueError, match="as many"):
        compare_pairs(base, cand[:5])


def test_paired_documents_pair_round_by_round(tmp_path, capsys):
    base, cand = paired_rounds(10, 1.08, drift=0.2, pair_noise=0.01, seed=3)
    write_runs(tmp_path, "a", {"mlp": base})
    write_runs(tmp_path, "b", {"mlp": cand})
    decision = tmp_path / "decision.json"
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--paired", "--json", str(decision)]) == 1
    assert "Wilcoxon signed-rank" in capsys.readouterr().out
    [record] = json.loads(decision.read_text())["records"]
    assert record["verdict"] == "regressed" and record["test"].startswith("Wilcoxon")
    assert record["interval"][0] > 1.0 and record["runs"] == [10, 10]
    # a round where one side lacks the record drops that round only
    base_docs = docs({"mlp": base})
    cand_docs = docs({"mlp": cand})
    cand_docs[0]["records"][0].update(status="skipped", reason="no data", metrics={})
    [row] = compare_documents(base_docs, cand_docs, paired=True)
    assert row.verdict.n_base == 9
    with pytest.raises(UsageError, match="as many baseline runs"):
        compare_documents(base_docs, cand_docs[:4], paired=True)


def test_json_decision_table_is_strict_json(tmp_path):
    rows = (compare_documents(docs({"mlp": runs(3, 0.01, seed=1)}), docs({"mlp": runs(3, 0.01, seed=3)}))
            + compare_documents(docs({"cnn": runs(5, 0.01, seed=2)}), docs({"cnn": runs(5, 0.013, seed=4)})))
    table = to_json(rows, 0.01, "t")
    text = json.dumps(table, allow_nan=False)  # raises on NaN / Infinity
    by_verdict = {r["verdict"]: r for r in json.loads(text)["records"]}
    assert set(by_verdict) == {"regressed", "inconclusive"}
    assert by_verdict["inconclusive"]["interval"] == [0.0, "inf"]
    assert by_verdict["regressed"]["p_value"] < 0.01 and table["exit_status"] == 1


# --- speedup intervals (benchmarks/timing.py) -------------------------------------------------------------

def drifting_series(rng: np.random.Generator, median: float, per_round: int, shared: np.ndarray) -> np.ndarray:
    """Samples in time order: each round shares the machine's speed with the other series (``shared``) and has
    a speed of its own (autocorrelation within the round), plus small per-sample noise."""
    return np.concatenate([median * np.exp(level + rng.normal(0, 0.04) + rng.normal(0, 0.01, per_round))
                           for level in shared])


def iid_bootstrap_interval(num: np.ndarray, den: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """The interval bootstrap_ratio used to give: samples resampled as if independent."""
    ratios = (np.median(rng.choice(num, (300, num.size)), axis=1)
              / np.median(rng.choice(den, (300, den.size)), axis=1))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def test_speedup_interval_resamples_blocks_and_covers_the_true_ratio_under_autocorrelation():
    rng = np.random.default_rng(0)
    repeats, block_hits, iid_hits = 60, 0, 0
    for repeat in range(repeats):
        shared = rng.normal(0, 0.1, 10)
        eager, compiled = drifting_series(rng, 0.030, 20, shared), drifting_series(rng, 0.010, 60, shared)
        ratio, low, high = bootstrap_ratio(eager, compiled, resamples=300, seed=repeat)
        assert low <= ratio <= high
        block_hits += low <= 3.0 <= high
        iid_low, iid_high = iid_bootstrap_interval(eager, compiled, rng)
        iid_hits += iid_low <= 3.0 <= iid_high
    assert block_hits / repeats >= 0.9  # a 95 % interval
    assert iid_hits / repeats < 0.7  # what independent resampling gave: far too narrow


def test_speedup_interval_is_deterministic_and_handles_short_series():
    assert bootstrap_ratio([3.0, 3.1, 2.9], [1.0, 1.1], seed=1) == bootstrap_ratio([3.0, 3.1, 2.9], [1.0, 1.1], seed=1)
    ratio, low, high = bootstrap_ratio([2.0], [1.0])
    assert ratio == low == high == 2.0
    with pytest.raises(ValueError, match="both sides"):
        bootstrap_ratio([], [1.0])
