"""`tfbench ab` with the benchmark processes mocked, in a throwaway git repo; `tfbench calibrate-gate` on
synthetic pools. No TensorFlow, no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfbench.benchmarks import cli
from tfbench.benchmarks.gate import ab, calibrate, plant
from tfbench.benchmarks.gate.ab import ProcessResult, run_ab
from tfbench.benchmarks.gate.calibrate import (
    NULL,
    Condition,
    Rate,
    collect_pools,
    estimate_rates,
    load_pools,
    synthetic_pools,
    to_markdown,
)
from tfbench.benchmarks.results import ResultsFile, load, make_record, summarize
from tfbench.errors import UsageError


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


# A stand-in for the suite's `benchmarks/cli.py run`, so the real subprocess runner can be exercised in a second:
# it writes a results file whose step time is read from the revision's speed.txt.
FAKE_SUITE_CLI = textwrap.dedent('''
    import json, random, sys
    args = sys.argv[1:]
    if "--crash" in args:
        print("Traceback (most recent call last):\\nRuntimeError: boom", file=sys.stderr)
        sys.exit(3)
    median = float(open("speed.txt").read())
    samples = [median * (1 + random.uniform(-0.005, 0.005)) for _ in range(20)]
    record = {"kind": "step_time", "approach": "fake", "workload": "mlp", "mode": "function", "steps_per_call": 1,
              "device": "cpu", "batch_size": 32, "dataset": "synthetic", "variant": "", "status": "ok",
              "reason": None, "metrics": {"step_time_s": {"median": sorted(samples)[10], "samples": samples}}}
    record["id"] = "step_time/fake/mlp/function/k1/cpu/b32/synthetic/"
    document = {"schema_version": 1, "complete": True, "config": {"args": args, "file": __file__},
                "environment": {}, "devices": [], "records": [record]}
    with open(args[args.index("--output") + 1], "w") as handle:
        json.dump(document, handle)
''')


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two commits: HEAD~1 with a 10 ms step, HEAD with a 13 ms one (a 30 % regression)."""
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "cli.py").write_text(FAKE_SUITE_CLI)
    (repo / "speed.txt").write_text("0.010")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "baseline")
    (repo / "speed.txt").write_text("0.013")
    git(repo, "commit", "-qam", "slower")
    return repo


