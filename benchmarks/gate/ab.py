"""``tfbench ab``: run two versions of the suite in one job, interleaved, and compare them.

Absolute step times only compare within one job on one machine, and even there the median moves from one
process to the next. So the two revisions are measured side by side: a ``git worktree`` of each revision in a
temporary folder (removed at the end, even on error), then ``--rounds`` rounds of A B, each a separate process
(``<python> -m benchmarks.cli run <run args> --output <file> --quiet`` with the worktree as working directory
and ``PYTHONPATH``, so that each side runs its own code). Alternating spreads the machine's drift over both
sides; the runs are then compared with :func:`benchmarks.compare.compare_documents` (the run is the unit of
replication: see :mod:`benchmarks.compare` for the decision rule). Exit status as ``tfbench compare``: 1 on a
regression, 0 otherwise, 2 when the gate could not run (bad revision, a process that failed).

The default of 10 rounds (20 processes) is the one :mod:`benchmarks.compare` documents from the simulation
and the measurements of :mod:`benchmarks.calibrate`: more rounds are the one lever against the noise between
processes, and 20 processes of ``--profile gate`` (~9.4 s each on a 2-core machine) take ~190 s, within the
5-minute budget of one gate. With alpha = 0.01 fewer than 5 rounds could never reach significance and are refused.

Two environments (two TensorFlow versions, say) are compared with the same revision and ``--python-a`` /
``--python-b``. ``--candidate-rev WORKTREE`` measures the current checkout as it is, uncommitted changes too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tfbench.benchmarks.gate.compare import (
    DEFAULT_ALPHA,
    Row,
    add_decision_options,
    compare_documents,
    min_runs,
    report,
    write_markdown,
)
from tfbench.benchmarks.results import load
from tfbench.errors import TfbenchError, UsageError

DEFAULT_ROUNDS = 12  # calibrated here: 12 rounds catch 95% of 10% slowdowns in 189 s (README)
DEFAULT_RUN_ARGS = ("--profile", "gate")
CURRENT_CHECKOUT = "WORKTREE"  # as a revision: the working tree as it is, without a worktree of a commit
STDERR_TAIL_LINES = 20
SIDES = ("a", "b")


class ProcessFailed(TfbenchError):
    """A benchmark process exited with a non-zero status; its stderr tail has been printed."""


@dataclass(frozen=True)
class ProcessResult:
    returncode: int
    stderr: str = ""


# runner(side, worktree, python, run_args, output) runs one `tfbench run` process and returns how it ended;
# side is "A" or "B" for `tfbench ab`, the condition ("slowdown 0.05") for `tfbench calibrate-gate`.
Runner = Callable[[str, Path, str, Sequence[str], Path], ProcessResult]


def cli_module(worktree: Path) -> str:
    """The CLI module of the suite in ``worktree``: revisions before the ``tfbench`` namespace had top-level
    packages, and a baseline may be one of them."""
    return "tfbench.benchmarks.cli" if (worktree / "tfbench" / "__init__.py").is_file() else "benchmarks.cli"


def subprocess_runner(side: str, worktree: Path, python: str, args: Sequence[str], output: Path) -> ProcessResult:
    """The real runner: ``python -m tfbench.benchmarks.cli run ARGS --output OUTPUT --quiet`` inside ``worktree``."""
    command = [python, "-m", cli_module(worktree), "run", *args, "--output", str(output), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    try:
        completed = subprocess.run(command, cwd=worktree, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, errors="replace")
    except OSError as error:
        return ProcessResult(127, f"cannot start {python}: {error.strerror}")
    # The progress table on stdout is not wanted (tfbench ab prints its own lines), but it explains a failure
    # that left nothing on stderr.
    return ProcessResult(completed.returncode, completed.stderr if completed.stderr.strip() else completed.stdout)


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_process(runner: Runner, side: str, label: str, worktree: Path, python: str, args: Sequence[str],
                output: Path) -> float:
    """Run one process of ``side`` into a fresh ``output``; return its wall time. A failure is reported, then raised.

    ``label`` names the process in messages ("A round 2/6").
    """
    output.unlink(missing_ok=True)  # the harness resumes an existing results file: never mix two runs
    start = time.perf_counter()
    result = runner(side, worktree, python, args, output)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = stderr_tail(result.stderr)
        if tail:
            print(f"--- stderr of the {label} process (last {STDERR_TAIL_LINES} lines) ---\n{tail}\n---",
                  file=sys.stderr)
        raise ProcessFailed(f"the {label} process (`tfbench run {' '.join(args)}` in {worktree}) exited with "
                            f"status {result.returncode}; its stderr tail is above")
    if not output.is_file():
        raise ProcessFailed(f"the {label} process exited with status 0 but wrote no {output}; "
                            "does that revision's `tfbench run` support --output?")
    return seconds


def _git(repo: Path, *args: str) -> str:
    try:
        completed = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    except OSError as error:
        raise UsageError(f"cannot run git: {error.strerror}; install git") from None
    if completed.returncode != 0:
        message = (completed.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"git {' '.join(args)}: {message}")
    return completed.stdout.strip()


def repo_root(path: Path | None = None) -> Path:
    try:
        return Path(_git(path or Path.cwd(), "rev-parse", "--show-toplevel"))
    except UsageError:
        raise UsageError(f"{path or Path.cwd()} is not in a git clone of the suite; run from the clone") from None


def resolve(repo: Path, rev: str) -> str | None:
    """The commit of ``rev`` (None for the current checkout); a UsageError says how to get a missing one."""
    if rev == CURRENT_CHECKOUT:
        return None
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except UsageError:
        raise UsageError(f"revision {rev!r} is not a commit of {repo}; fetch it first (GitHub Actions: "
                         "actions/checkout with fetch-depth: 0)") from None


@contextlib.contextmanager
def worktrees(repo: Path, commits: dict[str, str | None]) -> Iterator[dict[str, Path]]:
    """A detached ``git worktree`` per side in a temporary folder (the checkout itself for None), then cleanup."""
    folder = Path(tempfile.mkdtemp(prefix="tfbench-ab-"))
    created: list[Path] = []
    try:
        paths = {}
        for side, commit in commits.items():
            if commit is None:
                paths[side] = repo
                continue
            path = folder / side
            _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
            created.append(path)
            paths[side] = path
        yield paths
    finally:
        for path in created:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                           capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


@dataclass
class AbResult:
    rows: list[Row]
    files: dict[str, list[Path]]
    commits: dict[str, str | None]
    seconds: list[float] = field(default_factory=list)  # wall time of each process, in run order

    def title(self, revs: dict[str, str]) -> str:
        def name(side: str) -> str:
            commit = self.commits[side]
            return revs[side] if commit is None else f"{revs[side]} ({commit[:10]})"
        return f"A/B {name('a')} -> {name('b')}, {len(self.files['a'])} rounds"


def check_run_args(run_args: Sequence[str]) -> list[str]:
    """The arguments for `tfbench run` (after ``--``): ``--profile gate`` unless they name a profile."""
    args = list(run_args)
    if args and args[0] == "--":
        args = args[1:]
    for reserved in ("--output", "--quiet"):
        if any(arg == reserved or arg.startswith(reserved + "=") for arg in args):
            raise UsageError(f"{reserved} is set by tfbench itself; leave it out of the run arguments")
    if not any(arg == "--profile" or arg.startswith("--profile=") for arg in args):
        args = [*DEFAULT_RUN_ARGS, *args]
    return args


def run_ab(repo: Path, rev_a: str, rev_b: str, *, rounds: int = DEFAULT_ROUNDS,
           run_args: Sequence[str] = DEFAULT_RUN_ARGS, out_dir: Path, python_a: str = sys.executable,
           python_b: str | None = None, runner: Runner = subprocess_runner, threshold: float | None = None,
           alpha: float = DEFAULT_ALPHA, log: Callable[[str], None] = print) -> AbResult:
    """Measure ``rev_a`` (baseline) and ``rev_b`` (candidate) in ``rounds`` rounds of A B; compare them."""
    if rounds < min_runs(alpha):
        raise UsageError(f"--rounds {rounds} is too few: with alpha {alpha:g} the rank test needs >= "
                         f"{min_runs(alpha)} runs per side to reach significance; use --rounds {DEFAULT_ROUNDS}")
    args = check_run_args(run_args)
    pythons = {"a": python_a, "b": python_b or python_a}
    commits = {"a": resolve(repo, rev_a), "b": resolve(repo, rev_b)}
    # Absolute: each process runs inside its worktree, where a relative path would land.
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {"a": [], "b": []}
    seconds = []
    with worktrees(repo, commits) as paths:
        for round_number in range(1, rounds + 1):
            for side in SIDES:
                output = out_dir / f"{side}-{round_number:02d}.json"
                label = f"{side.upper()} round {round_number}/{rounds}"
                seconds.append(run_process(runner, side.upper(), label, paths[side], pythons[side], args, output))
                files[side].append(output)
                log(f"{label}: {seconds[-1]:.1f} s -> {output}")
    docs = {side: [load(path) for path in files[side]] for side in SIDES}
    # The reference kernel runs on TensorFlow: with two Pythons (two TensorFlow installs) it would move with
    # the code under test, so the raw step times are compared then.
    same_install = pythons["a"] == pythons["b"]
    if not same_install:
        log("two Pythons: comparing raw step times (the reference kernel would move with TensorFlow)")
    rows = compare_documents(docs["a"], docs["b"], "step_time", threshold, alpha, normalize=same_install)
    return AbResult(rows, files, commits, seconds)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Measure two revisions (or two Python environments) in one job, alternating A B A B "
                          "in separate processes, and compare them; exit 1 on a regression. Arguments after "
                          "`--` go to `tfbench run` (default: --profile gate).")
    parser.add_argument("--baseline-rev", required=True, metavar="REV", help="the baseline (A) revision")
    parser.add_argument("--candidate-rev", default="HEAD", metavar="REV",
                        help=f"the candidate (B) revision (default HEAD; {CURRENT_CHECKOUT}: the checkout as it "
                             "is, uncommitted changes included)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help=f"rounds of A B, each side one process per round (default {DEFAULT_ROUNDS})")
    parser.add_argument("--python-a", default=sys.executable, metavar="PATH", help="Python of side A")
    parser.add_argument("--python-b", default=None, metavar="PATH", help="Python of side B (default: as A)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the results files go (default results/ab/<time>)")
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary (for a PR comment)")
    add_decision_options(parser)
    parser.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN_ARGS",
                        help="arguments for `tfbench run` (--profile gate unless they name a profile)")


def main(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.outputs import check_file

    if args.markdown:
        check_file(args.markdown, "the Markdown summary")  # before minutes of runs, not after them
    out_dir = args.out or Path("results", "ab", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    revs = {"a": args.baseline_rev, "b": args.candidate_rev}
    try:
        result = run_ab(repo_root(), revs["a"], revs["b"], rounds=args.rounds,
                        run_args=args.run_args, out_dir=out_dir, python_a=args.python_a,
                        python_b=args.python_b, runner=subprocess_runner, threshold=args.threshold,
                        alpha=args.alpha)
    except TfbenchError as error:
        if args.markdown:  # the PR comment says that the gate did not run, and why
            write_markdown(args.markdown, f"### ⚠️ the regression gate could not run\n\n{error.args[0]}\n")
        raise
    total = sum(result.seconds)
    print(f"{len(result.seconds)} processes in {total:.0f} s (mean {total / len(result.seconds):.1f} s); to compare "
          f"them again: tfbench compare '{out_dir / 'a-*.json'}' '{out_dir / 'b-*.json'}'")
    return report(result.rows, args.alpha, args.markdown, title=result.title(revs))
