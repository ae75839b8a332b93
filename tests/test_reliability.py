"""Nothing lost, nothing wrong recorded as right: results files, diverging training, every write.

Each test reproduces one way the tool used to lose or misreport work: a results
file replaced without a word, two runs writing one file, a loss gone to NaN
recorded as a success, NaN tokens that strict JSON parsers reject, a traceback
(and the result lost) when an output cannot be written, a resume that could not
finish what was skipped, SIGTERM ending a run without a word. Built on tiny
synthetic data and fakes; a real process only where a signal must be sent.
"""

from __future__ import annotations

import errno
import gzip
import json
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfbench.benchmarks.cli import main
from tfbench.benchmarks.outputs import WriterLock, check_dir, check_file
from tfbench.benchmarks.results import ResultsFile, load, make_record, summarize, write_json_atomic
from tfbench.benchmarks.timing import Timed, first_and_warmup
from tfbench.errors import TrainingDiverged, WriteError

FIXTURES = Path(__file__).parent / "fixtures"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tfbench: "), err
    return lines[0]


def strict_load(path: Path):
    """Parse as strict JSON parsers (JavaScript's JSON.parse, jq) do: NaN and Infinity are not JSON."""
    def reject(token):
        raise ValueError(f"{path}: {token} is not JSON")
    return json.loads(Path(path).read_text(), parse_constant=reject)


# --- strict JSON -----------------------------------------------------------------------------------------


def test_results_are_strict_json_with_each_nonfinite_number_accounted_for(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"records": [{"metrics": {"history": [{"loss": 0.5}, {"loss": math.nan}],
                                                     "ratio": math.inf, "low": np.float32(-np.inf),
                                                     "a/b": [1.0, np.float64(2.0)]}}]})
    document = strict_load(path)
    metrics = document["records"][0]["metrics"]
    assert metrics["history"][1]["loss"] is None and metrics["ratio"] is None and metrics["low"] is None
    assert metrics["a/b"] == [1.0, 2.0]
    assert document["nonfinite_values"] == {"/records/0/metrics/history/1/loss": "NaN",
                                            "/records/0/metrics/ratio": "Infinity",
                                            "/records/0/metrics/low": "-Infinity"}


def test_report_and_compare_still_read_older_files_with_nan(tmp_path, capsys):
    """Files written before strict JSON hold bare NaN tokens: they must stay readable."""
    document = json.loads((FIXTURES / "results_cpu.json").read_text())
    ok = [r for r in document["records"] if r["status"] == "ok" and r["kind"] == "accuracy"]
    ok[0]["metrics"]["history"][0]["loss"] = math.nan
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document, allow_nan=True))
    assert "NaN" in old.read_text()
    assert math.isnan(load(old)["records"][document["records"].index(ok[0])]["metrics"]["history"][0]["loss"])
    code, _, err = run_cli(capsys, "report", old, "--out", tmp_path / "report")
    assert code == 0, err
    code, _, err = run_cli(capsys, "compare", old, old, "--metric", "accuracy")
    assert code == 0, err


# --- diverging training ----------------------------------------------------------------------------------


APPROACHES = ("custom_tape", "keras_fit", "dual_optimizer_tape", "raw_tf_nn", "naive_sequential")


@pytest.mark.parametrize("approach", APPROACHES)
def test_every_approach_stops_at_a_nonfinite_loss_and_says_where(approach):
    from tfbench.implementations import build
    from tfbench.implementations.datasets import load as load_data
    from tfbench.implementations.interface import OptimizerSpec, TrainConfig

    data = load_data("synthetic", synthetic_sizes=(256, 32))
    huge = OptimizerSpec("sgd", 1e4)  # a real divergence, not a fake: the weights blow up within a few steps
    trainer = build(approach, "mlp", TrainConfig(optimizer=huge, upper_optimizer=huge))
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit(data.train.x, data.train.y, epochs=3, batch_size=32)
    assert info.value.epoch == 1 and info.value.history == []
    message = str(info.value)
    assert "epoch 1 of 3" in message and "\n" not in message
    if approach != "keras_fit":  # fit reports its loss per epoch only
        assert info.value.step.startswith("at step ") and info.value.step in message