class FakeRunner:
    """Records each call and writes a synthetic results file with the step time of the worktree's speed.txt."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[tuple[str, Path, str, list[str]]] = []
        self.plants: list[str | None] = []
        self.fail_on_call = fail_on_call

    def __call__(self, side, worktree, python, args, output, plant=None) -> ProcessResult:
        self.calls.append((side, Path(worktree), python, list(args)))
        self.plants.append(plant)
        assert Path(worktree).is_dir()
        if len(self.calls) == self.fail_on_call:
            return ProcessResult(3, "lots of log\n" * 50 + "RuntimeError: boom in worker\n")
        median = float((Path(worktree) / "speed.txt").read_text())
        samples = median * np.exp(np.random.default_rng(len(self.calls)).normal(0, 0.005, 30))
        results = ResultsFile.create(output, run_id=f"fake-{len(self.calls)}", config={"args": list(args)},
                                     environment={})
        results.add(make_record("step_time", approach="custom_tape", workload="mlp", mode="function",
                                steps_per_call=1, device="cpu", batch_size=32, dataset="synthetic",
                                metrics={"step_time_s": summarize(samples)}))
        results.save(complete=True)
        return ProcessResult(0)


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


# --- the A/B orchestration --------------------------------------------------------------------------------

def test_ab_alternates_sides_in_worktrees_and_removes_them(repo, tmp_path):
    runner = FakeRunner()
    result = run_ab(repo, "HEAD~1", "HEAD", rounds=5, schedule="alternate", out_dir=tmp_path / "out", runner=runner,
                    python_a="python-a", python_b="python-b", log=lambda line: None)
    assert [side for side, *_ in runner.calls] == ["A", "B"] * 5
    worktree_a, worktree_b = runner.calls[0][1], runner.calls[1][1]
    assert {call[1] for call in runner.calls} == {worktree_a, worktree_b}
    assert worktree_a != repo and worktree_b != repo
    assert [call[2] for call in runner.calls[:2]] == ["python-a", "python-b"]
    assert runner.calls[0][3] == ["--profile", "gate"]
    assert not worktree_a.exists() and not worktree_b.exists()
    assert worktree_count(repo) == 1
    assert result.commits == {"a": git(repo, "rev-parse", "HEAD~1"), "b": git(repo, "rev-parse", "HEAD")}
    assert [path.name for path in result.files["a"]] == [f"a-{i:02d}.json" for i in range(1, 6)]
    [row] = result.rows
    assert row.status == "regressed"
    assert row.verdict.n_base == row.verdict.n_cand == 5


def test_ab_same_revision_two_pythons_is_unchanged(repo, tmp_path):
    result = run_ab(repo, "HEAD", "HEAD", rounds=5, schedule="alternate", out_dir=tmp_path / "out", runner=FakeRunner(),
                    python_a="py-old", python_b="py-new", log=lambda line: None)
    assert [row.status for row in result.rows] == ["unchanged"]


def test_ab_current_checkout_runs_in_the_repo_itself(repo, tmp_path):
    (repo / "speed.txt").write_text("0.010")  # uncommitted: undoes the slowdown
    runner = FakeRunner()
    result = run_ab(repo, "HEAD~1", ab.CURRENT_CHECKOUT, rounds=5, schedule="alternate",
                    out_dir=tmp_path / "out", runner=runner,
                    log=lambda line: None)
    assert runner.calls[1][1] == repo
    assert result.commits["b"] is None
    assert [row.status for row in result.rows] == ["unchanged"]


def test_a_failing_process_reports_its_stderr_and_cleans_up(repo, tmp_path, capsys):
    runner = FakeRunner(fail_on_call=4)
    with pytest.raises(ab.ProcessFailed, match="B round 2/5 process .* exited with status 3"):
        run_ab(repo, "HEAD~1", "HEAD", rounds=5, schedule="alternate",
               out_dir=tmp_path / "out", runner=runner, log=lambda line: None)
    err = capsys.readouterr().err
    assert "RuntimeError: boom in worker" in err
    assert err.count("lots of log") < 50  # the tail only
    assert len(runner.calls) == 4  # ends at the failure
    assert worktree_count(repo) == 1
    assert not runner.calls[0][1].exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"rounds": 4}, "too few"),
    ({"run_args": ["--", "--output", "x.json"]}, "--output is set by tfbench"),
    ({"rev_a": "no-such-branch"}, "not a commit"),
])
def test_bad_ab_input_is_a_usage_error(repo, tmp_path, kwargs, message):
    options = {"rev_a": "HEAD~1", "rev_b": "HEAD", "rounds": 5, **kwargs}
    with pytest.raises(UsageError, match=message):
        run_ab(repo, options.pop("rev_a"), options.pop("rev_b"), schedule="alternate",
               out_dir=tmp_path / "out", runner=FakeRunner(),
               **options)
    assert worktree_count(repo) == 1


def test_ab_cli_exit_codes_and_markdown(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    monkeypatch.setattr(ab, "subprocess_runner", FakeRunner())
    summary = tmp_path / "summary.md"
    common = ["--schedule", "alternate", "--rounds", "5", "--out", str(tmp_path / "out"), "--markdown",
              str(summary)]
    assert cli.main(["ab", "--baseline-rev", "HEAD~1", *common]) == 1
    assert summary.read_text().startswith("### ❌ 1 regression in 1 records (A/B HEAD~1 (")
    assert cli.main(["ab", "--baseline-rev", "HEAD", *common, "--", "--profile", "quick"]) == 0
    assert summary.read_text().startswith("### ✅ no regression in 1 records")
    assert ab.subprocess_runner.calls[-1][3] == ["--profile", "quick"]
    assert cli.main(["ab", "--baseline-rev", "HEAD", *common, "--", "--approach", "keras_fit"]) == 0
    assert ab.subprocess_runner.calls[-1][3] == ["--profile", "gate", "--approach", "keras_fit"]
    capsys.readouterr()
    assert cli.main(["ab", "--baseline-rev", "nope", *common]) == 2
    assert "revision 'nope' is not a commit" in capsys.readouterr().err
    assert "could not run" in summary.read_text()


def test_ab_cli_with_the_real_subprocess_runner(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    out = tmp_path / "out"
    assert cli.main(["ab", "--baseline-rev", "HEAD~1", "--schedule", "alternate", "--rounds", "5", "--out",
                     str(out), "--python-a", sys.executable]) == 1
    document = load(out / "a-01.json")
    assert document["config"]["args"][:3] == ["run", "--profile", "gate"]
    assert document["config"]["args"][-3:] == ["--output", str(out / "a-01.json"), "--quiet"]
    assert "tfbench-ab-" in document["config"]["file"]  # ran the worktree's code, not the checkout's
    capsys.readouterr()
    assert cli.main(["ab", "--baseline-rev", "HEAD~1", "--schedule", "alternate", "--rounds", "5", "--out", str(out),
                     "--", "--crash"]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err
    assert err.strip().splitlines()[-1].startswith("tfbench: error: the A round 1/5 process")
    assert worktree_count(repo) == 1


# --- calibration ------------------------------------------------------------------------------------------

def test_calibration_on_quiet_synthetic_pools_meets_the_targets():
    pools = synthetic_pools(16, (0.05, 0.10, 0.20), process_noise=0.005, sample_noise=0.005, seed=1)
    rates, compare_seconds = estimate_rates(pools, rounds=6, trials=150, seed=2)
    by_slowdown = {rate.condition.slowdown: rate for rate in rates}
    assert by_slowdown[0.0].rate <= 0.01
    assert by_slowdown[0.10].rate >= 0.95 and by_slowdown[0.20].rate == 1.0
    assert all(rate.met for rate in rates)
    assert compare_seconds > 0


def test_calibration_on_noisy_pools_keeps_false_alarms_low_and_catches_large_slowdowns():
    pools = synthetic_pools(20, (0.10, 0.50), process_noise=0.10, seed=3)
    rates = {rate.condition.slowdown: rate for rate in estimate_rates(pools, rounds=6, trials=400, seed=4)[0]}
    assert rates[0.0].rate <= 0.01
    assert rates[0.50].rate >= 0.95
    assert rates[0.10].rate < rates[0.50].rate


def test_calibration_is_deterministic_and_needs_enough_processes():
    pools = synthetic_pools(12, (0.10,), process_noise=0.05, seed=5)
    assert estimate_rates(pools, 6, 40, seed=6)[0] == estimate_rates(pools, 6, 40, seed=6)[0]
    with pytest.raises(UsageError, match="needs 2 x 7"):
        estimate_rates(pools, 7, 10)


def test_calibration_interleaves_conditions_round_robin(tmp_path):
    runner = FakeRunner()
    worktree = tmp_path / "checkout"
    worktree.mkdir()
    (worktree / "speed.txt").write_text("0.010")
    conditions = (Condition(0.05), Condition(0.10), Condition(plant="extra_op"))
    pools, seconds = collect_pools(2, conditions, run_args=["--profile", "gate"], out_dir=tmp_path / "out",
                                   worktree=worktree, runner=runner, log=lambda line: None)
    assert [call[0] for call in runner.calls] == ["slowdown 0", "slowdown 0.05", "slowdown 0.1",
                                                   "planted extra_op"] * 2
    assert runner.calls[1][3] == ["--profile", "gate", "--inject-slowdown", "0.05"]
    assert runner.calls[0][3] == runner.calls[3][3] == ["--profile", "gate"]
    assert runner.plants == [None, None, None, "extra_op"] * 2
    assert {condition: len(pool) for condition, pool in pools.items()} == {NULL: 2, **{c: 2 for c in conditions}}
    assert len(seconds) == 8
    reused, reused_seconds, schedule = load_pools(tmp_path / "out")  # --reuse: re-decide them with other settings
    assert {condition: len(pool) for condition, pool in reused.items()} == {NULL: 2, **{c: 2 for c in conditions}}
    assert (reused_seconds, schedule) == (seconds, "alternate")
    with pytest.raises(UsageError, match="no no-change results"):
        load_pools(tmp_path)


def test_calibration_markdown_states_what_it_rests_on():
    rates = [Rate(NULL, 100, 0), Rate(Condition(0.05), 100, 60, "1.052"), Rate(Condition(0.10), 100, 99),
             Rate(Condition(plant="broken"), 100, 100, "broken")]
    text = to_markdown(rates, processes=24, rounds=6, threshold=None, alpha=0.01, compare_seconds=0.002,
                       process_seconds=[20.0, 22.0])
    assert "24 processes per condition" in text and "100 trials" in text and "not independent" in text
    cells = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| ") and "detections" in line}
    every = "busy-wait slowdown in every record at once: detections"
    assert cells[f"5 % {every}"] == ["1.052", "100", "60", "60 %", "≥ 80 %", "**no**"]
    assert cells[f"10 % {every}"] == ["-", "100", "99", "99 %", "≥ 99 %", "yes"]
    broken = next(value for key, value in cells.items() if key.startswith("planted broken"))
    assert broken == ["broken", "100", "100", "100 %", "≥ 100 %", "yes"]
    assert "6 rounds x 2 processes x 21.0 s" in text and "within the 600 s budget" in text


def test_calibrate_cli_simulation_writes_the_table(tmp_path, capsys):
    out = tmp_path / "calibration.md"
    argv = ["calibrate-gate", "--simulate", "1", "--processes", "24", "--trials", "30", "--out", str(out)]
    assert cli.main(argv) == 0
    assert out.read_text() == capsys.readouterr().out
    assert cli.main(["calibrate-gate", "--simulate", "1", "--processes", "8"]) == 2
    assert "--processes 8 is too few" in capsys.readouterr().err


def test_calibrate_cli_runs_processes_through_the_runner(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(repo)
    monkeypatch.setattr(calibrate, "default_runner", FakeRunner())
    argv = ["calibrate-gate", "--processes", "10", "--trials", "20", "--slowdowns", "0.5", "--rounds", "5",
            "--plants", "none", "--schedule", "alternate", "--results", str(tmp_path / "runs")]
    assert cli.main(argv) == 0
    assert len(calibrate.default_runner.calls) == 20
    assert "One gate: 5 rounds x 2 processes x" in capsys.readouterr().out


def test_a_relative_output_folder_is_made_absolute_for_the_processes(repo, tmp_path, monkeypatch):
    # Each process runs inside its worktree: a relative output path would land there, not here.
    monkeypatch.chdir(tmp_path)
    outputs = []

    class RecordingRunner(FakeRunner):
        def __call__(self, side, worktree, python, args, output, plant=None):
            outputs.append(Path(output))
            return super().__call__(side, worktree, python, args, output, plant)

    run_ab(repo, "HEAD~1", "HEAD", rounds=5, schedule="alternate",
           out_dir=Path("results") / "ab", runner=RecordingRunner(),
           log=lambda line: None)
    assert outputs and all(path.is_absolute() for path in outputs)
    assert all(path.parent == tmp_path / "results" / "ab" and path.exists() for path in outputs)


# --- planted changes --------------------------------------------------------------------------------------

def test_extra_op_is_sized_as_a_fraction_of_the_step():
    # the gate's MLP: 784x256, 256x128, 128x10 weights, batch 128: 180 MFLOP a step
    step_flops = 6.0 * 128 * (784 * 256 + 256 * 128 + 128 * 10)
    k = plant.extra_op_columns(784, step_flops, 0.10)
    assert 2 * 784 * k * k == pytest.approx(0.10 * step_flops, rel=0.02)


@pytest.mark.parametrize("approach", ["custom_tape", "keras_fit"])
def test_the_planted_extra_op_runs_in_every_update_without_changing_the_training(approach):
    import tensorflow as tf

    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((2, 1, 32, 28, 28, 1), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, (2, 1, 32)))
    plain = build(approach, "mlp", TrainConfig(mode="function", seed=0))
    plain.runner(list(x), list(y))()
    remove = plant.install("extra_op")
    try:
        planted = build(approach, "mlp", TrainConfig(mode="function", seed=0))
        kernel = [v for v in planted.variables_in_order() if len(v.shape) == 2][0]
        before = kernel.numpy()
        planted.runner(list(x), list(y))()
    finally:
        remove()
    optimizer = planted.optimizer if approach == "custom_tape" else planted.model.optimizer
    sink = plant.SINKS[id(optimizer)]
    k = min(256, plant.extra_op_columns(784, 6.0 * 128 * (784 * 256 + 256 * 128 + 128 * 10)))
    block = before[:, :k]
    assert float(sink.numpy()) == pytest.approx(float((block.T @ block).sum()), rel=1e-4)  # it ran, on W before
    for a, b in zip(plain.variables_in_order(), planted.variables_in_order()):  # and changed nothing else
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_the_planted_failure_breaks_custom_tape_only():
    from tfbench import implementations

    remove = plant.install("broken")
    try:
        with pytest.raises(RuntimeError, match="planted failure: custom_tape is broken"):
            implementations.build("custom_tape", "mlp")
        assert implementations.build("raw_tf_nn", "mlp") is not None
    finally:
        remove()
    assert implementations.build("custom_tape", "mlp") is not None


class ChecksRunner(FakeRunner):
    """As FakeRunner, plus the results check: the loss in the worktree's loss.txt (0.875 without one)."""

    def __call__(self, side, worktree, python, args, output, plant=None) -> ProcessResult:
        result = super().__call__(side, worktree, python, args, output, plant)
        loss_file = Path(worktree) / "loss.txt"
        loss = float(loss_file.read_text()) if loss_file.is_file() else 0.875
        document = json.loads(Path(output).read_text())
        document["records"][0]["metrics"].update(check_steps=6, check_loss=loss, check_weights_l2=24.0,
                                                 check_weights_sum=1.0)
        Path(output).write_text(json.dumps(document))
        return result


