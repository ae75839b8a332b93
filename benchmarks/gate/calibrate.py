"""``tfbench calibrate-gate``: how often does the regression gate cry wolf, and how often does it catch a slowdown?

A gate is only truthful if its error rates are known on the machine it runs on. Running hundreds of full A/A
gates (``tfbench ab`` with the same revision on both sides) would take days, so the rates are estimated by
resampling real measurements:

1. run ``--processes`` P processes of the gate's run (``tfbench run --profile gate`` in the current checkout)
   with no slowdown, and P with each injected slowdown (``--inject-slowdown 0.05`` ...), interleaved
   round-robin (none, 5 %, 10 %, 20 %, none, 5 % ...) so that the machine's drift hits every condition alike;
2. form ``--trials`` T trials per condition: draw ``rounds`` runs for side A from the no-slowdown pool and
   ``rounds`` for side B from the no-slowdown pool (A/A, disjoint from A's) or from the slowdown's pool (A/B);
3. apply exactly the decision of ``tfbench ab`` (:func:`benchmarks.compare.compare_documents` on step time,
   the same ``--rounds``, ``--threshold``, ``--alpha`` and their defaults); a trial "fails the gate" if any
   record regressed;
4. report the A/A false-alarm rate (target <= 1 %), the detection rate per slowdown (targets: 10 % -> >= 95 %,
   5 % -> >= 80 %) and the time of one gate (rounds x 2 processes x the mean process time + the compare).

Trials that share processes are not independent: the rates are estimates from P processes per condition, not
from T independent gates (P = 24 cannot tell 0.1 % from 1 % false alarms apart with any confidence; the exact
test's guarantee, <= alpha/2 per record, is what bounds the A/A rate). ``--simulate NOISE`` runs the same
resampling on synthetic processes (lognormal run-to-run noise of NOISE, AR(1) within-process noise); with a
large pool (``--simulate 2 --processes 200``) it approximates the table of fresh simulated gates that chose the
defaults (see :mod:`benchmarks.compare`), within the few points by which one finite pool moves a rate.
``--reuse DIR`` re-decides the processes of an earlier calibration with other ``--rounds`` / ``--threshold`` /
``--alpha``, which is how to tune them for a machine without running the processes again.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tabulate import tabulate

from tfbench.benchmarks.gate.ab import DEFAULT_ROUNDS, Runner, check_run_args, repo_root, run_process
from tfbench.benchmarks.gate.ab import subprocess_runner as default_runner
from tfbench.benchmarks.gate.compare import (
    DEFAULT_ALPHA,
    add_decision_options,
    compare_documents,
    min_runs,
    percent,
    write_markdown,
)
from tfbench.benchmarks.results import SCHEMA_VERSION, load, make_record, summarize
from tfbench.errors import UsageError

DEFAULT_PROCESSES = 24
DEFAULT_TRIALS = 2000
DEFAULT_SLOWDOWNS = (0.05, 0.10, 0.20)
GATE_BUDGET_S = 300.0
FALSE_ALARM_TARGET = 0.01
# slowdown -> the detection rate the gate should reach (the targets of the gate's design)
DETECTION_TARGETS = ((0.10, 0.95), (0.05, 0.80))

PROCESS_TIMES_FILE = "process-times.json"  # beside the results files: the wall time of each process

Pools = dict[float, list[dict]]  # condition (injected slowdown, 0 = none) -> results documents, one per process


@dataclass(frozen=True)
class Rate:
    """How often the gate failed in the trials of one condition."""

    slowdown: float
    trials: int
    failures: int

    @property
    def rate(self) -> float:
        return self.failures / self.trials

    @property
    def target(self) -> tuple[str, float] | None:
        if self.slowdown == 0:
            return "<=", FALSE_ALARM_TARGET
        return next(((">=", rate) for smallest, rate in DETECTION_TARGETS if self.slowdown >= smallest - 1e-9),
                    None)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        sign, level = self.target
        return self.rate <= level if sign == "<=" else self.rate >= level


def gate_fails(base_docs: Sequence[dict], cand_docs: Sequence[dict], threshold: float | None,
               alpha: float, normalize: bool = True) -> bool:
    """The decision of ``tfbench ab``: does any step-time record regress?"""
    rows = compare_documents(base_docs, cand_docs, "step_time", threshold, alpha, normalize=normalize)
    return any(row.status == "regressed" for row in rows)


def estimate_rates(pools: Pools, rounds: int, trials: int, threshold: float | None = None,
                   alpha: float = DEFAULT_ALPHA, seed: int = 0, normalize: bool = True) -> tuple[list[Rate], float]:
    """Gate failure rate per condition by resampling the pools; also the mean time of one comparison (s)."""
    baseline = pools.get(0.0, [])
    if len(baseline) < 2 * rounds:
        raise UsageError(f"the no-slowdown pool has {len(baseline)} processes; an A/A trial needs 2 x {rounds} "
                         f"distinct ones: use --processes {2 * rounds} or more")
    short = [s for s, pool in pools.items() if len(pool) < rounds]
    if short:
        raise UsageError(f"the pool of slowdown {short[0]:g} has fewer than {rounds} processes; "
                         f"use --processes {2 * rounds} or more")
    rng = np.random.default_rng(seed)
    rates, spent, decisions = [], 0.0, 0
    for slowdown in sorted(pools):
        failures = 0
        for _ in range(trials):
            if slowdown == 0:
                drawn = rng.choice(len(baseline), 2 * rounds, replace=False)
                base, cand = [baseline[i] for i in drawn[:rounds]], [baseline[i] for i in drawn[rounds:]]
            else:
                base = [baseline[i] for i in rng.choice(len(baseline), rounds, replace=False)]
                cand = [pools[slowdown][i] for i in rng.choice(len(pools[slowdown]), rounds, replace=False)]
            start = time.perf_counter()
            failures += gate_fails(base, cand, threshold, alpha, normalize)
            spent += time.perf_counter() - start
            decisions += 1
        rates.append(Rate(slowdown, trials, failures))
    return rates, spent / decisions


# ---------------------------------------------------------------------------------------------------------
# Pools: real processes, or synthetic ones
# ---------------------------------------------------------------------------------------------------------

def collect_pools(processes: int, slowdowns: Sequence[float], *, run_args: Sequence[str], out_dir: Path,
                  worktree: Path, python: str = sys.executable, runner: Runner = default_runner,
                  log: Callable[[str], None] = print) -> tuple[Pools, list[float]]:
    """Run ``processes`` processes per condition, round-robin over the conditions; the pools and wall times."""
    conditions = [0.0, *slowdowns]
    pools: Pools = {condition: [] for condition in conditions}
    seconds: list[float] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for index in range(1, processes + 1):
        for condition in conditions:
            args = [*run_args, *(["--inject-slowdown", f"{condition:g}"] if condition else [])]
            output = out_dir / f"slowdown{condition:g}-{index:03d}.json"
            side = f"slowdown {condition:g}"
            label = f"{side} #{index}/{processes}"
            seconds.append(run_process(runner, side, label, worktree, python, args, output))
            pools[condition].append(load(output))
            log(f"{label}: {seconds[-1]:.1f} s")
    (out_dir / PROCESS_TIMES_FILE).write_text(json.dumps({"process_seconds": seconds}))
    return pools, seconds


def load_pools(folder: Path) -> tuple[Pools, list[float]]:
    """The processes of an earlier calibration (its ``--results`` folder), to re-decide them with other parameters."""
    pools: Pools = {}
    for path in sorted(folder.glob("slowdown*-*.json")):
        match = re.fullmatch(r"slowdown([0-9.e+-]+)-\d+\.json", path.name)
        if match:
            pools.setdefault(float(match.group(1)), []).append(load(path))
    if 0.0 not in pools:
        raise UsageError(f"{folder}: no slowdown0-*.json results files; give the --results folder of an earlier "
                         "`tfbench calibrate-gate`")
    times = folder / PROCESS_TIMES_FILE
    seconds = json.loads(times.read_text())["process_seconds"] if times.is_file() else []
    return pools, seconds


def synthetic_document(step_times: dict[str, np.ndarray]) -> dict:
    """A results document holding one step-time record per workload name (for simulations and tests)."""
    records = [make_record("step_time", approach="custom_tape", workload=name, mode="function", steps_per_call=1,
                           device="cpu", batch_size=32, dataset="synthetic",
                           metrics={"step_time_s": summarize(samples)})
               for name, samples in step_times.items()]
    return {"schema_version": SCHEMA_VERSION, "run_id": "synthetic", "complete": True, "config": {},
            "environment": {}, "devices": [], "records": records}


def synthetic_pools(processes: int, slowdowns: Sequence[float] = DEFAULT_SLOWDOWNS, *, process_noise: float = 0.10,
                    sample_noise: float = 0.03, autocorrelation: float = 0.6, shared: float = 0.8,
                    samples: int = 200, step_times: Sequence[float] = (0.0020, 0.0025), seed: int = 0) -> Pools:
    """Pools of synthetic processes, with the noise structure measured on a shared machine.

    Each process draws a lognormal speed factor (sd ``process_noise`` in log space; a fraction ``shared`` of
    its variance common to all records, the rest per record); within a process the samples carry AR(1) log
    noise (sd ``sample_noise``, lag-1 correlation ``autocorrelation``). A slowdown multiplies every step. The
    defaults mimic ``--profile gate`` on a 2-core machine: two records of ~2 ms whose run medians correlate
    ~0.8 between records, samples with lag-1 correlation ~0.6 (measured there: 16 processes).
    """
    rng = np.random.default_rng(seed)
    innovation = sample_noise * np.sqrt(1 - autocorrelation ** 2)
    pools: Pools = {condition: [] for condition in [0.0, *slowdowns]}
    for _ in range(processes):
        for condition in pools:
            common = rng.normal(0.0, process_noise * np.sqrt(shared))
            runs = {}
            for index, step_time in enumerate(step_times):
                own = rng.normal(0.0, process_noise * np.sqrt(1 - shared))
                noise = np.empty(samples)
                noise[0] = rng.normal(0.0, sample_noise)
                for i in range(1, samples):
                    noise[i] = autocorrelation * noise[i - 1] + rng.normal(0.0, innovation)
                runs[f"w{index}"] = step_time * (1 + condition) * np.exp(common + own + noise)
            pools[condition].append(synthetic_document(runs))
    return pools


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------

def _percent(value: float) -> str:
    return f"{100 * value:.3g} %"


def to_markdown(rates: Sequence[Rate], *, processes: int, rounds: int, threshold: float | None, alpha: float,
                compare_seconds: float, process_seconds: Sequence[float] = (), source: str = "") -> str:
    """The calibration as Markdown: the rates against their targets, what they rest on, the gate's time."""
    trials = rates[0].trials if rates else 0
    threshold_text = "default" if threshold is None else _percent(threshold)
    body = []
    for rate in rates:
        condition = "A/A (no slowdown): false alarms" if rate.slowdown == 0 else (
            f"{_percent(rate.slowdown)} slowdown: detections")
        target = "-" if rate.target is None else f"{'≤' if rate.target[0] == '<=' else '≥'} {_percent(rate.target[1])}"
        met = {None: "-", True: "yes", False: "**no**"}[rate.met]
        body.append([condition, rate.trials, rate.failures, _percent(rate.rate), target, met])
    lines = [f"### Regression gate calibration: {rounds} rounds, threshold {threshold_text}, alpha {alpha:g}", "",
             tabulate(body, headers=["condition", "trials", "gate failures", "rate", "target", "met"],
                      tablefmt="github", disable_numparse=True), "",
             f"- Based on {processes} processes per condition{source} and {trials} trials per condition, each "
             f"drawing {rounds} runs per side (without overlap inside a trial). Trials share processes, so they "
             f"are not independent: these rates are estimates from {processes} processes per condition."]
    if process_seconds:
        mean = float(np.mean(process_seconds))
        gate = rounds * 2 * mean + compare_seconds
        verdict = "within" if gate <= GATE_BUDGET_S else "**over**"
        lines.append(f"- One gate: {rounds} rounds x 2 processes x {mean:.1f} s + {compare_seconds:.3f} s compare "
                     f"= {gate:.0f} s ({verdict} the {GATE_BUDGET_S:.0f} s budget).")
    else:
        lines.append(f"- One gate: {rounds} rounds x 2 processes x (process time) + {compare_seconds:.3f} s "
                     "compare; synthetic processes have no process time.")
    return "\n".join(lines) + "\n"


