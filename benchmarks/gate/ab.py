"""``tfbench ab``: run two versions of the suite in one job and compare them.

Absolute step times only compare within one job on one machine, and even there the median moves from one
process to the next. So the two revisions are measured side by side: a ``git worktree`` of each revision in a
temporary folder (removed at the end, even on error), then ``--rounds`` rounds, each side one process per
round (``<python> -m tfbench.benchmarks.cli run <run args> --output <file> --quiet`` with the worktree as
working directory and ``PYTHONPATH``, so that each side runs its own code). Two schedules:

* ``alternate``: the rounds run A then B, one process at a time, all cores to each; the machine's drift is
  spread over both sides, and the run medians are compared unpaired (Mann-Whitney, :mod:`benchmarks.gate.compare`);
* ``duet``: in each round A and B run at the same time, each pinned to its own core (swapped every round, and
  inside a round at every measurement round) and released together before each measurement round
  (:mod:`benchmarks.gate.duet`); the rounds' paired ratios are
  compared (Wilcoxon signed-rank). It needs two cores, and both revisions must have the round barrier
  (:func:`benchmarks.timing.round_barrier`): otherwise it says so in one line and runs ``alternate``.

:data:`DEFAULT_SCHEDULE` is the schedule ``tox -e regress`` uses; the calibration in docs/gate.md says which is
better on this machine. Exit status as ``tfbench compare``: 1 on a regression or a broken record, 0 otherwise,
2 when the gate could not run (bad revision, a process that failed). A process that exits with ``tfbench
run``'s "records failed" status but wrote its results is a completed run: its failed records are what makes
a record broken (:mod:`benchmarks.gate.processes`).

The default is 13 rounds of ``--profile gate`` (20 records, docs/gate-coverage.md): Holm's correction over
the records needs them (:mod:`benchmarks.gate.checks`). Under duet, both sides run at once, so a round takes
one process's time (37-51 s, mean 44 s, for the 20 records: 574 s a gate; the former two-record gate, ``gate-mini``,
took 8.8 s a round, 106 s for 12 rounds). Under alternate a round is two processes one after the other.
With alpha = 0.01 fewer than 5 rounds
(alternate) or 8 (duet) could never reach significance and are refused.

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

from tfbench.benchmarks.gate import checks, duet, signed_rank
from tfbench.benchmarks.gate.compare import (
    DEFAULT_ALPHA,
    Row,
    add_check_options,
    add_decision_options,
    add_output_options,
    check_outputs,
    compare_documents,
    min_runs,
)
from tfbench.benchmarks.gate.processes import (
    ProcessFailed,  # noqa: F401 (callers catch ab.ProcessFailed)
    ProcessResult,
    check_completed,
    run_command,
)
from tfbench.benchmarks.gate.views import report, write_json, write_markdown
from tfbench.benchmarks.outputs import writing
from tfbench.benchmarks.results import load
from tfbench.errors import TfbenchError, UsageError

# Calibrated here (docs/gate.md): 12 duet rounds catch every 5% slowdown in 106 s; 12 alternating rounds catch 98% of
# 10% slowdowns and 31% of 5% ones in 189 s.
# 13 duet rounds: with Holm's correction over the gate profile's 20 records the most significant record must
# reach p < 0.01 / 20, which the signed-rank test can with 12 rounds only if all 12 agree (benchmarks.gate.checks).
DEFAULT_ROUNDS = 13
SCHEDULES = ("alternate", "duet")
# The schedule of `tox -e regress` and of `tfbench ab` without --schedule: "duet", the better one in both
# schedules' calibration on this machine (docs/gate.md); a machine with one core, or an older baseline without the
# round barrier, falls back to "alternate" and says so.
DEFAULT_SCHEDULE = "duet"
DEFAULT_RUN_ARGS = ("--profile", "gate")
GATE_PROFILES = ("gate", "gate-wide", "gate-mini")  # pull requests, nightly, the former two-record gate
CURRENT_CHECKOUT = "WORKTREE"  # as a revision: the working tree as it is, without a worktree of a commit
SIDES = ("a", "b")

# runner(side, worktree, python, run_args, output, plant=None) runs one `tfbench run` process and returns how it
# ended; side is "A" or "B" for `tfbench ab`, the condition ("slowdown 0.05") for `tfbench calibrate-gate`.
Runner = Callable[..., ProcessResult]


def subprocess_runner(side: str, worktree: Path, python: str, args: Sequence[str], output: Path,
                      plant: str | None = None) -> ProcessResult:
    """The real runner: ``python -m tfbench.benchmarks.cli run ARGS --output OUTPUT --quiet`` inside ``worktree``."""
    command = run_command(worktree, python, args, output, plant)
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    try:
        completed = subprocess.run(command, cwd=worktree, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, errors="replace")
    except OSError as error:
        return ProcessResult(127, f"cannot start {python}: {error.strerror}")
    # The progress table on stdout is not wanted (tfbench ab prints its own lines), but it explains a failure
    # that left nothing on stderr.
    return ProcessResult(completed.returncode, completed.stderr if completed.stderr.strip() else completed.stdout)


def run_process(runner: Runner, side: str, label: str, worktree: Path, python: str, args: Sequence[str],
                output: Path, plant: str | None = None) -> tuple[float, str]:
    """Run one process of ``side`` into a fresh ``output``; return its wall time and a note ("" or "N records
    failed"). A process that failed is reported, then raised as :class:`ProcessFailed`.

    ``label`` names the process in messages ("A round 2/6").
    """
    output.unlink(missing_ok=True)  # the harness resumes an existing results file: never mix two runs
    start = time.perf_counter()
    result = runner(side, worktree, python, args, output, plant)
    seconds = time.perf_counter() - start
    return seconds, check_completed(label, args, worktree, output, result)


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
    seconds: list[float] = field(default_factory=list)  # wall time of each process (alternate) or round (duet)
    schedule: str = "alternate"  # the schedule that ran
    notes: list[str] = field(default_factory=list)  # the results and memory checks (benchmarks.gate.checks)

    @property
    def paired(self) -> bool:
        return self.schedule == "duet"

    def title(self, revs: dict[str, str]) -> str:
        def name(side: str) -> str:
            commit = self.commits[side]
            return revs[side] if commit is None else f"{revs[side]} ({commit[:10]})"
        return f"A/B {name('a')} -> {name('b')}, {len(self.files['a'])} rounds, {self.schedule} schedule"


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


def duet_fallback(paths: dict[str, Path], revs: dict[str, str], cores: tuple[int, int] | None) -> str | None:
    """Why the duet schedule cannot run here (one line), or None if it can."""
    if cores is None:
        return (f"the duet schedule needs two cores and this process may use {len(os.sched_getaffinity(0))}: "
                "running the alternate schedule")
    for side, role in (("a", "baseline"), ("b", "candidate")):
        if not duet.supports_barrier(paths[side]):
            return (f"the {role} revision {revs[side]} has no round barrier (its benchmarks/timing.py predates the "
                    "duet schedule), and duet needs both sides to wait at it: running the alternate schedule")
    return None


def run_ab(repo: Path, rev_a: str, rev_b: str, *, rounds: int = DEFAULT_ROUNDS,
           run_args: Sequence[str] = DEFAULT_RUN_ARGS, out_dir: Path, python_a: str = sys.executable,
           python_b: str | None = None, runner: Runner = subprocess_runner, threshold: float | None = None,
           alpha: float = DEFAULT_ALPHA, schedule: str = DEFAULT_SCHEDULE,
           log: Callable[[str], None] = print, accept_numerics_change: bool = False,
           memory_threshold: float | None = None) -> AbResult:
    """Measure ``rev_a`` (baseline) and ``rev_b`` (candidate) in ``rounds`` rounds; compare them.

    ``runner`` runs the processes of the alternate schedule; the duet schedule starts its own (two at a time).
    """
    if schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    fewest = signed_rank.min_pairs(alpha) if schedule == "duet" else min_runs(alpha)
    if rounds < fewest:
        raise UsageError(f"--rounds {rounds} is too few: with alpha {alpha:g} the {schedule} schedule's test needs "
                         f">= {fewest} rounds to reach significance; use --rounds {DEFAULT_ROUNDS}")
    args = check_run_args(run_args)
    pythons = {"a": python_a, "b": python_b or python_a}
    revs = {"a": rev_a, "b": rev_b}
    commits = {"a": resolve(repo, rev_a), "b": resolve(repo, rev_b)}
    # Absolute: each process runs inside its worktree, where a relative path would land.
    out_dir = Path(out_dir).resolve()
    with writing(out_dir, "the results folder"):
        out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {"a": [], "b": []}
    seconds = []
    with worktrees(repo, commits) as paths:
        if schedule == "duet":
            cores = duet.choose_cores()
            reason = duet_fallback(paths, revs, cores)
            if reason:
                log(reason)
                schedule = "alternate"
        for round_number in range(1, rounds + 1):
            outputs = {side: out_dir / f"{side}-{round_number:02d}.json" for side in SIDES}
            labels = {side: f"{side.upper()} round {round_number}/{rounds}" for side in SIDES}
            if schedule == "duet":
                # Odd rounds: A on the first core; even rounds: swapped, so a faster core cancels out.
                order = cores if round_number % 2 else cores[::-1]
                specs = [duet.DuetProcess(labels[side], paths[side], pythons[side], tuple(args), outputs[side], core)
                         for side, core in zip(SIDES, order)]
                outcome = duet.run_together(specs, log)
                seconds.append(outcome.seconds)
                for mismatch in outcome.mismatches[:1]:
                    log(f"round {round_number}: the two processes were not at the same point ({mismatch}); their "
                        "rounds are paired by order only")
                failed = "; ".join(f"{side.upper()}: {note}" for side, note in zip(SIDES, outcome.notes) if note)
                log(f"round {round_number}/{rounds}: A on CPU {order[0]}, B on CPU {order[1]}, "
                    f"{outcome.barriers} barriers, {outcome.seconds:.1f} s" + (f" ({failed})" if failed else ""))
            else:
                for side in SIDES:
                    elapsed, note = run_process(runner, side.upper(), labels[side], paths[side], pythons[side], args,
                                                outputs[side])
                    seconds.append(elapsed)
                    log(f"{labels[side]}: {elapsed:.1f} s -> {outputs[side]}" + (f" ({note})" if note else ""))
            for side in SIDES:
                files[side].append(outputs[side])
    docs = {side: [load(path) for path in files[side]] for side in SIDES}
    # The reference kernel runs on TensorFlow: with two Pythons (two TensorFlow installs) it would move with
    # the code under test, so the raw step times are compared then.
    same_install = pythons["a"] == pythons["b"]
    if not same_install:
        log("two Pythons: comparing raw step times (the reference kernel would move with TensorFlow)")
    rows = compare_documents(docs["a"], docs["b"], "step_time", threshold, alpha, normalize=same_install,
                             paired=schedule == "duet")
    rows, notes = checks.decide(rows, docs["a"], docs["b"], alpha, accept_numerics_change=accept_numerics_change,
                                memory_threshold=checks.DEFAULT_MEMORY_THRESHOLD if memory_threshold is None
                                else memory_threshold)
    return AbResult(rows, files, commits, seconds, schedule, notes)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Measure two revisions (or two Python environments) in one job, in separate processes, "
                          "and compare them; exit 1 on a regression or a broken record. Arguments after `--` go "
                          "to `tfbench run` (default: --profile gate).")
    parser.add_argument("--baseline-rev", required=True, metavar="REV", help="the baseline (A) revision")
    parser.add_argument("--candidate-rev", default="HEAD", metavar="REV",
                        help=f"the candidate (B) revision (default HEAD; {CURRENT_CHECKOUT}: the checkout as it "
                             "is, uncommitted changes included)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help=f"rounds, each side one process per round (default {DEFAULT_ROUNDS})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE,
                        help="alternate: A then B, one process at a time, run medians compared; duet: A and B at "
                             "the same time, one core each, released together every measurement round, paired "
                             f"ratios compared (needs two cores; default {DEFAULT_SCHEDULE})")
    parser.add_argument("--python-a", default=sys.executable, metavar="PATH", help="Python of side A")
    parser.add_argument("--python-b", default=None, metavar="PATH", help="Python of side B (default: as A)")
    parser.add_argument("--profile", default=None, choices=GATE_PROFILES, metavar="NAME",
                        help=f"the gate profile: {', '.join(GATE_PROFILES)} (default gate; docs/gate-coverage.md)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the results files go (default results/ab/<time>)")
    add_output_options(parser)
    add_decision_options(parser)
    add_check_options(parser)
    parser.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN_ARGS",
                        help="arguments for `tfbench run` (--profile gate unless they name a profile)")


def main(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.outputs import check_dir

    check_outputs(args)  # --markdown and --json: before minutes of runs, not after them
    out_dir = check_dir(args.out or Path("results", "ab", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")),
                        "the results folder")
    revs = {"a": args.baseline_rev, "b": args.candidate_rev}
    try:
        run_args = list(args.run_args)
        if args.profile:
            run_args = ["--profile", args.profile, *(run_args[1:] if run_args[:1] == ["--"] else run_args)]
        result = run_ab(repo_root(), revs["a"], revs["b"], rounds=args.rounds,
                        run_args=run_args, out_dir=out_dir, python_a=args.python_a,
                        python_b=args.python_b, runner=subprocess_runner, threshold=args.threshold,
                        alpha=args.alpha, schedule=args.schedule,
                        accept_numerics_change=args.accept_numerics_change, memory_threshold=args.memory_threshold)
    except TfbenchError as error:
        if args.markdown:  # the PR comment says that the gate did not run, and why
            write_markdown(args.markdown, f"### ⚠️ the regression gate could not run\n\n{error.args[0]}\n")
        if args.json_path:
            write_json(args.json_path, {"title": "", "headline": "the regression gate could not run",
                                        "exit_status": 2, "error": error.args[0], "records": []})
        raise
    total = sum(result.seconds)
    unit = "rounds of two concurrent processes" if result.paired else "processes"
    paired = " --paired" if result.paired else ""
    print(f"{len(result.seconds)} {unit} in {total:.0f} s (mean {total / len(result.seconds):.1f} s); to compare "
          f"them again: tfbench compare{paired} '{out_dir / 'a-*.json'}' '{out_dir / 'b-*.json'}'")
    return report(result.rows, args.alpha, args.markdown, title=result.title(revs), json_path=args.json_path,
                  extra_notes=result.notes)