def test_ab_says_changed_results_for_a_faster_step_that_skips_its_update(repo, tmp_path, capsys):
    # the candidate skips its optimizer update: faster, and its first steps' loss differs
    (repo / "speed.txt").write_text("0.008")
    (repo / "loss.txt").write_text("2.302")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "no update")
    result = run_ab(repo, "HEAD~1", "HEAD", rounds=5, schedule="alternate", out_dir=tmp_path / "out",
                    runner=ChecksRunner(), log=lambda line: None)
    [row] = result.rows
    assert row.status == "changed results" and "check_loss 0.875 -> 2.302" in row.note
    assert "step time improved" in row.note
    accepted = run_ab(repo, "HEAD~1", "HEAD", rounds=5, schedule="alternate", out_dir=tmp_path / "out2",
                      runner=ChecksRunner(), log=lambda line: None, accept_numerics_change=True)
    assert [r.status for r in accepted.rows] == ["improved"]
    assert any("accepted" in note for note in accepted.notes)


def test_caught_alone_takes_holms_strictest_level_over_the_records_tested():
    from tfbench.benchmarks.gate.calibrate import caught_alone
    from tfbench.benchmarks.gate.compare import Row
    from tfbench.benchmarks.gate.statistics import Verdict

    def row(name, status, p_value):
        verdict = Verdict(status, 1.1, 1.05, 1.15, p_value, 13, 13, "pairs", 0.03, 1.0, 1.1, "", False)
        return Row(f"step_time/{name}/function/k1/cpu/b128/synthetic/", "step_time", status, verdict=verdict)

    rows = [row("a/mlp", "regressed", 0.001),  # below 0.01 / 4: caught whatever the others do
            row("b/mlp", "regressed", 0.004),  # significant alone, not at Holm's first level: not counted
            row("c/cnn", "unchanged", 0.0001),  # its interval did not clear the threshold
            row("d/cnn", "unchanged", 0.9),
            Row("step_time/e/cnn/xla/k1/cpu/b128/synthetic/", "step_time", "broken")]  # no test: not in m
    assert caught_alone(rows, alpha=0.01) == {"a/mlp/function"}
    assert caught_alone(rows[:1], alpha=0.01) == {"a/mlp/function"}