def slowdown_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated fractions, e.g. 0.05,0.10,0.20."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of fractions: {text!r}") from None
    if not values or any(not 0 < value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"slowdowns must be fractions in (0, 1), e.g. 0.05,0.10: {text!r}")
    return tuple(sorted(set(values)))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Measure the regression gate's A/A false-alarm rate and its detection rate of "
                          "injected slowdowns on this machine, by resampling real processes. Arguments after "
                          "`--` go to `tfbench run` (default: --profile gate).")
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES, metavar="P",
                        help=f"processes per condition (default {DEFAULT_PROCESSES})")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS, metavar="T",
                        help=f"resampled gates per condition (default {DEFAULT_TRIALS})")
    parser.add_argument("--slowdowns", type=slowdown_list, default=DEFAULT_SLOWDOWNS, metavar="LIST",
                        help="injected slowdowns, as fractions (default 0.05,0.10,0.20)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help=f"runs per side of one gate, as `tfbench ab --rounds` (default {DEFAULT_ROUNDS})")
    add_decision_options(parser)
    parser.add_argument("--out", metavar="FILE", help="also write the Markdown table to FILE")
    parser.add_argument("--results", type=Path, default=None, metavar="DIR",
                        help="where the processes' results files go (default results/calibrate/<time>)")
    parser.add_argument("--python", default=sys.executable, metavar="PATH", help="the Python that runs the suite")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--raw", action="store_true",
                        help="decide on raw step times, not normalised by the reference kernel")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--reuse", type=Path, default=None, metavar="DIR",
                        help="re-decide the processes of an earlier calibration (its --results folder) instead of "
                             "running new ones: to tune --rounds / --threshold / --alpha")
    source.add_argument("--simulate", type=percent, default=None, metavar="NOISE",
                        help="resample synthetic processes with NOISE %% lognormal run-to-run noise instead of "
                             "running the suite (how the defaults were chosen)")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN_ARGS",
                        help="arguments for `tfbench run` (--profile gate unless they name a profile)")


