"""The command line: listing, training, and one readable line (exit 2) for every bad input."""

import json
import subprocess
import sys

import pytest

from tfbench.benchmarks.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tfbench: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", ["list", "train", "run", "report", "compare", "ab", "calibrate-gate"])
def test_every_subcommand_prints_its_help(capsys, command):
    # argparse %-formats help texts: a bare "%" in one (a planted change's "10 %") broke --help with a traceback
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tfbench {command}")


def test_list_shows_the_five_approaches_and_why_some_combinations_are_unsupported(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in ("keras_fit", "custom_tape", "dual_optimizer_tape", "raw_tf_nn", "naive_sequential"):
        assert name in out
    assert "dense layers only" in out


def test_list_json_is_machine_readable(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    listing = json.loads(out)
    assert code == 0 and len(listing["approaches"]) >= 5
    naive_cnn = [c for c in listing["combinations"] if c["approach"] == "naive_sequential" and c["workload"] == "cnn"]
    assert len(naive_cnn) == 3 and not any(c["supported"] for c in naive_cnn) and naive_cnn[0]["reason"]
    assert listing["workloads"]["mlp"]["flops_per_sample"] == 1_007_104


@pytest.mark.parametrize(("argv", "fragments"), [
    (["train", "--approach", "nope"], ["unknown approach 'nope'", "custom_tape"]),
    (["train", "--approach", "custom_tape", "--mode", "turbo"], ["--mode", "turbo"]),
    (["train", "--approach", "custom_tape", "--dataset", "cifar"], ["--dataset", "cifar"]),
    (["train", "--recipe", "nope"], ["unknown recipe 'nope'", "dlwp_naive"]),
    (["train", "--approach", "custom_tape", "--batch-size", "0"], ["--batch-size", "must be >= 1"]),
    (["train", "--approach", "custom_tape", "--batch-size", "-3"], ["--batch-size"]),
    (["train", "--approach", "custom_tape", "--epochs", "0"], ["--epochs", "must be >= 1"]),
    (["train", "--approach", "custom_tape", "--epochs", "two"], ["--epochs", "whole number"]),
    (["train", "--approach", "naive_sequential", "--workload", "cnn"], ["cannot run cnn", "dense layers only"]),
    (["train", "--approach", "custom_tape", "--workload", "resnet"], ["unknown workload 'resnet'"]),
    (["train", "--approach", "custom_tape", "--optimizer", "lion:1e-3"], ["unknown optimizer 'lion'"]),
    (["train", "--approach", "custom_tape", "--recipe", "dlwp_naive"], ["either --recipe or --approach"]),
    (["train"], ["--approach"]),
    (["frobnicate"], ["frobnicate"]),
    (["run", "--approach", "nope", "--stages", "step_time"], ["unknown approach 'nope'"]),
    (["run", "--device", "gpu", "--stages", "step_time"], ["no gpu device", "--device cpu"]),
    (["run", "--threads", "two", "--stages", "step_time"], ["--threads"]),
])
def test_bad_input_is_one_readable_line_and_exit_2(capsys, argv, fragments):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_train_without_data_says_what_was_tried_and_how_to_fix_it(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TFBENCH_DATA_DIR", raising=False)
    code, _, err = run_cli(capsys, "train", "--approach", "custom_tape", "--data-dir", str(tmp_path))
    assert_one_line_error(code, err, str(tmp_path))
    code, _, err = run_cli(capsys, "train", "--recipe", "dlwp_naive", "--data-dir", str(tmp_path))
    assert_one_line_error(code, err, str(tmp_path))


def test_train_prints_progress_and_writes_json(capsys, tmp_path):
    out_file = tmp_path / "result.json"
    code, out, _ = run_cli(capsys, "train", "--approach", "raw_tf_nn", "--workload", "mlp", "--dataset", "synthetic",
                           "--epochs", "2", "--batch-size", "64", "--steps-per-call", "4", "--json", str(out_file))
    assert code == 0
    assert "epoch   1" in out and "epoch   2" in out and "test accuracy:" in out
    result = json.loads(out_file.read_text())
    for key in ("approach", "workload", "mode", "dataset", "epochs", "batch_size", "test_accuracy", "history"):
        assert key in result
    assert result["epochs"] == 2 and len(result["history"]) == 2 and result["test_accuracy"] > 0.5


def test_the_console_entry_point_runs_in_a_fresh_process():
    process = subprocess.run([sys.executable, "-m", "tfbench.benchmarks.cli", "train", "--approach", "nope"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    # TensorFlow prints its own start-up warnings on stderr; our message is the last line.
    assert process.stderr.strip().splitlines()[-1].startswith("tfbench: error: unknown approach 'nope'")
