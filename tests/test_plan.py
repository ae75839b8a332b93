"""Plans: frozen, checked on construction, and bad names caught before TensorFlow is imported."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tfbench.benchmarks.plan import PROFILES, Plan, build_plan
from tfbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_approach_names_are_found_without_importing_them_and_match_the_registry():
    from tfbench.implementations import approach_names, approaches

    assert approach_names() == tuple(approaches())


def test_a_plan_is_frozen_and_keeps_the_profile_unless_filtered():
    plan = build_plan("quick", workloads=["mlp"])
    assert plan.workloads == ("mlp",) and plan.batch_sizes == PROFILES["quick"].batch_sizes
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seed = 1  # type: ignore[misc]
    assert Plan.from_dict({**plan.to_dict(), "a_field_from_a_newer_version": 1}) == plan


@pytest.mark.parametrize(("overrides", "message"), [
    ({"approaches": ["nope"]}, "unknown approach 'nope'; choose from: "),
    ({"workloads": ["resnet"]}, "unknown workload 'resnet'; choose from: mlp"),
    ({"modes": ["graph"]}, "unknown mode 'graph'; choose from: eager"),
    ({"batch_sizes": [0]}, "batch sizes must be whole numbers >= 1, got 0"),
    ({"steps_per_call": [2.5]}, "steps per call must be whole numbers >= 1, got 2.5"),
    ({"stages": ["warp"]}, "unknown stage 'warp'; choose from: step_time"),
    ({"inject_slowdown": -1}, "the injected slowdown must be a fraction in [0, 10)"),
])
def test_a_bad_value_names_itself_and_the_fix(overrides, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        dataclasses.replace(build_plan("quick"), **overrides)


def test_bad_names_fail_before_tensorflow_is_imported():
    code = ("import sys\nfrom tfbench.benchmarks.cli import main\n"
            "for argv in (['run', '--device', 'tpu'], ['run', '--approach', 'nope'], ['run', '--workload', 'x']):\n"
            "    assert main(argv) == 2, argv\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["tfbench: error: unknown device 'tpu'; choose from: auto, all, cpu, gpu, metal",
                     lines[1], lines[2]] and lines[1].startswith("tfbench: error: unknown approach 'nope'")