def main(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise UsageError(f"--trials must be >= 1, got {args.trials}")
    if args.rounds < min_runs(args.alpha):
        raise UsageError(f"--rounds {args.rounds} is too few: with alpha {args.alpha:g} a side needs >= "
                         f"{min_runs(args.alpha)} runs to reach significance")
    if args.processes < 2 * args.rounds and args.reuse is None:
        raise UsageError(f"--processes {args.processes} is too few: an A/A trial needs 2 x {args.rounds} distinct "
                         f"processes; use --processes {2 * args.rounds} or more")
    from tfbench.benchmarks.outputs import check_file

    if args.out:
        check_file(args.out, "the Markdown table")  # before minutes of runs, not after them
    seconds: list[float] = []
    processes = args.processes
    if args.reuse is not None:
        pools, seconds = load_pools(args.reuse)
        processes = min(len(pool) for pool in pools.values())
        source = f" (`tfbench run` processes of {args.reuse})"
    elif args.simulate is not None:
        pools = synthetic_pools(args.processes, args.slowdowns, process_noise=args.simulate, seed=args.seed)
        source = f" (synthetic: {_percent(args.simulate)} lognormal run-to-run noise)"
    else:
        out_dir = args.results or Path("results", "calibrate", datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
        pools, seconds = collect_pools(args.processes, args.slowdowns,
                                       run_args=check_run_args(args.run_args),
                                       out_dir=out_dir, worktree=repo_root(), python=args.python,
                                       runner=default_runner)
        source = f" (`tfbench run` processes, results in {out_dir})"
    rates, compare_seconds = estimate_rates(pools, args.rounds, args.trials, args.threshold, args.alpha, args.seed,
                                            normalize=not args.raw)
    source += "; raw step times" if args.raw else "; step times normalised by the reference kernel where timed"
    text = to_markdown(rates, processes=processes, rounds=args.rounds, threshold=args.threshold,
                       alpha=args.alpha, compare_seconds=compare_seconds, process_seconds=seconds, source=source)
    print(text, end="")
    if args.out:
        write_markdown(args.out, text)
    return 0
