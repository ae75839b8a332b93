"""``tfbench history``: ordering, step detection with its commit range, bad files, machines (fixture JSON only)."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tfbench.benchmarks.cli import main as cli_main
from tfbench.benchmarks.results import make_record, summarize
from tfbench.errors import UsageError
from tfbench.reports import history, history_steps

START = datetime(2026, 11, 1, tzinfo=timezone.utc)


def document(commit: str, hours: float, medians: dict[tuple[str, str], float], *, machine: str = "m1",
             tensorflow: str = "2.21.0", seed: int = 0, failed: tuple[str, str] | None = None) -> dict:
    """A schema-valid results file: one step_time record per (approach, mode), 30 samples around its median."""
    rng = np.random.default_rng(seed)
    records = []
    for (approach, mode), median in medians.items():
        if (approach, mode) == failed:
            records.append(make_record("step_time", approach=approach, workload="mlp", mode=mode, steps_per_call=1,
                                       device="cpu", batch_size=32, dataset="synthetic", status="failed",
                                       reason="RuntimeError: boom"))
            continue
        samples = median * (1 + 0.01 * rng.standard_normal(30))
        records.append(make_record("step_time", approach=approach, workload="mlp", mode=mode, steps_per_call=1,
                                   device="cpu", batch_size=32, dataset="synthetic",
                                   metrics={"step_time_s": summarize(samples)}))
    created = (START + timedelta(hours=hours)).isoformat(timespec="seconds")
    return {"schema_version": 1, "run_id": f"{created}-{commit}", "created": created, "updated": created,
            "complete": True, "config": {"profile": "gate"},
            "environment": {"git_commit": commit * 5, "machine_id": machine, "tensorflow": tensorflow,
                            "keras": "3.15.1", "python": "3.11.7", "numpy": "2.4.6"},
            "devices": [], "records": records}


def write(folder, name: str, doc: dict):
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


def planted_history(folder, n: int = 8, step_at: int = 4, slowdown: float = 1.10) -> list:
    """n runs at commits c0..c{n-1}: custom_tape/function slows by ``slowdown`` from run ``step_at``; keras_fit
    stays flat; raw_tf_nn is pure noise (+-3% run to run)."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        wobble = 1 + 0.005 * rng.standard_normal()
        medians = {("custom_tape", "function"): 0.010 * wobble * (slowdown if i >= step_at else 1.0),
                   ("keras_fit", "function"): 0.020 * (1 + 0.005 * rng.standard_normal()),
                   ("raw_tf_nn", "function"): 0.015 * (1 + 0.03 * rng.standard_normal())}
        paths.append(write(folder, f"run-{n - i:02d}.json", document(f"c{i}", i, medians, seed=i)))
    return paths


def series(hist: history.History, approach: str) -> history.Series:
    [found] = [s for s in hist.series if s.approach == approach]
    return found


def test_runs_are_ordered_by_commit_then_time(tmp_path):
    flat = {("custom_tape", "function"): 0.01}
    write(tmp_path, "z.json", document("a", 0, flat))
    write(tmp_path, "y.json", document("b", 1, flat))
    write(tmp_path, "x.json", document("a", 2, flat))  # commit a again, later: stays with commit a
    write(tmp_path, "w.json", document("c", 3, flat))
    hist = history.build([tmp_path], warn=lambda line: None)
    assert [(run.commit[0], run.created.hour) for run in hist.runs] == [("a", 0), ("a", 2), ("b", 1), ("c", 3)]
    assert [run.position for run in hist.runs] == [1, 2, 3, 4]
    assert [p.run.position for p in series(hist, "custom_tape").points] == [1, 2, 3, 4]


def test_a_planted_step_is_found_with_its_commit_range(tmp_path):
    planted_history(tmp_path)
    hist = history.build([tmp_path], warn=lambda line: None)
    slowed = series(hist, "custom_tape")
    [step] = slowed.steps
    before, after = slowed.points[step.index - 1].run, slowed.points[step.index].run
    assert (before.commit, after.commit) == ("c3" * 5, "c4" * 5)
    assert step.low < 1.10 < step.high and step.low > 1.0
    assert step.ratio == pytest.approx(1.10, rel=0.02)
    assert (step.n_before, step.n_after) == (4, 4)
    # The flat series and the noisy one have no step.
    assert series(hist, "keras_fit").steps == [] and series(hist, "raw_tf_nn").steps == []
    rows = history.step_rows(hist)
    assert len(rows) == 1
    markdown = history.to_markdown(hist, {})
    assert "`c3c3c3c3c3..c4c4c4c4c4`" in markdown and "+10." in markdown


