"""The gate beyond the clock (issue 21): Holm's correction, the results check, peak memory, the wide profiles,
--inject-into, and the planted skipped update. Synthetic results: no timing is asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbench.benchmarks import cli
from tfbench.benchmarks.gate import calibrate, checks, plant
from tfbench.benchmarks.gate.calibrate import Condition, synthetic_document
from tfbench.benchmarks.gate.compare import Row, Verdict, compare_documents, exit_code
from tfbench.benchmarks.gate.views import to_markdown
from tfbench.benchmarks.plan import build_plan
from tfbench.benchmarks.results import write_json_atomic
from tfbench.benchmarks.stages import step_time
from tfbench.errors import ConfigError
from tfbench.implementations import approach_names

CHECK = {"check_steps": 6, "check_loss": 0.8756, "check_weights_l2": 24.05, "check_weights_sum": 1.25}


def paired_docs(rounds: int, workloads: dict[str, float], ratio: dict[str, float] | None = None, *,
                cand_metrics: dict | None = None, base_metrics: dict | None = CHECK, seed: int = 0):
    """``rounds`` duet rounds of synthetic documents: one record per workload name, the candidate ``ratio``
    times slower, each run's metrics completed by ``base_metrics`` / ``cand_metrics``."""
    rng = np.random.default_rng(seed)
    ratio = ratio or {}
    base, cand = [], []
    for _ in range(rounds):
        level = rng.normal(0, 0.01)
        a = synthetic_document({w: t * np.exp(level + rng.normal(0, 0.003, 20)) for w, t in workloads.items()})
        b = synthetic_document({w: t * ratio.get(w, 1.0) * np.exp(level + rng.normal(0, 0.003, 20))
                                for w, t in workloads.items()})
        for doc, extra in ((a, base_metrics), (b, CHECK if cand_metrics is None else cand_metrics)):
            for record in doc["records"]:
                record["metrics"].update(extra or {})
        base.append(a)
        cand.append(b)
    return base, cand


def row(name: str, p_value: float, status: str = "regressed") -> Row:
    verdict = Verdict(status, 1.1, 1.05, 1.15, p_value, 13, 13, "pairs", 0.03, 1.0, 1.1)
    return Row(name, "step_time", status, 1.0, 1.1, verdict)


def test_holm_keeps_only_what_survives_the_correction_over_all_records():
    rows = [row("strong", 1e-5), row("weak", 0.004)] + [row(f"r{i}", 0.5, "unchanged") for i in range(18)]
    corrected = {r.record: r for r in checks.holm(rows, 0.01)}
    assert corrected["strong"].status == "regressed"  # 1e-5 < 0.01 / 20
    assert corrected["weak"].status == "unchanged"  # 0.004 > 0.01 / 19
    assert "Holm" in corrected["weak"].note and "20 records" in corrected["weak"].note
    assert checks.holm([row("alone", 0.004)], 0.01)[0].status == "regressed"  # one record: alpha itself


def test_holm_bounds_same_code_false_alarms_per_gate_run():
    # 20 independent records of same-code gates: uncorrected, ~20 x alpha of the gates would flag one.
    rng = np.random.default_rng(1)
    flagged = 0
    for _ in range(400):
        rows = [row(f"r{i}", float(p)) for i, p in enumerate(rng.uniform(size=20))]
        flagged += any(r.status == "regressed" for r in checks.holm(rows, 0.01))
    assert flagged / 400 <= 0.02


def test_same_results_pass_and_a_skipped_update_is_changed_results_not_improved():
    workloads = {"mlp": 0.002, "cnn": 0.006}
    base, cand = paired_docs(13, workloads, {"mlp": 0.8})
    rows = compare_documents(base, cand, paired=True)
    assert {r.record.split("/")[2]: r.status for r in rows}["mlp"] == "improved"
    decided, notes = checks.decide(rows, base, cand, 0.01)
    assert exit_code(decided) == 0 and any("2 of 2 records agree" in n for n in notes)
    # the planted no_update: faster, and the weights no longer move from their initial values
    skipped = {**CHECK, "check_loss": 2.31, "check_weights_l2": 23.9}
    base, cand = paired_docs(13, workloads, {"mlp": 0.8, "cnn": 0.8}, cand_metrics=skipped)
    decided, notes = checks.decide(compare_documents(base, cand, paired=True), base, cand, 0.01)
    assert {r.status for r in decided} == {"changed results"} and exit_code(decided) == 1
    mlp = next(r for r in decided if "mlp" in r.record)
    assert "check_loss 0.8756 -> 2.31" in mlp.note and "step time improved" in mlp.note
    assert "**changed results**" in to_markdown(decided)
    accepted, notes = checks.decide(compare_documents(base, cand, paired=True), base, cand, 0.01,
                                    accept_numerics_change=True)
    assert exit_code(accepted) == 0 and any("accepted" in n for n in notes)


