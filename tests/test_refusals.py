"""Nothing the user gave is silently ignored (issue 22): options no stage of a run honours, outputs under a file.

``tfbench run --strategy mirrored --stages step_time`` used to exit 0 and record ``strategy: none``. Now each
stage declares the ``tfbench run`` options it honours (its ``FLAGS``), a few options every run honours are
``COMMON_FLAGS``, and any other option given is refused in one line, exit 2. The matrix test walks the real
parser's options and the registered stages, so an option or a stage added later is covered as it is, and an
option that nobody declares fails it. A few declarations are then proven on what the stages plan (their
``jobs(context)`` on a fake context, no TensorFlow), and a few refusals on what they do not.

Second half: an output path under a regular file (``X/out.md``, ``X`` a file) names ``X`` and says what to do,
for every output option of every command, where the system call only said "File exists".
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

import tfbench
from tfbench.api import RUN_OPTIONS
from tfbench.benchmarks import runner, suite
from tfbench.benchmarks.cli import build_parser, main
from tfbench.benchmarks.plan import COMMON_FLAGS, build_plan, refuse_ignored, run_stages
from tfbench.benchmarks.results import ResultsFile, write_json_atomic
from tfbench.benchmarks.stages import STAGES
from tfbench.benchmarks.stages import as_published as as_published_stage
from tfbench.benchmarks.stages.base import Context
from tfbench.errors import ConfigError, WriteError

FIXTURES = Path(__file__).parent / "fixtures"


class Reached(Exception):
    """Raised by a stand-in for the suite's ``execute``: the run was not refused."""


