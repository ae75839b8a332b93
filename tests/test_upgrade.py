"""``tfbench upgrade-ab``: environments built once and reused, bad versions and broken environments refused in one
line, and the gate run with one environment per side (fake pip, fake venv, fake gate: nothing is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfbench.benchmarks.cli import build_parser
from tfbench.benchmarks.gate import ab, upgrade
from tfbench.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


class FakeShell:
    """Runs nothing: `-m venv` makes the folder, pip succeeds (or says it cannot find the version), the probe
    prints what ``holds`` says the environment has."""

    def __init__(self, missing_versions: tuple[str, ...] = (), holds: dict | None = None):
        self.calls: list[list[str]] = []
        self.missing = missing_versions
        self.holds = holds or {}

    def __call__(self, command, env):
        command = list(command)
        self.calls.append(command)
        if command[1:3] == ["-m", "venv"]:
            Path(command[3], "bin").mkdir(parents=True)
            return 0, ""
        if command[1:4] == ["-m", "pip", "install"]:
            requirement = command[5]
            self.suite_files = sorted(path.name for path in Path(command[6]).iterdir())
            if any(requirement.startswith(f"tensorflow=={v}") for v in self.missing):
                return 1, f"ERROR: No matching distribution found for {requirement}"
            return 0, ""
        if command[1] == "-c":
            version = Path(command[0]).parents[1].name.split("-")[1]
            found = {"python": "3.11.7", "tensorflow": f"{version}.0", "keras": "3.15.1", "suite": "0.1.0",
                     **self.holds}
            found = {key: value for key, value in found.items() if value is not None}
            return 0, "some TensorFlow warning\nTFBENCH-PROBE " + json.dumps(found) + "\n"
        raise AssertionError(f"unexpected command {command}")

    def kinds(self) -> list[str]:
        return ["venv" if c[1:3] == ["-m", "venv"] else "pip" if "pip" in c else "probe" for c in self.calls]


def test_versions_and_requirements():
    assert upgrade.requirement("2.20") == "tensorflow==2.20.*"
    assert upgrade.requirement("2.20.1") == "tensorflow==2.20.1"
    assert upgrade.matches("2.20.0", "2.20") and not upgrade.matches("2.21.0", "2.20")
    assert upgrade.matches("2.20.1", "2.20.1") and not upgrade.matches("2.20.10", "2.20.1")
    with pytest.raises(UsageError, match="not a TensorFlow version"):
        upgrade.check_version("2.x", "--tf-a")


def test_an_environment_is_built_once_then_reused(tmp_path):
    shell = FakeShell()
    env = upgrade.ensure("2.20", tmp_path, REPO, base_python="/usr/bin/python3", base_python_version="3.11.7",
                         run=shell, log=lambda line: None)
    assert env.path == tmp_path / "tf-2.20-py3.11" and env.tensorflow == "2.20.0" and env.keras == "3.15.1"
    assert shell.kinds() == ["venv", "pip", "probe"]
    assert shell.calls[1][-2] == "tensorflow==2.20.*"
    assert shell.suite_files == sorted(upgrade.SUITE_SOURCES)  # installed from a copy: the checkout stays clean
    assert not Path(shell.calls[1][-1]).exists()
    assert (env.path / upgrade.READY_MARKER).is_file()
    again = FakeShell()
    upgrade.ensure("2.20", tmp_path, REPO, base_python_version="3.11.7", run=again, log=lambda line: None)
    assert again.kinds() == ["probe"]


def test_a_half_built_environment_is_built_again(tmp_path):
    (tmp_path / "tf-2.21-py3.11" / "lib").mkdir(parents=True)  # no ready marker: pip was interrupted
    shell = FakeShell()
    upgrade.ensure("2.21", tmp_path, REPO, base_python_version="3.11.7", run=shell, log=lambda line: None)
    assert shell.kinds() == ["venv", "pip", "probe"]


def test_a_version_pip_cannot_find_is_one_line_and_leaves_nothing(tmp_path, capsys):
    shell = FakeShell(missing_versions=("9.9",))
    with pytest.raises(UsageError, match=r"pip cannot find tensorflow==9\.9\.\* .*pip index versions tensorflow"):
        upgrade.ensure("9.9", tmp_path, REPO, base_python_version="3.11.7", run=shell, log=lambda line: None)
    assert not (tmp_path / "tf-9.9-py3.11").exists()


@pytest.mark.parametrize("holds, message", [
    ({"tensorflow": None, "tensorflow_error": "ModuleNotFoundError: No module named 'tensorflow'"},
     "has no working TensorFlow"),
    ({"tensorflow": "2.19.1"}, "holds TensorFlow 2.19.1, not 2.20"),
    ({"suite": None, "suite_error": "PackageNotFoundError: tf-training-bench"}, "lacks tfbench"),
])
def test_a_broken_environment_is_one_line_with_the_fix(tmp_path, holds, message):
    path = tmp_path / "tf-2.20-py3.11"
    path.mkdir()
    (path / upgrade.READY_MARKER).write_text("{}")
    with pytest.raises(UsageError, match=message) as raised:
        upgrade.ensure("2.20", tmp_path, REPO, base_python_version="3.11.7", run=FakeShell(holds=holds),
                       log=lambda line: None)
    assert f"rm -r {path}" in str(raised.value) and "\n" not in str(raised.value)


def parse(*argv: str):
    return build_parser("upgrade-ab").parse_args(["upgrade-ab", *argv])


def test_the_gate_runs_one_environment_per_side_on_the_same_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    calls = {}

    def fake_run_ab(repo, rev_a, rev_b, **options):
        calls.update(repo=repo, revs=(rev_a, rev_b), **options)
        return ab.AbResult([], {"a": [tmp_path / "a-01.json"], "b": [tmp_path / "b-01.json"]},
                           {"a": None, "b": None}, [1.0], "duet")

    args = parse("--tf-a", "2.20", "--tf-b", "2.21", "--env-dir", str(tmp_path / "envs"), "--rounds", "8",
                 "--out", str(tmp_path / "runs"), "--markdown", str(tmp_path / "ab.md"), "--json",
                 str(tmp_path / "ab.json"))
    assert upgrade.main_upgrade_ab(args, run=FakeShell(), run_ab=fake_run_ab) == 0
    assert calls["revs"] == (ab.CURRENT_CHECKOUT, ab.CURRENT_CHECKOUT) and calls["rounds"] == 8
    assert calls["python_a"] == str(tmp_path / "envs" / "tf-2.20-py3.11" / "bin" / "python")
    assert calls["python_b"] == str(tmp_path / "envs" / "tf-2.21-py3.11" / "bin" / "python")
    decision = json.loads((tmp_path / "ab.json").read_text())
    assert "TensorFlow 2.20.0 (Keras 3.15.1) -> TensorFlow 2.21.0 (Keras 3.15.1)" in decision["title"]
    assert "raw step times" in decision["title"]


def test_a_bad_version_stops_before_any_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    shell = FakeShell()
    with pytest.raises(UsageError, match="--tf-b '2' is not a TensorFlow version"):
        upgrade.main_upgrade_ab(parse("--tf-a", "2.20", "--tf-b", "2", "--env-dir", str(tmp_path)), run=shell)
    assert shell.calls == []


def test_an_environment_that_cannot_be_built_writes_why(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    args = parse("--tf-a", "9.9", "--tf-b", "2.21", "--env-dir", str(tmp_path / "envs"), "--json",
                 str(tmp_path / "ab.json"))
    with pytest.raises(UsageError, match="pip cannot find"):
        upgrade.main_upgrade_ab(args, run=FakeShell(missing_versions=("9.9",)), run_ab=None)
    decision = json.loads((tmp_path / "ab.json").read_text())
    assert decision["exit_status"] == 2 and "pip cannot find" in decision["error"]