def test_a_faster_step_and_an_environment_change_are_reported(tmp_path):
    for i in range(6):
        medians = {("custom_tape", "function"): 0.010 * (0.8 if i >= 3 else 1.0)}
        write(tmp_path, f"{i}.json", document(f"c{i}", i, medians, tensorflow="2.21.0" if i >= 3 else "2.20.0"))
    hist = history.build([tmp_path], warn=lambda line: None)
    [(entry, step, before, after)] = history.step_rows(hist)
    assert step.ratio == pytest.approx(0.8, rel=0.02) and step.high < 1
    assert history.environment_change(before, after) == "tensorflow 2.20.0 -> 2.21.0"


def test_no_change_gives_no_step():
    rng = np.random.default_rng(3)
    for _ in range(20):
        values = 0.01 * np.exp(0.02 * rng.standard_normal(10))
        steps, _ = history_steps.detect(values)
        assert steps == []
    assert history_steps.detect([0.01, 0.02, 0.01])[0] == []  # too short to test


def test_one_slow_run_is_not_a_step():
    values = [0.010, 0.0101, 0.0099, 0.014, 0.0100, 0.0101, 0.0099, 0.0100]
    assert history_steps.detect(values)[0] == []


def test_bad_files_are_warned_listed_and_never_a_traceback(tmp_path, capsys):
    planted_history(tmp_path, n=4)
    (tmp_path / "damaged.json").write_text('{"schema_version": 1, "records": [')
    (tmp_path / "foreign.json").write_text(json.dumps({"name": "some-package", "version": "1.0"}))
    (tmp_path / "notes.txt").write_text("not results")
    failed = document("c9", 9, {("custom_tape", "function"): 0.01, ("keras_fit", "function"): 0.02},
                      failed=("keras_fit", "function"))
    write(tmp_path, "failed.json", failed)
    write(tmp_path, "accuracy-only.json", {**document("c9", 10, {}), "records": []})
    out = tmp_path / "out"
    assert cli_main(["history", str(tmp_path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for name in ("damaged.json", "foreign.json", "notes.txt"):
        assert f"{name}: " in err and "Traceback" not in err
    markdown = (out / "HISTORY.md").read_text()
    section = markdown.split("## Not in the history")[1]
    for name in ("damaged.json", "foreign.json", "notes.txt", "accuracy-only.json"):
        assert f"| {name} |" in section
    assert "not valid JSON" in section and "no step_time records" in section
    assert "step_time/keras_fit/mlp/function/k1/cpu/b32/synthetic/ | failed: RuntimeError: boom" in section
    assert list(out.glob("history-gate-mlp-b32-cpu-synthetic.png"))


def test_several_machines_need_a_choice(tmp_path, capsys):
    flat = {("custom_tape", "function"): 0.01}
    write(tmp_path, "a1.json", document("a", 0, flat, machine="m1"))
    write(tmp_path, "a2.json", document("b", 1, flat, machine="m1"))
    write(tmp_path, "b1.json", document("a", 2, flat, machine="m2"))
    with pytest.raises(UsageError, match=r"2 machines \(m1 \(2 files\), m2 \(1 file\)\).*--machine ID"):
        history.build([tmp_path], warn=lambda line: None)
    assert cli_main(["history", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("tfbench: error: the results come from 2 machines")
    hist = history.build([tmp_path], machine="m1", warn=lambda line: None)
    assert [run.machine for run in hist.runs] == ["m1", "m1"]
    assert [(s.source.endswith("b1.json"), "machine m2" in s.reason) for s in hist.skipped] == [(True, True)]
    with pytest.raises(UsageError, match="--machine m3: no results file"):
        history.build([tmp_path], machine="m3", warn=lambda line: None)


def test_missing_ruptures_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    planted_history(tmp_path, n=4)
    monkeypatch.setitem(sys.modules, "ruptures", None)  # import ruptures -> ImportError
    assert cli_main(["history", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "needs the ruptures package" in line and "pip install" in line


def test_median_interval_brackets_the_median():
    samples = np.arange(1.0, 101.0)
    low, high = history.median_interval(samples)
    assert low < np.median(samples) < high
    assert (low, high) == (41.0, 60.0)
    assert history.median_interval([1.0, 2.0]) is None
    assert math.isclose(history_steps.penalty(0.1, 8), 0.1 / math.sqrt(2) * math.log(8))


def test_a_noisy_group_widens_a_quiet_series_interval():
    quiet = [0.010, 0.010, 0.0101, 0.0109, 0.011, 0.0111]  # a 9% step, 1% scatter
    [step], sigma = history_steps.detect(quiet)
    assert sigma == history_steps.NOISE_FLOOR
    pooled = history_steps.pooled_scatter([quiet, [0.02, 0.026, 0.019, 0.025, 0.018, 0.024]])
    assert pooled == pytest.approx(float(np.median(np.abs(np.diff(np.log(
        [0.02, 0.026, 0.019, 0.025, 0.018, 0.024]))).tolist() + np.abs(np.diff(np.log(quiet))).tolist()))
        * history_steps.MAD_TO_SIGMA)
    steps, wider = history_steps.detect(quiet, pooled=0.10)
    assert wider == 0.10 and steps == []  # what the group's noise allows, one quiet series cannot prove