def test_an_old_baseline_without_the_check_makes_it_unavailable_not_failed():
    base, cand = paired_docs(13, {"mlp": 0.002}, base_metrics=None)
    decided, notes = checks.decide(compare_documents(base, cand, paired=True), base, cand, 0.01)
    assert exit_code(decided) == 0
    assert any(n.startswith("results check unavailable for 1 record") for n in notes)


def test_a_float_rounding_difference_is_within_tolerance():
    base, cand = paired_docs(13, {"mlp": 0.002}, cand_metrics={**CHECK, "check_weights_l2": 24.05 * (1 + 1e-6)})
    decided, _ = checks.decide(compare_documents(base, cand, paired=True), base, cand, 0.01)
    assert exit_code(decided) == 0


def test_a_memory_rise_above_the_threshold_fails_with_the_figures():
    mib = 1 << 20
    base, cand = paired_docs(13, {"mlp": 0.002, "cnn": 0.006})
    for doc, peaks in [(d, (112 * mib, 40 * mib)) for d in base] + [(d, (131 * mib, 41 * mib)) for d in cand]:
        for record, peak in zip(doc["records"], peaks):
            record["metrics"]["peak_memory_bytes"] = peak
    decided, notes = checks.decide(compare_documents(base, cand, paired=True), base, cand, 0.01)
    memory = [r for r in decided if r.metric == "memory"]
    assert len(memory) == 1 and memory[0].status == "regressed" and exit_code(decided) == 1
    assert memory[0].note.startswith("memory: 112 MiB -> 131 MiB, +17%")
    relaxed, _ = checks.decide(compare_documents(base, cand, paired=True), base, cand, 0.01, memory_threshold=0.2)
    assert exit_code(relaxed) == 0


def test_compare_cli_says_changed_results_and_accepts_a_deliberate_change(tmp_path, capsys):
    base, cand = paired_docs(13, {"mlp": 0.002}, {"mlp": 0.8}, cand_metrics={**CHECK, "check_loss": 2.31})
    for side, documents in (("a", base), ("b", cand)):
        for index, doc in enumerate(documents):
            write_json_atomic(tmp_path / side / f"{side}-{index:02d}.json", doc)
    out = tmp_path / "decision.json"
    assert cli.main(["compare", "--paired", str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out)]) == 1
    assert "changed results" in capsys.readouterr().out
    assert json.loads(out.read_text())["records"][0]["verdict"] == "changed results"
    assert cli.main(["compare", "--paired", str(tmp_path / "a"), str(tmp_path / "b"),
                     "--accept-numerics-change"]) == 0


def test_the_gate_profiles_cover_every_approach_on_both_workloads():
    gate = build_plan("gate")
    assert set(gate.approaches) == set(approach_names()) and set(gate.workloads) == {"mlp", "cnn"}
    assert {"function", "xla", "eager"} <= set(gate.modes) and gate.eager_approaches == ("custom_tape",)
    wide = build_plan("gate-wide")
    assert wide.eager_approaches is None and wide.steps_per_call == (1, 16)


def test_inject_into_names_one_record():
    plan = build_plan("gate", inject_slowdown=0.1, inject_into="keras_fit/cnn/xla")
    stub = {"approach": "keras_fit", "workload": "cnn", "mode": "xla"}
    assert step_time._injected(plan, stub) == 0.1
    assert step_time._injected(plan, {**stub, "mode": "function"}) == 0.0
    with pytest.raises(ConfigError, match="APPROACH/WORKLOAD/MODE"):
        build_plan("gate", inject_into="keras_fit/cnn")
    with pytest.raises(ConfigError, match="unknown workload"):
        build_plan("gate", inject_into="keras_fit/rnn/xla")


def test_calibration_conditions_target_one_record_each_and_read_back():
    condition = Condition(0.1, target="raw_tf_nn/mlp/xla")
    assert condition.run_args() == ["--inject-slowdown", "0.1", "--inject-into", "raw_tf_nn/mlp/xla"]
    assert Condition.from_stem(condition.stem) == condition and condition.label.endswith("in raw_tf_nn/mlp/xla")
    assert calibrate.target_list("a/b/c, d/e/f") == ["a/b/c", "d/e/f"]
    assert calibrate.PLANT_TARGETS["no_update"] == 1.0


def test_the_planted_no_update_leaves_the_weights_as_they_were():
    import keras

    undo = plant.install("no_update")
    try:
        variable = keras.Variable(np.ones(3, dtype="float32"))
        optimizer = keras.optimizers.SGD(0.5)
        optimizer.apply_gradients([(np.ones(3, dtype="float32"), variable)])
        assert np.allclose(np.asarray(variable), 1.0)
    finally:
        undo()
    optimizer = keras.optimizers.SGD(0.5)
    optimizer.apply_gradients([(np.ones(3, dtype="float32"), variable)])
    assert np.allclose(np.asarray(variable), 0.5)
