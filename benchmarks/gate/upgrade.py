"""``tfbench upgrade-ab``: A/B two TensorFlow versions on the same suite code.

Most real slowdowns of a training loop come from upgrading TensorFlow or Keras, not from the loop's own code.
This command measures such an upgrade with the regression gate (:mod:`benchmarks.gate.ab`): one virtual
environment per TensorFlow version, then ``tfbench ab`` with the same revision on both sides and
``--python-a`` / ``--python-b`` pointing at the two environments' Pythons.

Each environment is ``<env-dir>/tf-<version>-py<X.Y>``: ``python -m venv`` with the Python running this
command, then one ``pip install tensorflow==<version> <a copy of the suite's checkout>`` (the suite brings its own
dependencies; pip resolves both together, so Keras is whichever release that TensorFlow accepts). An
environment is marked ready (:data:`READY_MARKER`) only once the install and a probe succeeded, and a ready one
is reused as it is, so a second A/B costs no pip at all. A half-built environment (pip failed, the command was
interrupted) has no marker and is built again from scratch.

The processes run the checkout's code (``PYTHONPATH`` = the worktree, as ``tfbench ab`` does), not the copy pip
installed: both sides run exactly the same suite, and only TensorFlow (and what it pulled in) differs. Because
the reference kernel the gate times runs on TensorFlow too, ``tfbench ab`` compares raw step times when the two
Pythons differ (the yardstick would move with the code under test). The duet schedule, which runs both sides at
the same moment on one core each, is what makes raw times comparable on a machine that other jobs share.

Bad input is one line and exit status 2: a version that is not ``X.Y`` or ``X.Y.Z``, a version pip cannot find,
an environment that lacks TensorFlow, the requested version, or the suite's dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tfbench.benchmarks.gate import ab
from tfbench.benchmarks.gate.compare import add_decision_options, add_output_options
from tfbench.benchmarks.gate.views import report, write_json, write_markdown
from tfbench.errors import TfbenchError, UsageError

ENV_DIR_VARIABLE = "TFBENCH_ENV_DIR"
DEFAULT_ENV_DIR = Path("~/.cache/tfbench/envs")
READY_MARKER = ".tfbench-ready"  # written last: its presence means install and probe both succeeded
DISTRIBUTION = "tf-training-bench"  # the suite's name on pip (pyproject.toml)
VERSION_PATTERN = re.compile(r"^\d+\.\d+(\.\d+)?$")
PIP_TAIL_LINES = 15
SUITE_SOURCES = ("tfbench", "implementations", "benchmarks", "reports", "pyproject.toml", "README.md")

# What the probe runs inside an environment: the versions it holds, and the suite's imports (its dependencies).
PROBE = """
import importlib.metadata as metadata, json, platform
out = {"python": platform.python_version()}
try:
    import tensorflow
    out["tensorflow"] = tensorflow.__version__
except Exception as error:
    out["tensorflow_error"] = f"{type(error).__name__}: {error}"
try:
    import keras
    out["keras"] = keras.__version__
except Exception as error:
    out["keras_error"] = f"{type(error).__name__}: {error}"
try:
    out["suite"] = metadata.version("tf-training-bench")  # DISTRIBUTION
    import tfbench.benchmarks.runner, tfbench.benchmarks.gate.compare
except Exception as error:
    out["suite_error"] = f"{type(error).__name__}: {error}"