def test_the_step_of_a_divergence_inside_a_call_of_k_steps():
    from tfbench.implementations import build
    from tfbench.implementations.datasets import load as load_data
    from tfbench.implementations.interface import OptimizerSpec, TrainConfig

    data = load_data("synthetic", synthetic_sizes=(256, 32))
    trainer = build("raw_tf_nn", "mlp", TrainConfig(steps_per_call=4, optimizer=OptimizerSpec("sgd", 1e4)))
    with pytest.raises(TrainingDiverged, match=r"in steps \d+-\d+ of 8"):
        trainer.fit(data.train.x, data.train.y, epochs=1, batch_size=32)


def test_a_nonfinite_step_time_loss_names_the_call_and_steps():
    values = iter([1.0, 2.0, math.nan, 3.0, math.inf])
    timed = Timed(lambda: next(values), steps_per_call=4)
    first_and_warmup(timed, 4, sync=lambda: None, clock=time.perf_counter)
    assert timed.nonfinite and timed.nonfinite_reason.startswith(
        "the loss became NaN or infinite at call 3 (steps 9-12")


def test_train_exits_3_on_divergence_and_still_writes_its_json(capsys, tmp_path):
    out = tmp_path / "diverged.json"
    code, stdout, err = run_cli(capsys, "train", "--approach", "raw_tf_nn", "--dataset", "synthetic",
                                "--optimizer", "sgd:1e4", "--batch-size", "32", "--epochs", "2", "--json", out)
    assert code == 3
    line = one_error_line(err)
    assert line.startswith("tfbench: training failed: the training loss became nan in epoch 1 of 2, at step")
    result = strict_load(out)
    assert result["status"] == "failed" and "epoch 1 of 2" in result["reason"]
    assert result["approach"] == "raw_tf_nn" and result["history"] == []
    assert "loss nan" not in stdout


def test_a_recipe_that_diverges_raises_with_the_epoch(monkeypatch):
    from dataclasses import replace

    from tfbench.benchmarks import training
    from tfbench.implementations.datasets import load as load_data
    from tfbench.implementations.interface import OptimizerSpec
    from tfbench.implementations.recipes import get_recipe

    monkeypatch.setattr(training, "load", lambda name, **kwargs: load_data("synthetic", synthetic_sizes=(2048, 32)))
    recipe = replace(get_recipe("ann_gradienttape"), optimizer=OptimizerSpec("sgd", 1e4))
    with pytest.raises(TrainingDiverged, match="epoch 1 of 2"):
        training.run_recipe(recipe, epochs=2)


def test_an_accuracy_record_whose_loss_diverges_is_failed(tmp_path, monkeypatch):
    import keras

    from tfbench.implementations.interface import OptimizerSpec

    monkeypatch.setattr(OptimizerSpec, "make", lambda self: keras.optimizers.SGD(learning_rate=1e4))
    path = tmp_path / "r.json"
    code = main(["run", "--approach", "raw_tf_nn", "--workload", "mlp", "--stages", "accuracy", "--dataset",
                 "synthetic", "--quiet", "--output", str(path)])
    record = strict_load(path)["records"][0]
    assert record["status"] == "failed", record
    assert "the training loss became nan in epoch 1 of 3, at step" in record["reason"]
    assert code == 3  # a failed record: a CI job notices


