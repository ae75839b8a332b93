"""The duet schedule of `tfbench ab` with fake benchmark processes (real processes, real pipes and core pins, no
TensorFlow), and the round barrier of benchmarks/timing.py. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tfbench.benchmarks import cli, timing
from tfbench.benchmarks.gate import ab, duet
from tfbench.benchmarks.gate.ab import run_ab
from tfbench.benchmarks.gate.calibrate import (
    NULL,
    Condition,
    collect_pairs,
    estimate_rates,
    load_pools,
    synthetic_pools,
)
from tfbench.benchmarks.gate.processes import RECORDS_FAILED_STATUS, ProcessFailed, ProcessResult
from tfbench.benchmarks.results import ResultsFile, load, make_record, summarize

REPO = Path(__file__).resolve().parent.parent
BARRIER_ROUNDS = 4  # measurement rounds of one fake process
two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the duet schedule needs two CPUs")

# A stand-in for the suite's `benchmarks/cli.py run`: it waits at the real round barrier (this checkout's
# benchmarks/timing.py) before each of its rounds, logging its arrival and release to $DUET_TEST_LOG; writes a
# results file with the step time of the revision's speed.txt, the CPUs it was started on, and the CPUs its main
# thread and a second thread (started before the first round, as TensorFlow's pools are) ran on in each round.
# die.txt makes it crash before the round it names; broken.txt makes its record fail (exit status 3, results
# written, no barrier).
FAKE_SUITE_CLI = textwrap.dedent('''
    import json, os, sys, threading
    sys.path.append({repo!r})
    from tfbench.benchmarks.timing import round_barrier
    args = sys.argv[1:]
    output = args[args.index("--output") + 1]
    run = os.path.basename(output)[:-len(".json")]  # a-03: side and round of the gate

    def log(event):
        with open(os.environ["DUET_TEST_LOG"], "a") as handle:
            handle.write(f"{{run}} {{event}}\\n")

    started_on = sorted(os.sched_getaffinity(0))
    round_cpus, thread_cpus = [], []
    wake, answered = threading.Event(), threading.Event()

    def worker():  # reports the CPUs it may run on whenever woken
        while True:
            wake.wait()
            wake.clear()
            thread_cpus.append(sorted(os.sched_getaffinity(0)))
            answered.set()

    threading.Thread(target=worker, daemon=True).start()
    broken = os.path.exists("broken.txt")
    die_at = int(open("die.txt").read()) if os.path.exists("die.txt") else None
    for r in range(1, {rounds} + 1):
        if broken:
            break
        if r == die_at:
            print(f"RuntimeError: boom at round {{r}}", file=sys.stderr)
            sys.exit(7)
        log(f"arrive {{r}}")
        round_barrier(f"round {{r}}/{rounds}: fake")
        log(f"release {{r}}")
        round_cpus.append(sorted(os.sched_getaffinity(0)))
        wake.set()
        answered.wait()
        answered.clear()
    median = float(open("speed.txt").read())
    samples = [median * (1 + 0.001 * ((i * 7) % 5 - 2)) for i in range(20)]
    record = {{"kind": "step_time", "approach": "fake", "workload": "mlp", "mode": "function", "steps_per_call": 1,
              "device": "cpu", "batch_size": 32, "dataset": "synthetic", "variant": "", "status": "ok",
              "reason": None, "metrics": {{"step_time_s": {{"median": sorted(samples)[10], "samples": samples}}}},
              "id": "step_time/fake/mlp/function/k1/cpu/b32/synthetic/"}}
    if broken:
        record.update(status="failed", reason="RuntimeError: planted failure", metrics={{}})
    document = {{"schema_version": 1, "complete": True, "records": [record], "environment": {{}}, "devices": [],
                "config": {{"cpus": started_on, "round_cpus": round_cpus, "thread_cpus": thread_cpus}}}}
    with open(output, "w") as handle:
        json.dump(document, handle)
    sys.exit(3 if broken else 0)
''').format(repo=str(REPO), rounds=BARRIER_ROUNDS)


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """Tags: old (no round barrier), base (10 ms), slower (13 ms), dying (B crashes at round 2), broken."""
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "cli.py").write_text(FAKE_SUITE_CLI)
    (repo / "benchmarks" / "timing.py").write_text("# a suite from before the duet schedule\n")
    (repo / "speed.txt").write_text("0.010")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "old")
    git(repo, "tag", "old")
    (repo / "benchmarks" / "timing.py").write_text(f"ROUND_BARRIER_ENV = {timing.ROUND_BARRIER_ENV!r}\n")
    git(repo, "commit", "-qam", "base")
    git(repo, "tag", "base")
    for tag, name, content in (("slower", "speed.txt", "0.013"), ("dying", "die.txt", "2"),
                               ("broken", "broken.txt", "")):
        git(repo, "checkout", "-q", "base")
        (repo / name).write_text(content)
        git(repo, "add", ".")
        git(repo, "commit", "-qm", tag)
        git(repo, "tag", tag)
    monkeypatch.setenv("DUET_TEST_LOG", str(tmp_path / "barrier.log"))
    return repo


def events(tmp_path: Path) -> list[tuple[str, str, int]]:
    lines = (tmp_path / "barrier.log").read_text().splitlines()
    return [(run, event, int(r)) for run, event, r in (line.split() for line in lines)]


def processes_mentioning(token: str) -> list[int]:
    """Live processes whose command line contains ``token`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if token in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


# --- the duet rounds --------------------------------------------------------------------------------------

@two_cores
def test_duet_releases_both_sides_together_swaps_cores_and_pairs_the_rounds(repo, tmp_path):
    lines = []
    result = run_ab(repo, "base", "slower", rounds=8, out_dir=tmp_path / "out", schedule="duet", log=lines.append)
    assert result.schedule == "duet" and result.paired
    log = events(tmp_path)
    for round_number in range(1, 9):
        runs = (f"a-{round_number:02d}", f"b-{round_number:02d}")
        for r in range(1, BARRIER_ROUNDS + 1):
            arrivals = [log.index((run, "arrive", r)) for run in runs]
            releases = [log.index((run, "release", r)) for run in runs]
            assert max(arrivals) < min(releases)  # nobody starts round r before both have arrived
    first, second = duet.choose_cores()
    cpus = {path.name: load(path)["config"]["cpus"] for side in "ab" for path in result.files[side]}
    assert (cpus["a-01.json"], cpus["b-01.json"]) == ([first], [second])
    assert (cpus["a-02.json"], cpus["b-02.json"]) == ([second], [first])  # swapped every round
    assert (cpus["a-07.json"], cpus["b-08.json"]) == ([first], [first])
    # ... and inside a round from one measurement round to the next, every thread of each side at once
    for side, start, other in (("a", first, second), ("b", second, first)):
        config = load(result.files[side][0])["config"]
        expected = [[start], [other]] * (BARRIER_ROUNDS // 2)
        assert config["round_cpus"] == config["thread_cpus"] == expected
    assert any(f"{BARRIER_ROUNDS} barriers" in line and "A on CPU" in line for line in lines)
    [row] = result.rows
    assert (row.status, row.verdict.mode, row.verdict.n_base) == ("regressed", "pairs", 8)
    assert worktree_count(repo) == 1


@two_cores
def test_a_process_dying_mid_run_stops_its_partner_exits_2_and_leaves_no_process(repo, tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.chdir(repo)
    summary = tmp_path / "summary.md"
    assert cli.main(["ab", "--baseline-rev", "base", "--candidate-rev", "dying", "--schedule", "duet", "--rounds",
                     "8", "--out", str(tmp_path / "out"), "--markdown", str(summary)]) == 2
    captured = capsys.readouterr()
    assert "RuntimeError: boom at round 2" in captured.err
    assert captured.err.strip().splitlines()[-1].startswith(
        "tfbench: error: the B round 1/8 process (`tfbench run --profile gate` in ")
    assert "exited with status 7" in captured.err
    assert "stopping the A round 1/8 process of this round" in captured.out
    assert "could not run" in summary.read_text()
    log = events(tmp_path)
    assert ("a-01", "release", 1) in log and ("a-01", "release", 2) not in log  # A waited at round 2, then stopped
    assert processes_mentioning(str(tmp_path)) == []  # no orphan: the waiting partner was stopped and reaped
    assert worktree_count(repo) == 1


@two_cores
def test_a_run_whose_records_failed_is_a_completed_run_and_the_record_is_broken(repo, tmp_path):
    # The broken candidate exits with the records-failed status after writing its results, without reaching a
    # barrier: its partner is released alone, and the gate reports the record broken.
    result = run_ab(repo, "base", "broken", rounds=8, out_dir=tmp_path / "out", schedule="duet", log=lambda _: None)
    [row] = result.rows
    assert row.status == "broken"
    assert row.note == "failed in 8 of 8 candidate runs: RuntimeError: planted failure"
    assert {event for _, event, _ in events(tmp_path)} == {"arrive", "release"}
    assert all(run.startswith("a-") for run, _, _ in events(tmp_path))


def test_the_alternate_schedule_treats_the_records_failed_status_as_a_completed_run(repo, tmp_path):
    def runner(side, worktree, python, args, output, plant=None):
        results = ResultsFile.create(output, run_id="fake", config={}, environment={})
        status = {"status": "failed", "reason": "RuntimeError: planted"} if side == "B" else {}
        results.add(make_record("step_time", approach="custom_tape", workload="mlp", mode="function",
                                steps_per_call=1, device="cpu", batch_size=32, dataset="synthetic",
                                metrics={} if status else {"step_time_s": summarize([0.01, 0.011, 0.012])},
                                **status))
        results.save(complete=True)
        return ProcessResult(RECORDS_FAILED_STATUS if side == "B" else 0, "1 record FAILED")

    lines = []
    result = run_ab(repo, "base", "base", rounds=5, schedule="alternate",
                    out_dir=tmp_path / "out", runner=runner, log=lines.append)
    assert [row.status for row in result.rows] == ["broken"]
    assert "B round 1/5" in lines[1] and "(1 record failed)" in lines[1]

    def incomplete(side, worktree, python, args, output, plant=None):  # the status, but no finished results
        return ProcessResult(RECORDS_FAILED_STATUS, "Traceback: crashed")

    with pytest.raises(ProcessFailed, match="exited with status 3"):
        run_ab(repo, "base", "base", rounds=5, schedule="alternate",
               out_dir=tmp_path / "out2", runner=incomplete, log=lambda _: None)


# --- falling back to the alternate schedule ---------------------------------------------------------------

def in_process_runner(side, worktree, python, args, output, plant=None) -> ProcessResult:
    """The alternate schedule's runner, without a process: the step time of the worktree's speed.txt."""
    median = float((Path(worktree) / "speed.txt").read_text())
    results = ResultsFile.create(output, run_id="fake", config={}, environment={})
    results.add(make_record("step_time", approach="fake", workload="mlp", mode="function", steps_per_call=1,
                            device="cpu", batch_size=32, dataset="synthetic",
                            metrics={"step_time_s": summarize([median * (1 + 0.001 * i) for i in range(-2, 3)])}))
    results.save(complete=True)
    return ProcessResult(0)


def test_duet_falls_back_to_alternate_when_the_baseline_has_no_round_barrier(repo, tmp_path):
    lines = []
    result = run_ab(repo, "old", "slower", rounds=8, out_dir=tmp_path / "out", schedule="duet", log=lines.append,
                    runner=in_process_runner)
    assert result.schedule == "alternate" and not result.paired
    assert lines[0] == ("the baseline revision old has no round barrier (its benchmarks/timing.py predates the duet "
                        "schedule), and duet needs both sides to wait at it: running the alternate schedule")
    assert result.rows[0].verdict.mode == "runs"


def test_duet_falls_back_to_alternate_on_one_core(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(duet, "choose_cores", lambda: None)
    monkeypatch.setattr(ab, "subprocess_runner", in_process_runner)
    monkeypatch.chdir(repo)
    assert cli.main(["ab", "--baseline-rev", "base", "--candidate-rev", "slower", "--schedule", "duet",
                     "--rounds", "8", "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("the duet schedule needs two cores and this process may use ")
    assert "alternate schedule" in out.splitlines()[0]


def test_duet_needs_eight_rounds_at_alpha_one_percent(repo, tmp_path):
    with pytest.raises(ab.UsageError, match="duet schedule's test needs >= 8 rounds"):
        run_ab(repo, "base", "slower", rounds=7, out_dir=tmp_path / "out", schedule="duet")


def test_cores_are_chosen_on_different_physical_cores(tmp_path):
    assert duet.choose_cores({3}) is None
    for cpu, core in enumerate([0, 0, 1, 1]):  # two cores with two hyperthreads each
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert duet.choose_cores({0, 1, 2, 3}, sysfs=tmp_path) == (0, 2)
    assert duet.choose_cores({0, 1}, sysfs=tmp_path) == (0, 1)  # one core only: two of its CPUs
    assert duet.choose_cores({5, 7}, sysfs=tmp_path / "missing") == (5, 7)  # no topology


def test_the_cores_of_a_measurement_round_alternate_with_its_number():
    assert duet.round_cores("round 1/4: a b", [0, 1]) == [0, 1]
    assert duet.round_cores("round 2/4: a b", [0, 1]) == [1, 0]
    assert duet.round_cores("round 12: a", [1, 0]) == [0, 1]  # the sequential rounds' label has no "/N"
    assert duet.round_cores("round 2/4: a", [0, None]) == [0, None]  # an unpinned side: nothing moves
    assert duet.round_cores("warm-up", [0, 1]) == [0, 1]  # no round number: as started


def test_pinning_the_threads_of_a_gone_process_pins_none(tmp_path):
    assert duet.pin_threads(2 ** 22 + 1, 0) == 0  # above Linux's largest pid
    (tmp_path / "7" / "task" / "123456789").mkdir(parents=True)  # a thread that ended after the listing
    assert duet.pin_threads(7, 0, tasks=tmp_path) == 0


@two_cores
def test_without_the_in_round_swap_each_side_keeps_its_core(repo, tmp_path):
    git(repo, "checkout", "-q", "base")
    first, second = duet.choose_cores()
    outputs = [tmp_path / f"{side}.json" for side in "ab"]
    specs = [duet.DuetProcess(side, repo, sys.executable, ("--profile", "gate"), output, core)
             for side, output, core in zip("AB", outputs, (first, second))]
    outcome = duet.run_together(specs, log=lambda line: None, swap_cores=False)
    assert (outcome.barriers, outcome.swaps) == (BARRIER_ROUNDS, 0)
    assert load(outputs[0])["config"]["thread_cpus"] == [[first]] * BARRIER_ROUNDS
    assert load(outputs[1])["config"]["round_cpus"] == [[second]] * BARRIER_ROUNDS
    assert duet.run_together(specs, log=lambda line: None).swaps == BARRIER_ROUNDS - 1  # rounds 2, 3 and 4


# --- the barrier hook in benchmarks/timing.py -------------------------------------------------------------

def test_measure_interleaved_waits_at_the_barrier_before_each_round(monkeypatch):
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    monkeypatch.setenv(timing.ROUND_BARRIER_ENV, f"{ready_write},{go_read}")
    ticks = iter(range(10_000))
    calls = []
    configs = {name: timing.Timed(lambda name=name: calls.append(name) or 1.0) for name in ("a", "b")}
    worker = threading.Thread(target=timing.measure_interleaved, args=(configs,),
                              kwargs={"rounds": 3, "round_budget_s": 2, "min_per_round": 1, "max_per_round": 1,
                                      "warmup": 0, "clock": lambda: float(next(ticks))})
    worker.start()
    reader = os.fdopen(ready_read)
    labels = []
    for _ in range(3):
        labels.append(reader.readline().strip())
        timed_before = len(configs["a"].samples) + len(configs["b"].samples)
        os.write(go_write, b"g")
        assert timed_before == 2 * (len(labels) - 1)  # the round had not started before its release
    worker.join(timeout=30)
    assert labels == ["round 1/3: a b", "round 2/3: b a", "round 3/3: a b"]
    assert len(configs["a"].samples) == 3
    for fd in (ready_write, go_read, go_write):
        os.close(fd)
    reader.close()


def test_the_barrier_ends_the_process_when_the_gate_is_gone(monkeypatch):
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    os.close(go_write)  # the gate died
    monkeypatch.setenv(timing.ROUND_BARRIER_ENV, f"{ready_write},{go_read}")
    with pytest.raises(SystemExit, match="round barrier is gone"):
        timing.round_barrier("round 1/5: x")
    assert os.read(ready_read, 100) == b"round 1/5: x\n"
    for fd in (ready_read, ready_write, go_read):
        os.close(fd)


def test_without_the_variable_the_barrier_does_nothing(monkeypatch):
    monkeypatch.delenv(timing.ROUND_BARRIER_ENV, raising=False)
    timing.round_barrier("round 1/1: x")  # returns at once


def test_a_child_whose_gate_dies_exits_at_its_next_barrier(tmp_path):
    # The child waits at a barrier whose go pipe's writer (the "gate") is closed: it must exit, not hang.
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tfbench.benchmarks.timing import round_barrier; "
            "round_barrier('round 1/2: x'); round_barrier('round 2/2: x')")
    child = subprocess.Popen([sys.executable, "-c", code, str(REPO)], pass_fds=(ready_write, go_read),
                             env={**os.environ, timing.ROUND_BARRIER_ENV: f"{ready_write},{go_read}"},
                             stderr=subprocess.PIPE, text=True)
    os.close(ready_write)
    os.close(go_read)
    assert os.read(ready_read, 100) == b"round 1/2: x\n"
    os.close(go_write)
    assert child.wait(timeout=60) == 1
    assert "round barrier is gone" in child.stderr.read()
    child.stderr.close()
    os.close(ready_read)


def test_json_of_an_ab_run_says_when_the_gate_could_not_run(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    decision = tmp_path / "decision.json"
    assert cli.main(["ab", "--baseline-rev", "nope", "--json", str(decision), "--out", str(tmp_path / "o")]) == 2
    document = json.loads(decision.read_text())
    assert document["exit_status"] == 2 and "not a commit" in document["error"]


# --- calibrating the duet schedule ------------------------------------------------------------------------

@two_cores
def test_calibration_pairs_each_condition_with_a_no_change_process_on_swapped_cores(repo, tmp_path):
    git(repo, "checkout", "-q", "base")
    cores = duet.choose_cores()
    conditions = (Condition(0.5),)
    pools, seconds = collect_pairs(2, conditions, run_args=["--profile", "gate"], out_dir=tmp_path / "out",
                                   worktree=repo, cores=cores, log=lambda _: None)
    assert {condition: len(pairs) for condition, pairs in pools.items()} == {NULL: 2, Condition(0.5): 2}
    assert len(seconds) == 4
    names = sorted(path.name for path in (tmp_path / "out").glob("duet-*.json"))
    assert names[:2] == ["duet-slowdown0-001-a.json", "duet-slowdown0-001-b.json"]
    def cpus(condition):
        return [load(tmp_path / "out" / f"duet-{condition}-{index:03d}-{side}.json")["config"]["cpus"]
                for index in (1, 2) for side in "ab"]

    # each condition's pairs swap cores from one pair to the next, whatever the number of conditions
    assert cpus("slowdown0") == cpus("slowdown0.5") == [[cores[0]], [cores[1]], [cores[1]], [cores[0]]]
    reused, reused_seconds, schedule = load_pools(tmp_path / "out")
    assert schedule == "duet" and reused_seconds == seconds
    assert {condition: len(pairs) for condition, pairs in reused.items()} == {NULL: 2, Condition(0.5): 2}


def test_paired_calibration_on_synthetic_pairs_meets_the_targets_where_unpaired_cannot():
    # Large run-to-run noise, mostly shared by the two processes of a round: pairing cancels the shared part.
    paired = synthetic_pools(16, (0.05, 0.10), process_noise=0.08, sample_noise=0.005, shared=1.0, seed=1, paired=True,
                             pair_share=0.97)
    rates = {rate.condition: rate for rate in estimate_rates(paired, rounds=12, trials=150, seed=2, paired=True)[0]}
    assert rates[NULL].rate <= 0.01
    assert rates[Condition(0.10)].rate >= 0.99 and rates[Condition(0.05)].rate >= 0.8
    assert all(1.05 < float(ratio) < 1.15 for ratio in rates[Condition(0.10)].change.split(", "))
    unpaired = synthetic_pools(24, (0.05,), process_noise=0.08, sample_noise=0.005, shared=1.0, seed=1)
    alternate = {rate.condition: rate for rate in estimate_rates(unpaired, rounds=12, trials=150, seed=2)[0]}
    assert alternate[Condition(0.05)].rate < 0.5


def test_calibrate_cli_simulates_the_duet_schedule(tmp_path, capsys):
    argv = ["calibrate-gate", "--schedule", "duet", "--simulate", "1", "--processes", "8", "--rounds", "8",
            "--trials", "20", "--out", str(tmp_path / "duet.md")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("### Regression gate calibration: duet schedule, 8 rounds")
    assert "8 duet pairs per condition" in out
    assert cli.main([*argv[:5], "--processes", "7", "--rounds", "8"]) == 2
    assert "needs 8 distinct pairs" in capsys.readouterr().err