@pytest.fixture
def no_measuring(monkeypatch):
    def execute(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(suite, "execute", execute)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tfbench: error: "), err
    return lines[0]


def run_parser() -> argparse.ArgumentParser:
    parser = build_parser("run")
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["run"]


def run_options() -> list[argparse.Action]:
    return [a for a in run_parser()._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def sample(action: argparse.Action, tmp_path: Path) -> list[str]:
    """The option with a value its parser accepts (what the value is does not matter to the refusal)."""
    flag = action.option_strings[0]
    if action.nargs == 0:
        return [flag]
    if action.choices:
        return [flag, str(list(action.choices)[-1])]
    if action.type is Path:
        return [flag, str(tmp_path / "somewhere")]
    if action.type is float:
        return [flag, "0.5"]
    return [flag, "2" if action.type is not None else "1,1"]


def honours(stage: str, dest: str) -> bool:
    return dest in COMMON_FLAGS or dest in STAGES[stage].FLAGS


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("run").parse_args(["run", *argv])


# --- the matrix: every option x every stage --------------------------------------------------------------------


def test_every_declared_flag_is_a_run_option_and_every_default_is_unset():
    dests = {action.dest for action in run_options()}
    for name, stage in STAGES.items():
        assert set(stage.FLAGS) <= dests, f"{name}.FLAGS names what `tfbench run` does not take"
        assert not set(stage.FLAGS) & set(COMMON_FLAGS), f"{name}.FLAGS repeats a common option"
    assert set(COMMON_FLAGS) <= dests
    # A default other than None/False would count as given: an option the user never typed would be refused.
    assert runner.given_options(parse()) == []


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_run_option_is_refused_iff_the_stage_does_not_honour_it(stage, tmp_path, capsys, no_measuring):
    for action in run_options():
        dest, flag = action.dest, action.option_strings[0]
        assert dest in COMMON_FLAGS or any(dest in s.FLAGS for s in STAGES.values()), \
            f"{flag} is honoured by no stage: declare it in the FLAGS of the stages that read it, or in COMMON_FLAGS"
        if dest == "stages":
            continue  # the option that chooses the stage itself
        argv = [*sample(action, tmp_path), "--stages", stage]
        args = parse(*argv)
        assert dest in runner.given_options(args)
        if honours(stage, dest):  # the same check make_plan makes first: it lets this option through
            refuse_ignored(runner.given_options(args), run_stages("quick", args.stages, args.strategy or "none"))
            continue
        code, _, err = run_cli(capsys, "run", *argv)
        line = one_error_line(err)
        where = [name for name, s in STAGES.items() if dest in s.FLAGS]
        assert code == 2, line
        assert line.startswith(f"tfbench: error: {flag} is honoured only by the "), line
        assert all(name in line for name in where) and "--stages" in line and line.endswith(f"drop {flag}"), line


def test_the_users_example_is_refused_with_one_line_naming_the_distributed_stage(capsys, no_measuring):
    code, _, err = run_cli(capsys, "run", "--strategy", "mirrored", "--stages", "step_time")
    assert code == 2 and one_error_line(err) == ("tfbench: error: --strategy is honoured only by the distributed "
                                                 "stage; add it to --stages or drop --strategy")
    code, _, err = run_cli(capsys, "run", "--strategy", "mirrored", "--replicas", "2", "--stages", "step_time")
    assert code == 2 and "--strategy and --replicas are honoured only by the distributed stage" in one_error_line(err)


def test_an_option_honoured_by_any_stage_of_the_run_passes_and_the_default_stages_count(tmp_path, no_measuring):
    refuse_ignored(["dataset", "batch_size"], ("step_time", "accuracy"))  # each honoured by one of them
    refuse_ignored(["strategy", "replicas"], run_stages("quick", None, "mirrored"))  # a strategy: distributed
    with pytest.raises(ConfigError, match="--dataset is honoured only by the accuracy and mixed_precision stages"):
        refuse_ignored(["dataset"], run_stages("gate"))  # the gate profile measures step times only
    with pytest.raises(ConfigError, match="--frobnicate is honoured by no stage; drop --frobnicate"):
        refuse_ignored(["frobnicate"], STAGES)
    with pytest.raises(ConfigError, match="; add a stage that honours each to --stages, or drop --dataset and "
                                          "--strategy$"):
        refuse_ignored(["dataset", "strategy"], ("step_time",))
    # Through the CLI, an honoured option reaches the measuring.
    with pytest.raises(Reached):
        main(["run", "--dataset", "synthetic", "--approach", "raw_tf_nn", "--stages", "accuracy", "--quiet",
              "--output", str(tmp_path / "r.json")])


def test_worker_timeout_needs_the_multiworker_strategy(capsys, no_measuring):
    code, _, err = run_cli(capsys, "run", "--strategy", "mirrored", "--worker-timeout", "5")
    assert code == 2 and "add --strategy multiworker or drop --worker-timeout" in one_error_line(err)


# --- a resumed run: its stored stages decide ------------------------------------------------------------------


def _stored_run(tmp_path: Path, stages: tuple[str, ...]) -> Path:
    path = tmp_path / f"{'-'.join(stages)}.json"
    plan = build_plan("quick", approaches=["raw_tf_nn"], workloads=["mlp"], stages=stages).with_devices(["cpu"])
    ResultsFile.create(path, run_id="r", config={"profile": "quick", "plan": plan.to_dict()},
                       environment={"threads": {"intra_op": 1, "inter_op": 1}})
    return path


def test_a_resumed_run_refuses_what_its_stored_stages_do_not_honour(tmp_path, capsys, no_measuring):
    path = _stored_run(tmp_path, ("step_time",))
    code, _, err = run_cli(capsys, "run", "--resume", path, "--data-dir", tmp_path)
    line = one_error_line(err)
    assert code == 2 and f"--resume {path}: --data-dir is honoured only by the accuracy" in line
    assert line.endswith("this run's stages are step_time: drop --data-dir")
    code, _, err = run_cli(capsys, "run", "--resume", path, "--seed", "3")  # the resume rule still comes first
    assert code == 2 and "--seed would change what it measures" in one_error_line(err)
    with pytest.raises(Reached):  # what the stored stages honour is taken
        main(["run", "--resume", str(_stored_run(tmp_path, ("accuracy",))), "--data-dir", str(tmp_path),
              "--no-verify", "--threads", "1,1", "--quiet"])


# --- the Python API: the same rule, a ConfigError --------------------------------------------------------------


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_api_argument_is_refused_iff_the_stage_does_not_honour_it(stage, tmp_path, monkeypatch, no_measuring):
    monkeypatch.chdir(tmp_path)  # an argument that gets through may create results/ here
    for name in inspect.signature(tfbench.run).parameters:
        assert name in RUN_OPTIONS, f"tfbench.run({name}=...) has no `tfbench run` option in api.RUN_OPTIONS"
        if name == "stages":
            continue
        dest = RUN_OPTIONS[name]
        with pytest.raises(Exception) as info:  # noqa: PT011 (a sentinel value fails somewhere, or Reached)
            tfbench.run(**{name: object(), "stages": [stage]})
        refused = isinstance(info.value, ConfigError) and "is honoured only by" in str(info.value)
        assert refused == (not honours(stage, dest)), (name, stage, info.value)
        if refused:
            assert str(info.value).startswith(f"{name}= is honoured only by the ") and "stages=" in str(info.value)


def test_the_api_default_dataset_is_not_an_argument_given(monkeypatch, tmp_path, no_measuring):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Reached):
        tfbench.run(approaches=["raw_tf_nn"], workloads=["mlp"], stages=["step_time"])
    with pytest.raises(ConfigError, match="dataset= is honoured only by the accuracy and mixed_precision stages"):
        tfbench.run(dataset="mnist", stages=["step_time"])


# --- the declarations proven on what each stage plans -----------------------------------------------------------


class FakeDevice:
    name, kind, tf_device = "cpu", "cpu", "/CPU:0"


def planned(stage: str, *argv: str) -> list[dict]:
    """The record stubs ``stage`` plans for ``tfbench run ARGV --stages STAGE`` (no TensorFlow)."""
    plan = runner.make_plan(parse(*argv, "--stages", stage)).with_devices(["cpu"])
    context = Context(plan=plan, devices=[FakeDevice()], results=None, log=print, tf=None)
    return [stub for job in STAGES[stage].jobs(context) for stub in job.stubs]


@pytest.mark.parametrize(("stage", "argv", "field"), [
    ("step_time", ["--batch-size", "8"], "batch_size"),
    ("step_time", ["--approach", "raw_tf_nn"], "approach"),
    ("step_time", ["--workload", "cnn"], "workload"),
    ("step_time", ["--mode", "xla"], "mode"),
    ("step_time", ["--steps-per-call", "4"], "steps_per_call"),
    ("breakdown", ["--mode", "eager"], "mode"),
    ("breakdown", ["--batch-size", "8"], "batch_size"),
    ("accuracy", ["--dataset", "synthetic"], "dataset"),
    ("accuracy", ["--workload", "cnn"], "workload"),
    ("distributed", ["--strategy", "mirrored"], "strategy"),
    ("distributed", ["--strategy", "mirrored", "--batch-size", "8"], "batch_size"),
])
def test_an_honoured_option_changes_what_the_stage_plans(stage, argv, field):
    base = planned(stage, *(["--strategy", "mirrored"] if "--strategy" in argv and field != "strategy" else []))
    given = planned(stage, *argv)
    assert {s[field] for s in given} != {s[field] for s in base}, (stage, argv)


def test_replicas_and_the_as_published_modes_change_the_plan():
    two = {s["replicas"] for s in planned("distributed", "--strategy", "mirrored", "--replicas", "2")}
    default = {s["replicas"] for s in planned("distributed", "--strategy", "mirrored")}
    assert two == {1, 2} and default == {1, 2, 4}
    plan = runner.make_plan(parse("--stages", "as_published", "--mode", "function", "--steps-per-call", "1"))
    assert as_published_stage.fixed_configs(plan, 32) == [("eager", 1), ("function", 1)]
    assert len(as_published_stage.fixed_configs(runner.make_plan(parse("--stages", "as_published")), 32)) > 2


@pytest.mark.parametrize(("stage", "narrowing"), [
    ("input_pipeline", {"batch_sizes": (8,), "approaches": ("raw_tf_nn",), "modes": ("eager",)}),
    ("recipe", {"approaches": ("raw_tf_nn",), "workloads": ("cnn",), "dataset": "synthetic"}),
    ("accuracy", {"batch_sizes": (8,), "modes": ("eager",)}),
    ("as_published", {"approaches": ("raw_tf_nn",), "batch_sizes": (8,), "dataset": "synthetic"}),
])
def test_a_refused_option_would_not_have_changed_what_the_stage_plans(stage, narrowing):
    def stubs(**kwargs):
        plan = build_plan("quick", stages=(stage,), **kwargs).with_devices(["cpu"])
        context = Context(plan=plan, devices=[FakeDevice()], results=None, log=print, tf=None)
        return [stub for job in STAGES[stage].jobs(context) for stub in job.stubs]

    assert stubs(**narrowing) == stubs()


# --- an output under a regular file names that file -----------------------------------------------------------


OUTPUTS = {
    "run --out": lambda f: ["run", "--stages", "step_time", "--out", f / "results"],
    "run --output": lambda f: ["run", "--stages", "step_time", "--output", f / "r.json"],
    "run --report": lambda f: ["run", "--stages", "step_time", "--output", f.parent / "ok.json", "--report",
                               f / "report"],
    "train --json": lambda f: ["train", "--approach", "raw_tf_nn", "--dataset", "synthetic", "--json", f / "t.json"],
    "compare --markdown": lambda f: ["compare", FIXTURES / "results_cpu.json", FIXTURES / "results_cpu.json",
                                     "--markdown", f / "deeper" / "c.md"],
    "compare --json": lambda f: ["compare", FIXTURES / "results_cpu.json", FIXTURES / "results_cpu.json",
                                 "--json", f / "c.json"],
    "ab --markdown": lambda f: ["ab", "--baseline-rev", "HEAD", "--markdown", f / "a.md"],
    "ab --json": lambda f: ["ab", "--baseline-rev", "HEAD", "--json", f / "a.json"],
    "ab --out": lambda f: ["ab", "--baseline-rev", "HEAD", "--out", f / "runs"],
    "report --out": lambda f: ["report", FIXTURES / "results_cpu.json", "--out", f / "report"],
    "calibrate-gate --out": lambda f: ["calibrate-gate", "--out", f / "c.md"],
    "calibrate-gate --results": lambda f: ["calibrate-gate", "--results", f / "runs"],
}


@pytest.mark.parametrize("option", list(OUTPUTS))
def test_an_output_under_a_regular_file_names_that_file(option, tmp_path, capsys, monkeypatch, no_measuring):
    from tfbench.benchmarks.gate import ab, calibrate

    monkeypatch.setattr(ab, "run_ab", lambda *a, **k: pytest.fail("ran before checking its outputs"))
    monkeypatch.setattr(calibrate, "collect_pools", lambda *a, **k: pytest.fail("ran before checking its outputs"))
    monkeypatch.setattr(calibrate, "collect_pairs", lambda *a, **k: pytest.fail("ran before checking its outputs"))
    regular = tmp_path / "X"
    regular.write_text("a file, not a folder")
    code, stdout, err = run_cli(capsys, *OUTPUTS[option](regular))
    line = one_error_line(err)
    assert code == 2 and f"{regular} is a file, not a folder" in line and f"give a path outside {regular}" in line
    assert "File exists" not in line and "Not a directory" not in line
    assert "epoch" not in stdout and regular.read_text() == "a file, not a folder"


def test_a_late_write_under_a_regular_file_names_that_file(tmp_path):
    regular = tmp_path / "X"
    regular.write_text("x")
    for target in (regular / "r.json", regular / "a" / "b" / "r.json"):  # EEXIST, then ENOTDIR from mkdir
        with pytest.raises(WriteError) as info:
            write_json_atomic(target, {"records": []}, what="JSON decision table")
        assert str(info.value) == (f"cannot write the JSON decision table {target}: {regular} is a file, not a "
                                   f"folder, so nothing can be put under it; give a path outside {regular}, or "
                                   "move that file away")


def test_the_refusal_comes_before_tensorflow_is_imported():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    script = ("import sys; from tfbench.benchmarks.cli import main; code = main(['run', '--strategy', 'mirrored', "
              "'--replicas', '2', '--stages', 'step_time']); assert 'tensorflow' not in sys.modules, 'imported'; "
              "sys.exit(code)")
    process = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120,
                             env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == ["tfbench: error: --strategy and --replicas are honoured only by "
                                                   "the distributed stage; add it to --stages or drop --strategy "
                                                   "and --replicas"]