def test_a_diverged_record_keeps_the_epochs_completed_before_it(tmp_path, monkeypatch):
    from tfbench.benchmarks.stages import accuracy
    from tfbench.errors import TrainingDiverged

    before = [{"epoch": 1, "loss": 0.5, "accuracy": 0.8, "test_accuracy": 0.81}]

    def diverges_in_epoch_2(context, job):
        raise TrainingDiverged("the training loss became nan in epoch 2 of 3", epoch=2, history=before)

    monkeypatch.setattr(accuracy, "run", diverges_in_epoch_2)
    path = tmp_path / "r.json"
    assert main(["run", "--approach", "raw_tf_nn", "--workload", "mlp", "--stages", "accuracy", "--dataset",
                 "synthetic", "--quiet", "--output", str(path)]) == 3
    record = strict_load(path)["records"][0]
    assert record["status"] == "failed" and record["metrics"] == {"history": before}


# --- outputs: checked first, one line when they cannot be written ------------------------------------------


def test_output_checks_name_the_path_and_the_cause(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    with pytest.raises(WriteError, match=f"{regular} is a file, not a folder"):
        check_file(regular / "sub" / "r.json", "the results file")
    with pytest.raises(WriteError, match="it is a directory"):
        check_file(tmp_path, "the results file")
    with pytest.raises(WriteError, match="it is a file, not a folder"):
        check_dir(regular, "the report")
    assert check_file(tmp_path / "new" / "deeper" / "r.json", "x") and not (tmp_path / "new").exists()
    assert check_dir(tmp_path / "report", "x") and not (tmp_path / "report").exists()
    assert not list(tmp_path.glob(".tfbench-probe-*"))


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_train_checks_its_json_path_before_training(capsys, tmp_path, where):
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path if where == "directory" else tmp_path / "file.txt" / "out.json"
    code, stdout, err = run_cli(capsys, "train", "--approach", "raw_tf_nn", "--dataset", "synthetic",
                                "--json", target)
    assert code == 2 and "epoch" not in stdout  # refused before training
    assert str(target) in one_error_line(err)


def test_train_keeps_its_result_when_printing_fails_after_training(capsys, tmp_path, monkeypatch):
    from tfbench.benchmarks import commands

    out = tmp_path / "r.json"
    monkeypatch.setattr(commands, "_print_epoch", lambda record: None)
    real_print = print

    def failing_print(*args, **kwargs):
        if args and str(args[0]).startswith("test accuracy"):
            raise OSError(errno.EPIPE, "Broken pipe")
        real_print(*args, **kwargs)

    monkeypatch.setattr("builtins.print", failing_print)
    with pytest.raises(OSError):
        main(["train", "--approach", "raw_tf_nn", "--dataset", "synthetic", "--json", str(out)])
    assert strict_load(out)["status"] == "ok"


def test_a_results_file_that_cannot_be_written_is_one_line_keeping_what_was_saved(tmp_path, monkeypatch):
    from tfbench.benchmarks import results as results_module

    path = tmp_path / "r.json"
    results = ResultsFile.create(path, run_id="x", config={}, environment={})
    record = make_record("step_time", approach="a", workload="mlp", mode="eager", steps_per_call=1, device="cpu",
                         batch_size=8, dataset="synthetic", metrics={"step_time_s": summarize([0.001, 0.002])})
    results.add(record)
    real_mkstemp = results_module.tempfile.mkstemp

    def disk_full(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        Path(name).unlink()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_module.tempfile, "mkstemp", disk_full)
    with pytest.raises(WriteError) as info:
        results.add(make_record("step_time", approach="a", workload="mlp", mode="eager", steps_per_call=1,
                                device="cpu", batch_size=16, dataset="synthetic"))
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message and "keeps the 1 records" in message
    assert "--resume" in message and "\n" not in message
    assert len(load(path)["records"]) == 1  # the file on disk is intact
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_report_to_a_path_that_is_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "taken").write_text("x")
    code, _, err = run_cli(capsys, "report", FIXTURES / "results_cpu.json", "--out", tmp_path / "taken")
    assert code == 2 and str(tmp_path / "taken") in one_error_line(err)


