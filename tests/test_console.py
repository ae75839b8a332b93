"""A clean console: no warning from the suite's own use of Keras, progress lines that stand out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tfbench.benchmarks.console import PREFIX, progress, starting_tensorflow
from tfbench.implementations import build
from tfbench.implementations.interface import OptimizerSpec, TrainConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_keras_fit_epochs_end_without_running_out_of_data(steps_per_call):
    # 200 examples in batches of 32: 7 batches an epoch, the last one short. fit() used to find each epoch's
    # end by a failing extra call: a "ran out of data" warning per epoch and, with K = 1, one optimizer step
    # counted too many per epoch (Adam's bias correction then drifts from every other approach).
    rng = np.random.default_rng(3)
    x = rng.random((200, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 200).astype(np.int32)
    config = TrainConfig(optimizer=OptimizerSpec("adam", 1e-3), steps_per_call=steps_per_call)
    trainer = build("keras_fit", "mlp", config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(x, y, epochs=3, batch_size=32, seed=5)
    assert [str(w.message) for w in caught if "ran out of data" in str(w.message)] == []
    assert int(trainer.model.optimizer.iterations) == 3 * 7
    reference = build("custom_tape", "mlp", config)
    reference.fit(x, y, epochs=3, batch_size=32, seed=5)
    for index, (mine, theirs) in enumerate(zip(trainer.get_weights(), reference.get_weights())):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6, err_msg=f"weight {index}")


# TensorFlow's own lines: absl's notice, then glog-style "I0000 00:00:...", "W...", "E...", "F...", some with
# a continuation line. A Python warning reads "<file>:<line>: <Category>Warning: <message>".
TENSORFLOW_LINE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} )")
PYTHON_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")


def tensorflow_lines(lines: list[str]) -> list[str]:
    """TensorFlow's lines among ``lines``: its log lines and their continuation lines."""
    found, previous = [], False
    for line in lines:
        previous = bool(TENSORFLOW_LINE.match(line)) or (previous and not line.startswith(PREFIX)
                                                         and not PYTHON_WARNING.match(line))
        if previous:
            found.append(line)
    return found


def test_the_run_s_own_lines_stand_apart_from_tensorflow_s_and_nothing_else_is_printed(tmp_path):
    # A real `tfbench run`, keras_fit's accuracy stage included (where Keras used to warn), with TensorFlow
    # at its default log level: the worst case for the console.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "tfbench", "run", "--profile", "gate", "--approach", "keras_fit",
                           "--workload", "mlp", "--stages", "step_time", "accuracy", "--dataset", "synthetic",
                           "--samples", "2", "--output", str(tmp_path / "run.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith(PREFIX)]
    theirs = tensorflow_lines(lines)
    others = [line for line in lines if line not in ours and line not in theirs]
    assert others == [], "lines that are neither the suite's nor TensorFlow's (a Python warning?)"
    # The suite speaks first, saying TensorFlow starts, and its progress comes after TensorFlow's start-up.
    assert lines[0] == ours[0] == f"{PREFIX}starting TensorFlow (its own start-up messages, unprefixed, follow)"
    assert ours[1].startswith(f"{PREFIX}run: profile gate, devices cpu")
    assert any(line.startswith(f"{PREFIX}[1/2] step_time keras_fit mlp") for line in ours)
    assert ours[-1].startswith(f"{PREFIX}[2/2] accuracy keras_fit mlp")
    assert "workload" in done.stdout and "results:" in done.stdout  # the summary goes to stdout


def test_a_python_warning_after_a_tensorflow_line_is_not_taken_for_tensorflow_s():
    lines = ["I0000 00:00:1.0  1 cpu_feature_guard.cc:210] This TensorFlow binary is optimized...",
             "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.",
             "/x/epoch_iterator.py:164: UserWarning: Your input ran out of data; interrupting training.",
             f"{PREFIX}run: profile quick"]
    assert tensorflow_lines(lines) == lines[:2]


def test_progress_lines_are_prefixed_one_by_one_and_quiet_says_nothing(capsys, monkeypatch):
    log = progress()
    log("two", "words")
    log("a\nmessage on two lines")
    progress(quiet=True)("nothing")
    assert capsys.readouterr().err == f"{PREFIX}two words\n{PREFIX}a\n{PREFIX}message on two lines\n"
    # TensorFlow's start is announced only when it is still to come.
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    starting_tensorflow(log)
    monkeypatch.delitem(sys.modules, "tensorflow")
    assert capsys.readouterr().err == ""
    starting_tensorflow(log)
    assert capsys.readouterr().err.startswith(f"{PREFIX}starting TensorFlow")
