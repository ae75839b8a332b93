"""The Python API: the documented notebook example (docs/commands.md) runs as written, and the API checks before it
imports TF."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tfbench

ROOT = Path(__file__).resolve().parents[1]


def documented_example() -> str:
    """The Python example of docs/commands.md, exactly as a reader copies it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "commands.md").read_text(), re.S)
    assert blocks, "docs/commands.md has no Python example"
    return blocks[0]


def test_the_documented_example_runs_as_written(tmp_path):
    # It reads reports/results/cpu-quick.json relative to the current folder, as from a checkout.
    (tmp_path / "reports" / "results").mkdir(parents=True)
    (tmp_path / "reports" / "results" / "cpu-quick.json").write_bytes(
        (ROOT / "reports" / "results" / "cpu-quick.json").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", documented_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "custom_tape" in done.stdout and "keras_fit" in done.stdout
    assert done.stdout.strip().splitlines()[-1] in ("unchanged", "improved", "regressed")
    assert (tmp_path / "results" / "step_time.png").stat().st_size > 0
    assert (tmp_path / "results" / "report" / "REPORT.md").read_text().startswith("#")
    files = list((tmp_path / "results").glob("results-*.json"))
    assert len(files) == 1 and repr(tfbench.load(files[0])).endswith(": 4 ok)")  # 2 approaches x 2 modes


def test_a_bad_name_fails_before_anything_runs(tmp_path):
    with pytest.raises(tfbench.ConfigError, match="^unknown device 'tpu'; choose from: auto, all, cpu"):
        tfbench.run(device="tpu", out=tmp_path)
    with pytest.raises(tfbench.ConfigError, match="^unknown approach 'nope'"):
        tfbench.run(approaches=["nope"], out=tmp_path)
    with pytest.raises(tfbench.ConfigError, match=r"^threads must be \(threads per op"):
        tfbench.run(threads=(1,), out=tmp_path)
    assert not list(tmp_path.iterdir())
    existing = tmp_path / "kept.json"
    existing.write_text("{}")
    with pytest.raises(tfbench.ConfigError, match="kept.json already exists; pass overwrite=True"):
        tfbench.run(output=existing, approaches=["raw_tf_nn"], workloads=["mlp"], stages=["step_time"])
    assert existing.read_text() == "{}"


def test_load_reads_folders_and_names_a_bad_file(tmp_path):
    results = tfbench.load(ROOT / "tests" / "fixtures")
    assert len(results.paths) == 2 and len(results.to_dataframe()) == len(results.records) > 0
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(tfbench.TfbenchError, match="broken.json"):
        tfbench.load(tmp_path / "broken.json")