def test_calibration_gives_each_record_its_rate_of_a_slowdown_put_into_it_alone():
    pools = synthetic_pools(16, (0.05, 0.20), process_noise=0.005, sample_noise=0.005, seed=1, paired=True)
    rates = {rate.condition.slowdown: rate for rate in estimate_rates(pools, rounds=13, trials=60, seed=2,
                                                                     paired=True)[0]}
    assert rates[0.0].per_record == {}  # no slowdown, no detections to count
    big = rates[0.20]
    assert set(big.per_record) == set(big.record_ratios) == {"custom_tape/w0/function", "custom_tape/w1/function"}
    assert all(count == big.trials for count in big.per_record.values())  # a 20 % step is caught every time
    assert all(1.15 < ratio < 1.25 for ratio in big.record_ratios.values())
    assert all(0 <= count <= rates[0.05].trials for count in rates[0.05].per_record.values())
    text = to_markdown(list(rates.values()), processes=16, rounds=13, threshold=None, alpha=0.01,
                       compare_seconds=0.01, process_seconds=[35.0], schedule="duet")
    table = text.split("#### Per record")[1]
    line = next(line for line in table.splitlines() if line.startswith("| custom_tape/w0/function"))
    assert "100 % (1.2" in line and line.rstrip(" |").endswith("yes")
    assert "lower bound" in table and "A/A pair spread" in table
    assert "2 of 2 records catch 10 % at ≥ 90 %; 2 of 2 records catch 5 % at ≥ 80 %" in table
    assert "within the 600 s budget" in text  # 13 x 35 s
    # ... and, from the A/A pairs, each size put into each record alone
    scaled = rates[0.0].scaled
    assert scaled is not None and scaled.pairs == 16 and scaled.trials == 60
    assert all(scaled.rate(0.10, name) == 1.0 for name in big.per_record)
    assert scaled.smallest_caught("custom_tape/w0/function", 0.8) == 0.05
    assert "10 % in it alone" in table.splitlines()[2]  # a column of the table's header
    assert "log(1 + N %) added to that record's centred log ratios" in table
