"""The built wheel, installed in a fresh virtualenv, works: packaging mistakes fail here, not on a user's machine.

The wheel is built from a copy of the package's sources (so no build/ or egg-info lands in the tree) and
installed without its dependencies into a new ``python -m venv``: no editable install, no source tree on the
path. The dependencies (TensorFlow...) are the running interpreter's, made visible by a ``.pth`` file that
site reads after the venv's own site-packages, so the wheel's ``tfbench`` is the one imported. Everything
runs from a folder outside the repository.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("tfbench", "implementations", "benchmarks", "reports", "pyproject.toml", "README.md")
# The folders the wheel maps into the tfbench namespace (pyproject.toml, package-dir).
NAMESPACE = {"tfbench": "tfbench", "implementations": "tfbench.implementations",
             "benchmarks": "tfbench.benchmarks", "reports": "tfbench.reports"}


def expected_modules() -> list[str]:
    """Every module of the source tree under its installed name (tfbench.benchmarks.gate.compare...)."""
    modules = []
    for folder, package in NAMESPACE.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts and parts[-1] == "__main__":
                continue  # runs the CLI when imported
            modules.append(".".join((package, *parts)))
    return modules


def run(command: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


def build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "-w", str(tmp / "dist")]
    if importlib.util.find_spec("setuptools") is not None:
        command.append("--no-build-isolation")  # build with the setuptools at hand: no download
    run(command + [str(source)], cwd=tmp, env=os.environ.copy())
    [wheel] = (tmp / "dist").glob("*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=os.environ.copy())
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)], cwd=tmp, env=os.environ.copy())
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp,
                  env=os.environ.copy()).stdout.strip()
    # The dependencies: this interpreter's site-packages, listed after the venv's own (a .pth line is
    # appended to sys.path), and without their .pth files run (so no editable install of ours slips in).
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (Path(purelib) / "zz_dependencies.pth").write_text("\n".join(sorted(p for p in ours if Path(p).is_dir())) + "\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    python = fresh_venv(tmp, build_wheel(tmp))
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    return python, elsewhere, env


def test_the_wheel_holds_every_module_and_its_api_runs(installed):
    python, elsewhere, env = installed
    script = (
        "import importlib, tfbench\n"
        "from tfbench.benchmarks.results import SCHEMA_PATH\n"
        "missing = []\n"
        f"for name in {expected_modules()!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        missing.append(f'{name}: {error}')\n"
        "results = tfbench.run('gate', approaches=['raw_tf_nn'], workloads=['mlp'], modes=['function'],\n"
        "                      steps_per_call=[1], stages=['step_time'], samples=3, out='api')\n"
        "print(tfbench.__file__, SCHEMA_PATH.is_file(), missing, repr(results), sep='\\n')\n"
    )
    output = run([str(python), "-c", script], cwd=elsewhere, env=env).stdout
    package, schema, missing, results = output.splitlines()[-4:]
    venv = python.parent.parent
    assert Path(package).resolve().is_relative_to(venv.resolve()), f"tfbench imported from {package}, not the venv"
    assert schema == "True", "results.schema.json is not in the wheel"
    assert missing == "[]", f"modules missing from the wheel: {missing}"
    assert results.startswith("Results(api/results-") and results.endswith(": 1 ok)")


def test_the_installed_cli_lists_runs_and_reports(installed):
    python, elsewhere, env = installed
    tfbench = python.parent / ("tfbench.exe" if os.name == "nt" else "tfbench")
    listing = run([str(tfbench), "list"], cwd=elsewhere, env=env).stdout
    assert all(name in listing for name in ("keras_fit", "custom_tape", "raw_tf_nn", "naive_sequential"))
    run([str(tfbench), "run", "--approach", "raw_tf_nn", "--workload", "mlp", "--mode", "function",
         "--steps-per-call", "1", "--stages", "step_time", "--samples", "3", "--quiet",
         "--output", "results.json"], cwd=elsewhere, env=env)
    report = run([str(tfbench), "report", "results.json", "--out", "report"], cwd=elsewhere, env=env).stdout
    assert Path(elsewhere / report.strip().splitlines()[-1]).read_text().startswith("#")