@pytest.mark.parametrize("command", ["ab", "calibrate-gate"])
def test_the_gate_commands_check_their_markdown_file_before_running(tmp_path, capsys, monkeypatch, command):
    from tfbench.benchmarks.gate import ab, calibrate

    monkeypatch.setattr(ab, "run_ab", lambda *a, **k: pytest.fail("ran before checking its output"))
    monkeypatch.setattr(calibrate, "collect_pools", lambda *a, **k: pytest.fail("ran before checking its output"))
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path / "file.txt" / "summary.md"
    argv = ["ab", "--baseline-rev", "HEAD", "--markdown", target] if command == "ab" else \
        ["calibrate-gate", "--out", target]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "cannot write the Markdown" in one_error_line(err)


# --- one writer per results file ---------------------------------------------------------------------------


def test_a_second_writer_of_one_results_file_is_refused(tmp_path):
    path = tmp_path / "r.json"
    with WriterLock(path):
        with pytest.raises(WriteError) as info:
            WriterLock(path).acquire()
    assert str(info.value).startswith(f"{path} is being written by another tfbench process (pid {os.getpid()})")
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())  # released and removed
    with WriterLock(path):  # free again
        pass


# --- tfbench run: results never silently replaced, nor written by two runs ------------------------------------


TINY = ["run", "--approach", "raw_tf_nn", "--workload", "mlp", "--mode", "function", "--steps-per-call", "1",
        "--batch-size", "8", "--stages", "step_time", "--samples", "2", "--quiet"]