print("TFBENCH-PROBE " + json.dumps(out))
"""

# run(command, env) -> (returncode, combined output); the real one is subprocess, tests pass a fake.
Run = Callable[[Sequence[str], dict], tuple[int, str]]


def subprocess_run(command: Sequence[str], env: dict) -> tuple[int, str]:
    try:
        completed = subprocess.run(list(command), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   errors="replace")
    except OSError as error:
        return 127, f"cannot start {command[0]}: {error.strerror}"
    return completed.returncode, completed.stdout + completed.stderr


@dataclass(frozen=True)
class Environment:
    """A ready virtual environment and the versions its probe found."""

    path: Path
    python: str
    tensorflow: str
    keras: str
    python_version: str

    @property
    def label(self) -> str:
        return f"TensorFlow {self.tensorflow} (Keras {self.keras})"


def check_version(text: str, option: str) -> str:
    if not VERSION_PATTERN.match(text):
        raise UsageError(f"{option} {text!r} is not a TensorFlow version; give X.Y (newest X.Y.*) or X.Y.Z, "
                         "e.g. 2.20")
    return text


def requirement(version: str) -> str:
    """The pip requirement of a version: 2.20 -> tensorflow==2.20.* (its newest patch), 2.20.1 -> exactly it."""
    return f"tensorflow=={version}.*" if version.count(".") == 1 else f"tensorflow=={version}"


def matches(installed: str, version: str) -> bool:
    """Whether an installed TensorFlow version satisfies the requested X.Y or X.Y.Z."""
    parts = installed.split(".")
    wanted = version.split(".")
    return parts[:len(wanted)] == wanted


def env_dir(option: Path | None) -> Path:
    """Where the environments live: --env-dir, else $TFBENCH_ENV_DIR, else ~/.cache/tfbench/envs."""
    chosen = option or (Path(os.environ[ENV_DIR_VARIABLE]) if os.environ.get(ENV_DIR_VARIABLE) else DEFAULT_ENV_DIR)
    return chosen.expanduser().resolve()


def env_path(root: Path, version: str, base_python_version: str) -> Path:
    major_minor = ".".join(base_python_version.split(".")[:2])
    return root / f"tf-{version}-py{major_minor}"


def venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _tail(text: str, lines: int = PIP_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def suite_copy(repo: Path, folder: Path) -> Path:
    """A copy of what pip needs to install the suite from ``repo`` (its packages, pyproject.toml, README.md)."""
    target = folder / "suite"
    target.mkdir()
    for name in SUITE_SOURCES:
        origin = repo / name
        if origin.is_dir():
            shutil.copytree(origin, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif origin.is_file():
            shutil.copy2(origin, target / name)
        else:
            raise UsageError(f"{repo} has no {name}: run from a checkout of the suite")
    return target


def probe(python: str, repo: Path, run: Run = subprocess_run) -> dict:
    """What an environment holds ({"python", "tensorflow", "keras", "suite"} or *_error entries)."""
    code, output = run([python, "-c", PROBE], {**os.environ, "PYTHONPATH": str(repo)})
    for line in output.splitlines():
        if line.startswith("TFBENCH-PROBE "):
            return json.loads(line[len("TFBENCH-PROBE "):])
    raise UsageError(f"{python} did not run (exit status {code}: {_tail(output, 1) or 'no output'}); "
                     "remove its environment and run again to rebuild it")


def check_probe(found: dict, path: Path, version: str, python: str) -> Environment:
    """The environment, or a UsageError naming what it lacks and how to fix it."""
    fix = f"remove it (rm -r {path}) and run again to rebuild it"
    if "tensorflow" not in found:
        raise UsageError(f"the environment {path} has no working TensorFlow ({found.get('tensorflow_error')}); {fix}")
    if not matches(found["tensorflow"], version):
        raise UsageError(f"the environment {path} holds TensorFlow {found['tensorflow']}, not {version}; {fix}")
    if "keras" not in found:
        raise UsageError(f"the environment {path} has no working Keras ({found.get('keras_error')}); {fix}")
    if "suite" not in found:
        raise UsageError(f"the environment {path} lacks tfbench or its dependencies ({found.get('suite_error')}); "
                         f"{fix}")
    return Environment(path, python, found["tensorflow"], found["keras"], found.get("python", ""))


def pip_failure(output: str, version: str) -> str:
    """One line for a failed pip install: a version pip cannot find gets the command that lists the good ones."""
    if "No matching distribution found" in output or "Could not find a version" in output:
        return (f"pip cannot find {requirement(version)} for this Python ({sys.version.split()[0]}); the versions "
                "it can install: pip index versions tensorflow")
    return f"pip could not install {requirement(version)} (its last lines are above)"


def ensure(version: str, root: Path, repo: Path, *, base_python: str = sys.executable,
           base_python_version: str | None = None, run: Run = subprocess_run,
           log: Callable[[str], None] = print) -> Environment:
    """The ready environment of ``version`` under ``root``: reused if marked ready, else built and probed."""
    path = env_path(root, version, base_python_version or sys.version.split()[0])
    python = str(venv_python(path))
    if (path / READY_MARKER).is_file():
        log(f"reusing {path}")
        return check_probe(probe(python, repo, run), path, version, python)
    if path.exists():
        log(f"{path} is not marked ready (an earlier build did not finish): building it again")
        shutil.rmtree(path)
    root.mkdir(parents=True, exist_ok=True)
    log(f"creating {path} (python -m venv, then pip install {requirement(version)} and the suite; a few minutes, "
        "~2.3 GB)")
    code, output = run([base_python, "-m", "venv", str(path)], dict(os.environ))
    if code != 0:
        shutil.rmtree(path, ignore_errors=True)
        raise UsageError(f"python -m venv {path} failed: {_tail(output, 1) or f'exit status {code}'}; on Debian "
                         "or Ubuntu install the python3-venv package")
    # PYTHONPATH is dropped: pip must see only the new environment, not the checkout the gate puts on the path.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # From a copy of the package's sources: pip builds a local folder in place, and would leave build/ and
    # *.egg-info in the user's checkout.
    with tempfile.TemporaryDirectory(prefix="tfbench-suite-") as folder:
        code, output = run([python, "-m", "pip", "install", "--quiet", requirement(version),
                            str(suite_copy(repo, Path(folder)))], env)
    if code != 0:
        print(f"--- pip's last lines ---\n{_tail(output)}\n---", file=sys.stderr)
        shutil.rmtree(path, ignore_errors=True)  # never leave a half-built environment to be mistaken for one
        raise UsageError(pip_failure(output, version))
    environment = check_probe(probe(python, repo, run), path, version, python)
    (path / READY_MARKER).write_text(json.dumps({"tensorflow": environment.tensorflow, "keras": environment.keras,
                                                 "python": environment.python_version}) + "\n")
    log(f"ready: {environment.label} in {path}")
    return environment


def title(envs: dict[str, Environment], result: ab.AbResult, rev: str) -> str:
    commit = result.commits["a"]
    suite = "the checkout as it is" if commit is None else f"{rev} ({commit[:10]})"
    return (f"TensorFlow upgrade A/B: {envs['a'].label} -> {envs['b'].label}, suite {suite}, "
            f"{len(result.files['a'])} rounds, {result.schedule} schedule, raw step times")


def configure_upgrade_ab(parser: argparse.ArgumentParser) -> None:
    parser.description = ("A/B two TensorFlow versions on the same suite code: build (or reuse) one virtual "
                          "environment per version, then run the regression gate (`tfbench ab`) with one on each "
                          "side; exit 1 on a regression. Arguments after `--` go to `tfbench run` (default: "
                          "--profile gate).")
    parser.add_argument("--tf-a", required=True, metavar="X.Y", help="the baseline TensorFlow version (A), e.g. 2.20")
    parser.add_argument("--tf-b", required=True, metavar="X.Y", help="the candidate TensorFlow version (B), e.g. 2.21")
    parser.add_argument("--env-dir", type=Path, default=None, metavar="DIR",
                        help=f"where the environments are built and reused (default ${ENV_DIR_VARIABLE}, else "
                             f"{DEFAULT_ENV_DIR}); ~2.3 GB each")
    parser.add_argument("--rev", default=ab.CURRENT_CHECKOUT, metavar="REV",
                        help=f"the suite revision both sides run (default {ab.CURRENT_CHECKOUT}: the checkout as it "
                             "is)")
    parser.add_argument("--rounds", type=int, default=ab.DEFAULT_ROUNDS, metavar="N",
                        help=f"rounds, each side one process per round (default {ab.DEFAULT_ROUNDS})")
    parser.add_argument("--schedule", choices=ab.SCHEDULES, default=ab.DEFAULT_SCHEDULE,
                        help=f"as `tfbench ab --schedule` (default {ab.DEFAULT_SCHEDULE})")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the results files go (default results/upgrade/<time>)")
    add_output_options(parser)
    add_decision_options(parser)
    parser.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN_ARGS",
                        help="arguments for `tfbench run` (--profile gate unless they name a profile)")


def main_upgrade_ab(args: argparse.Namespace, *, run: Run = subprocess_run,
                    run_ab: Callable[..., ab.AbResult] = ab.run_ab) -> int:
    from tfbench.benchmarks.outputs import check_file

    versions = {"a": check_version(args.tf_a, "--tf-a"), "b": check_version(args.tf_b, "--tf-b")}
    if args.markdown:
        check_file(args.markdown, "the Markdown summary")  # before minutes of pip and runs, not after them
    if args.json_path:
        check_file(args.json_path, "the JSON decision table")
    ab.check_run_args(args.run_args)  # a reserved option is refused before any environment is built
    repo = ab.repo_root()
    root = env_dir(args.env_dir)
    out_dir = args.out or Path("results", "upgrade", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    try:
        envs = {side: ensure(versions[side], root, repo, run=run) for side in ab.SIDES}
        if envs["a"].python == envs["b"].python:
            raise UsageError(f"--tf-a and --tf-b name the same environment ({envs['a'].path}); give two versions")
        result = run_ab(repo, args.rev, args.rev, rounds=args.rounds, run_args=args.run_args, out_dir=out_dir,
                        python_a=envs["a"].python, python_b=envs["b"].python, threshold=args.threshold,
                        alpha=args.alpha, schedule=args.schedule)
    except TfbenchError as error:
        if args.markdown:
            write_markdown(args.markdown, f"### ⚠️ the TensorFlow upgrade A/B could not run\n\n{error.args[0]}\n")
        if args.json_path:
            write_json(args.json_path, {"title": "", "headline": "the TensorFlow upgrade A/B could not run",
                                        "exit_status": 2, "error": error.args[0], "records": []})
        raise
    print(f"results files in {out_dir}; to compare them again: tfbench compare{' --paired' * result.paired} --raw "
          f"'{out_dir / 'a-*.json'}' '{out_dir / 'b-*.json'}'")
    return report(result.rows, args.alpha, args.markdown, title=title(envs, result, args.rev),
                  json_path=args.json_path)