def test_an_existing_results_file_is_not_replaced_without_overwrite(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert main(TINY + ["--output", str(path)]) == 0
    before = path.read_text()
    code, _, err = run_cli(capsys, *TINY, "--output", path)
    assert code == 2 and path.read_text() == before
    line = one_error_line(err)
    assert f"{path} already exists" in line and "--resume" in line and "--overwrite" in line
    assert main(TINY + ["--output", str(path), "--overwrite"]) == 0
    assert load(path)["run_id"] != json.loads(before)["run_id"]


def test_a_second_run_writing_the_same_file_is_refused(tmp_path, capsys):
    path = tmp_path / "r.json"
    with WriterLock(path):  # another run holds the file
        code, _, err = run_cli(capsys, *TINY, "--output", path)
    assert code == 2 and "is being written by another tfbench process" in one_error_line(err)
    assert not path.exists()


@pytest.mark.parametrize("what", ["output_under_a_file", "output_is_a_directory", "report_is_a_file"])
def test_run_checks_its_outputs_before_measuring(tmp_path, capsys, monkeypatch, what):
    from tfbench.benchmarks import suite

    monkeypatch.setattr(suite, "execute", lambda *a, **k: pytest.fail("measured before checking its outputs"))
    (tmp_path / "file.txt").write_text("x")
    argv = {"output_under_a_file": ["--output", tmp_path / "file.txt" / "r.json"],
            "output_is_a_directory": ["--output", tmp_path],
            "report_is_a_file": ["--output", tmp_path / "r.json", "--report", tmp_path / "file.txt"]}[what]
    code, _, err = run_cli(capsys, *TINY, *argv)
    assert code == 2 and "cannot write" in one_error_line(err)


def test_a_write_error_mid_run_is_one_line_and_keeps_what_was_saved(tmp_path, capsys, monkeypatch):
    from tfbench.benchmarks import results as results_module

    path = tmp_path / "r.json"
    real_mkstemp, saves = results_module.tempfile.mkstemp, []

    def fills_up(*args, **kwargs):  # the disk fills once the file holds its first record
        saves.append(1)
        if path.exists() and json.loads(path.read_text())["records"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(results_module.tempfile, "mkstemp", fills_up)
    code, _, err = run_cli(capsys, *TINY, "--batch-size", "8", "16", "--output", path)
    assert code == 2
    line = one_error_line(err)
    assert str(path) in line and "No space left on device" in line and "--resume" in line
    kept = load(path)
    assert len(kept["records"]) == 1 and kept["complete"] is False


def test_report_write_error_after_the_run_keeps_the_results(tmp_path, capsys, monkeypatch):
    import tfbench.reports

    def disk_full(paths, out):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfbench.reports, "write_report", disk_full)
    path = tmp_path / "r.json"
    code, _, err = run_cli(capsys, *TINY, "--output", path, "--report", tmp_path / "report")
    line = one_error_line(err)
    assert code == 2 and "No space left on device" in line and f"the results are in {path}" in line
    assert load(path)["complete"] is True


# --- --resume finishes what was skipped or failed ----------------------------------------------------------


def _small_mnist(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for stem, array in {"train-images-idx3-ubyte": rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
                        "train-labels-idx1-ubyte": (np.arange(64) % 10).astype(np.uint8),
                        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
                        "t10k-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8)}.items():
        header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        (folder / f"{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))


def test_resume_measures_again_what_was_skipped_with_the_data_dir_given_now(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TFBENCH_DATA_DIR", raising=False)
    (tmp_path / "empty").mkdir()
    path = tmp_path / "r.json"
    argv = ["run", "--approach", "raw_tf_nn", "--workload", "mlp", "--stages", "accuracy", "--quiet"]
    assert main(argv + ["--data-dir", str(tmp_path / "empty"), "--output", str(path)]) == 0
    assert load(path)["records"][0]["status"] == "skipped"

    _small_mnist(tmp_path / "data" / "mnist")  # the data has arrived (generated files: no published checksum)
    code, _, err = run_cli(capsys, "run", "--resume", path, "--data-dir", tmp_path / "data", "--no-verify",
                           "--quiet")
    assert code == 0, err
    assert "measuring again 1 skipped" in err
    record = load(path)["records"][0]
    assert record["status"] == "ok" and "checksums skipped" in record["metrics"]["data_source"]
    assert load(path)["config"]["plan"]["data_dir"] == str(tmp_path / "data")


def test_resume_refuses_flags_that_change_what_is_measured(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert main(TINY + ["--output", str(path)]) == 0
    code, _, err = run_cli(capsys, "run", "--resume", path, "--batch-size", "16", "--seed", "3")
    line = one_error_line(err)
    assert code == 2 and "--batch-size, --seed would change what it measures" in line


@pytest.mark.parametrize("content", ['{"schema_version": 1, "environment": {}, "records": []}', '{"records": [',
                                     '{"schema_version": 1, "environment": {}, "records": [], '
                                     '"config": {"plan": {"profile": "quick"}}}'])
def test_resume_of_a_damaged_or_foreign_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "foreign.json"
    path.write_text(content)
    code, _, err = run_cli(capsys, "run", "--resume", path)
    assert code == 2 and str(path) in one_error_line(err)


# --- SIGTERM ---------------------------------------------------------------------------------------------


def test_sigterm_ends_a_run_like_ctrl_c_keeping_its_records(tmp_path):
    """A real process: the second job waits, the test sends SIGTERM, the first job's records stay."""
    path, started = tmp_path / "r.json", tmp_path / "second-job-started"
    script = textwrap.dedent(f"""
        import sys, time
        from tfbench.benchmarks.stages import STAGES
        from tfbench.benchmarks.cli import main

        stage, calls = STAGES["step_time"], []
        original = stage.run

        def run(context, job):
            calls.append(job)
            if len(calls) == 2:
                open({str(started)!r}, "w").close()
                time.sleep(120)
            return original(context, job)

        stage.run = run
        sys.exit(main({[*TINY, "--batch-size", "8", "16", "--output", str(path)]!r}))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 240
        while not started.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before its second job"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last == (f"tfbench: interrupted (SIGTERM): the records measured so far are in {path}; "
                    f"`tfbench run --resume {path}` completes the run")
    kept = load(path)
    assert kept["complete"] is False and [r["batch_size"] for r in kept["records"]] == [8]
    assert not (tmp_path / f".{path.name}.lock").exists()
